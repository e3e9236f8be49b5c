"""Two versions of the gateway side by side: this checkout's against a git revision's, on the same planner, validator
and fixed-cost renderer replicas as ``bench.orchestration`` (8-frame storyboards at 1024x1024, 2 s frames), the
storyboards alternating between them (A B B A ...), so that a change to the gateway is judged by ratios measured in
one run: of the wall time (request -> Completed at the client) and of the gateway process's CPU time per frame.

Only the gateway comes from the revision, run with the revision's own code first on its import path (its
``storyboard_common`` and its ``sdk/src``, whose ``storyboard`` package it may import); the other services and the
client are this checkout's, so the revision must speak the same protos (fields added since are ignored by it). Its
checkout is a temporary git worktree, removed afterwards. Packages that the revision's requirements.lock pins and
this environment lacks are named before anything starts; install them into a folder of their own and pass it as
``--revision-path`` (never into the shared environment):

    make bench-compare REV=main~3                                       # or:
    .venv/bin/python -m bench.compare main~3 --replicas 1,4 --storyboards 8
    .venv/bin/uv pip install --python .venv/bin/python --target /tmp/rev-deps --no-deps isal==1.9.1
    .venv/bin/python -m bench.compare d17ad36 --revision-path /tmp/rev-deps
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import median, ms, table  # noqa: E402
from bench.orchestration import (  # noqa: E402
    Options,
    Services,
    counts,
    fresh_seeds,
    start_gateway,
    start_services,
    through_gateway,
)
from bench.processes import Processes, Service  # noqa: E402
from storyboard import Client  # noqa: E402


@dataclass
class Version:
    """One gateway under comparison at one R, and what its storyboards measured (seconds)."""

    name: str
    root: Path
    gateway: Service | None = None
    client: Client | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    def run(self, options: Options, seed: int, record: bool = True) -> None:
        """One storyboard through this version's gateway; its wall and gateway CPU seconds kept if ``record``."""
        assert self.gateway is not None and self.client is not None
        storyboard = through_gateway(self.client, self.gateway, options, seed)
        if record:
            self.walls.append(storyboard.wall)
            self.cpus.append(storyboard.gateway_cpu)


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """A temporary worktree of ``revision``, removed on exit."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        folder = Path(scratch) / commit[:12]
        git("worktree", "add", "--detach", str(folder), commit)
        try:
            yield folder
        finally:
            git("worktree", "remove", "--force", str(folder))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def missing_requirements(root: Path, extra_path: Sequence[Path] = ()) -> list[str]:
    """The pins (``name==version``) of ``root``'s requirements.lock whose package neither this environment nor
    ``extra_path`` holds in any version. Pins with environment markers are not checked."""
    lock = root / "requirements.lock"
    if not lock.exists():
        return []
    found = [*importlib.metadata.distributions(), *importlib.metadata.distributions(path=[str(p) for p in extra_path])]
    installed = {package_name(dist.metadata["Name"]) for dist in found}
    pins = [line.strip() for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9][^;#]*==[^;#]*$", line)]
    return [pin for pin in pins if package_name(pin.split("==")[0]) not in installed]


def package_name(name: str) -> str:
    """A distribution's name as PEP 503 compares names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def start_versions(
    processes: Processes,
    services: Services,
    replicas: int,
    roots: dict[str, Path],
    scratch: Path,
    revision_path: Sequence[Path] = (),
) -> list[Version]:
    """A gateway of each version over the first ``replicas`` replicas, with a client connected once; the revision's
    (any root but this checkout's) with ``revision_path`` on its import path."""
    versions = []
    for name, root in roots.items():
        version = Version(name, root)
        outputs = scratch / f"outputs-r{replicas}-{len(versions)}"
        extra = () if root == REPO else revision_path
        version.gateway = start_gateway(processes, services, replicas, outputs, root=root, extra_path=extra)
        version.client = Client(version.gateway.address, timeout=120)
        versions.append(version)
    return versions


def compare(
    revision: str,
    options: Options,
    storyboards: int,
    revision_path: Sequence[Path] = (),
    log: Callable[[str], None] = print,
) -> dict[int, list[Version]]:
    """For each R of ``options.replicas``: [the revision, this checkout], after ``storyboards`` storyboards each."""
    with checkout(revision) as other, tempfile.TemporaryDirectory(prefix="bench-compare-run-") as folder:
        missing = missing_requirements(other, revision_path)
        if missing:
            raise SystemExit(
                f"{revision} pins packages this environment lacks: {' '.join(missing)}. Install them into a folder "
                "of their own (uv pip install --target DIR --no-deps ...) and pass it as --revision-path DIR."
            )
        scratch = Path(folder)
        roots = {revision: other, "this checkout": REPO}
        with Processes(scratch / "logs") as processes:
            log(f"compare: starting the services, {max(options.replicas)} replicas and the gateways")
            services = start_services(processes, scratch, options)
            by_r = {r: start_versions(processes, services, r, roots, scratch, revision_path) for r in options.replicas}
            seeds = fresh_seeds()  # frames of their own for every storyboard, as the validator gets in use
            try:
                for versions in by_r.values():  # warm-up, not recorded
                    for version in versions:
                        version.run(options, next(seeds), record=False)
                for index in range(storyboards):
                    for versions in by_r.values():
                        order = versions if index % 4 in (0, 3) else versions[::-1]  # A B B A: neither always first
                        for version in order:
                            version.run(options, next(seeds))
                    log(f"compare: {index + 1}/{storyboards} storyboards each")
            finally:
                for versions in by_r.values():
                    for version in versions:
                        if version.client is not None:
                            version.client.close()
    return by_r


def ratios(this: Sequence[float], base: Sequence[float]) -> list[float]:
    """this / base, storyboard by storyboard (each pair ran next to each other)."""
    return [a / b for a, b in zip(this, base, strict=True)]


def spread(values: Sequence[float]) -> str:
    """``median (min-max)`` of ratios."""
    return f"{median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(by_r: dict[int, list[Version]], options: Options) -> str:
    rows, summary = [], []
    for r, (base, this) in by_r.items():
        for version in (base, this):
            cpu_per_frame = [cpu * 1000 / options.frames for cpu in version.cpus]
            rows.append([r, version.name, len(version.walls), ms(median(version.walls)),
                         f"{median(cpu_per_frame):.1f}"])  # fmt: skip
        summary.append([
            r, f"{median(this.walls) / median(base.walls):.3f}", spread(ratios(this.walls, base.walls)),
            f"{median(this.cpus) / median(base.cpus):.3f}", spread(ratios(this.cpus, base.cpus)),
        ])  # fmt: skip
    speed = table(["R", "gateway", "storyboards", "median wall ms", "median gateway CPU ms / frame"], rows)
    versus = table(
        ["R", "wall: ratio of medians", "wall: pairs' median (min-max)", "gateway CPU: ratio of medians",
         "gateway CPU: pairs' median (min-max)"],
        summary,
    )  # fmt: skip
    base_name = next(iter(by_r.values()))[0].name
    return (
        f"{options.frames}-frame storyboards, {options.size}x{options.size}, {options.frame_seconds:g} s frames on "
        f"fixed-cost replicas, the two gateways alternating A B B A.\n\n{speed}\n\n"
        f"this checkout / {base_name}:\n\n{versus}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare this checkout with, e.g. main~3 or a commit")
    parser.add_argument("--replicas", type=counts, default=(1,), help="comma list of replica counts (default 1)")
    parser.add_argument("--storyboards", type=int, default=8, help="per version and R")
    parser.add_argument("--frames", type=int, default=Options.frames)
    parser.add_argument("--frame-seconds", type=float, default=Options.frame_seconds)
    parser.add_argument("--size", type=int, default=Options.size)
    parser.add_argument(
        "--revision-path",
        type=Path,
        action="append",
        default=[],
        help="a folder of packages the revision needs and this environment lacks, on its gateway's import path",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(frames=args.frames, frame_seconds=args.frame_seconds, size=args.size, replicas=args.replicas)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    by_r = compare(args.revision, options, args.storyboards, args.revision_path, log)
    print(report(by_r, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
