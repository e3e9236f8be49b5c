"""Planner latency, offline backend: ``Planner.Plan`` over loopback gRPC to a planner process (what the gateway
sees), over the stories of bench/stories.py (one word to a dozen sentences, one to three registered characters or
none, an injection attempt), at 6, 8 and 10 frames, with the character registry in examples/characters.toml.
Temperature 0.7 (the gateway's default), so the plan cache (temperature 0 only) never answers. The first call of
each process is reported apart: it pays one-time loading.

    .venv/bin/python -m bench.planner_bench --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.common import Section, median, percentile, table  # noqa: E402
from bench.processes import Processes  # noqa: E402
from bench.stories import STORIES  # noqa: E402
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc  # noqa: E402

FRAME_COUNTS = (6, 8, 10)
GPU_FRAME_SECONDS = 1.0


def measure(rounds: int, scratch: Path) -> tuple[float, list[float], dict[int, list[float]]]:
    """(first call seconds, every later call's seconds, seconds by frame count)."""
    with Processes(scratch / "logs") as processes:
        planner = processes.planner("--backend", "offline", "--characters-file", str(REPO / "examples/characters.toml"))
        with grpc.insecure_channel(planner.address) as channel:
            stub = planner_pb2_grpc.PlannerStub(channel)

            def plan(story: str, frames: int, seed: int) -> float:
                options = planner_pb2.PlanOptions(num_frames=frames, temperature=0.7, seed=seed)
                started = time.perf_counter()
                stub.Plan(planner_pb2.PlanRequest(story=story, options=options), timeout=60)
                return time.perf_counter() - started

            first = plan(STORIES[0], 8, 0)
            calls: list[float] = []
            by_frames: dict[int, list[float]] = {count: [] for count in FRAME_COUNTS}
            for round_index in range(rounds):
                for index, story in enumerate(STORIES):
                    for count in FRAME_COUNTS:
                        seconds = plan(story, count, round_index * 1000 + index)
                        calls.append(seconds)
                        by_frames[count].append(seconds)
    return first, calls, by_frames


def section(first: float, calls: list[float], by_frames: dict[int, list[float]], rounds: int) -> Section:
    def row(label: str, values: list[float]) -> list[object]:
        p95 = percentile(values, 0.95)
        return [label, len(values), f"{median(values) * 1000:.1f}", f"{p95 * 1000:.1f}",
                f"{max(values) * 1000:.1f}", f"{100 * p95 / GPU_FRAME_SECONDS:.1f}%"]  # fmt: skip

    rows = [row("all", calls), *(row(f"{count} frames", by_frames[count]) for count in FRAME_COUNTS)]
    method = f"""
{len(STORIES)} stories x {len(FRAME_COUNTS)} frame counts x {rounds} rounds (different seeds) through
`Planner.Plan` on a planner process (offline backend, examples/characters.toml), over loopback gRPC. The first call
of the process took {first * 1000:.0f} ms (one-time loading) and is not in the table. The last column puts p95
against a one-second GPU frame.
"""
    header = ["stories", "calls", "p50 ms", "p95 ms", "max ms", "p95 of a 1 s GPU frame"]
    return Section("Planner latency (offline backend)", method, [table(header, rows)])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> Section:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as scratch:
        first, calls, by_frames = measure(args.rounds, Path(scratch))
    return section(first, calls, by_frames, args.rounds)


if __name__ == "__main__":
    print(run().markdown())
