#!/usr/bin/env bash
# Re-resolve the per-image dependency sets under deploy/requirements/ (run from anywhere; needs uv and PyPI).
#
# Every set is constrained by the root requirements.lock, so an image never gets a version the test suite did not
# run; the planner and gateway sets carry no torch. Run it after `make lock` (or any change to requirements.lock or
# pyproject.toml's extras); tests/unit/test_deploy.py fails when a set disagrees with requirements.lock.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
uv="${UV:-$(command -v uv || echo "$root/.venv/bin/uv")}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# uv takes no editable (unnamed) requirement as a constraint; the local sdk is installed from source in the image.
constraints="$tmp/requirements.lock"
grep -v '^-e ' "$root/requirements.lock" >"$constraints"

compile() { # compile OUTPUT [uv pip compile arguments...]
    local output="$1"
    shift
    (cd "$root" && "$uv" pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --no-emit-package storyboard-sdk -c constraints.txt -c "$constraints" \
        --custom-compile-command "deploy/requirements/compile.sh" -o "deploy/requirements/$output" "$@")
    # The annotations name the copy of the lock; name the lock itself, so a rerun changes nothing.
    sed -i "s|$constraints|requirements.lock|" "$here/$output"
}

compile planner.txt pyproject.toml deploy/requirements/planner.in --extra planner
compile gateway.txt pyproject.toml --extra gateway
compile renderer.txt pyproject.toml --extra renderer
compile validator.txt pyproject.toml --extra validator
compile build.txt deploy/requirements/build.in
