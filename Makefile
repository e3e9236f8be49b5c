# Storyboard: `make demo` makes a storyboard on this machine; `make test` runs the whole suite.
# Both set up .venv from the pinned lock first (python3 -m venv, uv, requirements.lock, the two local packages).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
DEMO_STORY ?= Aldar Kose tricks a wealthy merchant by selling him a magical pot
DEMO_OUTPUTS ?= outputs

export UV_LINK_MODE := copy

.PHONY: setup demo test test-unit test-integration lint lint-protos protos check-protos up clean help bench bench-compare reliability gpu-wheels

help:
	@echo "make demo   - set up, run the local stack on the embedded defaults, make a storyboard, print its folder and studio"
	@echo "make test   - set up (and Debian's chromium), lint (ruff, buf, the import contracts), run the whole suite"
	@echo "make up     - run the local stack until Ctrl-C; the studio is at http://127.0.0.1:8000/"
	@echo "make protos - regenerate the gRPC stubs from protos/"
	@echo "make reliability - the reliability suite (kills, LLM faults, hostile input, fuzzing, load)"
	@echo "make bench  - run the benchmarks and write bench/RESULTS.md"
	@echo "make bench-compare REV=main~1  - this checkout's gateway against REV's, side by side"
	@echo "make gpu-wheels - the wheels bench/gpu/run.py carries to the GPU machine (bench/gpu/README.md)"

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync --python $(PY) requirements.lock
	$(UV) pip install --python $(PY) --no-deps -e sdk -e .
	touch $(STAMP)

node_modules/.bin/buf: package.json package-lock.json
	# npm install, not npm ci: npm 11 writes locks without the other platforms' optional buf binaries and then
	# refuses them in `npm ci`; the version is still pinned exactly in package.json.
	npm install --no-audit --no-fund --loglevel=error
	touch $@

protos: $(STAMP)
	$(PY) tools/gen_protos.py

check-protos: $(STAMP)
	$(PY) tools/gen_protos.py --check

lint-protos: node_modules/.bin/buf
	node_modules/.bin/buf lint

lint: $(STAMP) lint-protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(PY) -m storyboard.cli generate --story "$(DEMO_STORY)" --outputs $(DEMO_OUTPUTS)

up: $(STAMP)
	$(PY) -m storyboard.cli up

# The studio's browser tests drive Debian's chromium package; Playwright never downloads a browser of its own.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

test: lint check-protos $(CHROMIUM)
	STORYBOARD_CHROMIUM=$(CHROMIUM) $(VENV)/bin/pytest

test-unit: $(STAMP)
	$(VENV)/bin/pytest -m "not integration and not reliability"

test-integration: $(STAMP) $(CHROMIUM)
	STORYBOARD_CHROMIUM=$(CHROMIUM) $(VENV)/bin/pytest -m integration

# The reliability suite alone: faults and hostile input against real processes, with a summary table (lost must be
# 0). `make test` runs it too.
reliability: $(STAMP)
	$(VENV)/bin/pytest -m reliability tests/reliability

# Benchmarks (about 6 minutes): writes bench/RESULTS.md and bench/results/orchestration.json.
bench: $(STAMP)
	$(PY) bench/run.py

# This checkout's gateway against REV's, side by side: make bench-compare REV=main~3
# More options in COMPARE_ARGS, e.g. COMPARE_ARGS="--replicas 1,4 --revision-path /tmp/rev-deps" (python -m bench.compare -h)
REV ?= HEAD
COMPARE_ARGS ?=
bench-compare: $(STAMP)
	$(PY) -m bench.compare $(REV) $(COMPARE_ARGS)

# The wheels the GPU benchmark carries to the GPU machine (no network there): bench/gpu/wheels/, from the lock's pins,
# for that machine's Python 3.12. Then, on that machine: python3 bench/gpu/run.py OUT (bench/gpu/README.md).
gpu-wheels: $(STAMP)
	$(PY) bench/gpu/wheels.py

lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra all --extra dev --python-version 3.11 -c constraints.txt -o requirements.lock

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache outputs
