"""Two versions of the gateway side by side: this checkout's against a git revision's, on the same planner, validator
and fixed-cost renderer replicas, storyboards alternating between them (A B B A ...), so that a change to the gateway
is judged by a ratio measured in one run rather than by two runs on a shared machine minutes apart.

Only the gateway (and the SDK code it imports) comes from the revision; the other services are this checkout's, so the
revision must speak the same protos (fields added since are ignored by it). Its checkout is a temporary git worktree,
removed afterwards.

    make bench-compare REV=main~3                            # or:
    .venv/bin/python -m bench.compare main~3 --replicas 8 --storyboards 16
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import median, ms, percentile, ratio, table  # noqa: E402
from bench.orchestration import STORY, Options, Stack, fresh_seeds  # noqa: E402
from storyboard import Client, events  # noqa: E402
from tests.support.processes import ProcessGroup, ServiceProcess, cpu_seconds  # noqa: E402


@dataclass
class Version:
    """One gateway under comparison and what its storyboards measured."""

    name: str
    root: Path
    gateway: ServiceProcess | None = None
    client: Client | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


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


def storyboard(version: Version, options: Options, seed: int) -> None:
    """One storyboard through ``version``'s gateway; its wall time and the gateway's CPU time are recorded."""
    assert version.gateway is not None and version.client is not None
    cpu_before = cpu_seconds(version.gateway.pid)
    started = time.perf_counter()
    run = version.client.generate(
        story=STORY, num_frames=options.frames, num_inference_steps=options.steps, width=options.size,
        height=options.size, base_seed=seed,
    )  # fmt: skip
    final = [event for event in run if isinstance(event, events.Completed | events.Failed)]
    wall = time.perf_counter() - started
    if not final or isinstance(final[-1], events.Failed):
        raise RuntimeError(f"{version.name}: the storyboard did not complete: {final[-1] if final else 'no end'}")
    version.walls.append(wall)
    version.cpus.append(cpu_seconds(version.gateway.pid) - cpu_before)


def compare(revision: str, options: Options, storyboards: int, log=print) -> list[Version]:  # type: ignore[no-untyped-def]
    replicas = options.replicas[0]
    with checkout(revision) as other, tempfile.TemporaryDirectory(prefix="bench-compare-run-") as scratch:
        versions = [Version(revision, other), Version("this checkout", REPO)]
        with ProcessGroup(Path(scratch) / "logs") as group:
            log(f"compare: starting the services, {replicas} replicas and both gateways")
            stack = Stack(group, Path(scratch), options)
            renderers = ",".join(renderer.address for renderer in stack.renderers[:replicas])
            for index, version in enumerate(versions):
                version.gateway = group.gateway(
                    stack.planner.address, renderers, Path(scratch) / f"outputs-{index}", "--max-retries", "0",
                    "--log-level", "WARNING", validator=stack.validator.address, root=version.root,
                )  # fmt: skip
                version.client = Client(version.gateway.address, timeout=120)  # connected once, as in the benchmark
            seeds = fresh_seeds()  # frames of their own for every storyboard, as the validator gets in use
            for version in versions:  # warm-up, not recorded
                storyboard(version, options, next(seeds))
                version.walls.clear()
                version.cpus.clear()
            for index in range(storyboards):
                order = versions if index % 4 in (0, 3) else versions[::-1]  # A B B A: neither always goes first
                for version in order:
                    storyboard(version, options, next(seeds))
                if (index + 1) % 4 == 0:
                    log(f"compare: {index + 1}/{storyboards} storyboards each")
            for version in versions:
                if version.client is not None:
                    version.client.close()
            stack.close()
    return versions


def report(versions: Sequence[Version], options: Options) -> str:
    base, this = versions
    rows = [
        [v.name, len(v.walls), ms(median(v.walls)), ms(percentile(v.walls, 0.9)), ms(median(v.cpus))] for v in versions
    ]
    speed = table(["gateway", "storyboards", "median wall ms", "p90 wall ms", "median gateway CPU ms"], rows)
    return (
        f"{options.frames}-frame storyboards, {options.size}x{options.size}, {options.steps} steps, over "
        f"{options.replicas[0]} fixed-cost replicas of {options.frame_seconds:g} s a frame, alternating A B B A.\n\n"
        f"{speed}\n\nthis checkout / {base.name}: wall {ratio(median(this.walls) / median(base.walls))}, "
        f"gateway CPU {ratio(median(this.cpus) / median(base.cpus))}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare this checkout with, e.g. main~3 or a commit")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--storyboards", type=int, default=16, help="per version")
    parser.add_argument("--frame-seconds", type=float, default=Options.frame_seconds)
    parser.add_argument("--size", type=int, default=Options.size)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(replicas=(args.replicas,), frame_seconds=args.frame_seconds, size=args.size)
    versions = compare(args.revision, options, args.storyboards, log=lambda line: print(line, file=sys.stderr))
    print(report(versions, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
