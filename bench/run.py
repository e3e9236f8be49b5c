"""Runs the benchmark suite and writes bench/RESULTS.md: one section per benchmark, each figure a ratio measured side
by side in the same run, with the machine, the versions and the date.

    make bench                                   # or: .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --quick        # fewer rounds (a smoke run)
    .venv/bin/python bench/run.py --only orchestration --output /tmp/RESULTS.md

Sections: orchestration (bench/orchestration.py: an 8-frame storyboard at 1024x1024 with 2 s frames over R = 1, 2, 4
replicas, wall over ideal and the gateway's CPU time per frame, also written to results/orchestration.json beside
the output), transport per image format (bench/transport.py), validator batched vs pairwise
(bench/validator_bench.py), planner latency (bench/planner_bench.py), and the renderer's SDXL GPU benchmark
(bench/sdxl_bench.py) when a GPU run's results are in bench/results/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import orchestration, planner_bench, transport  # noqa: E402
from bench.common import Section, machine, table  # noqa: E402

RESULTS = REPO / "bench" / "results"
SECTIONS = ("orchestration", "transport", "validator", "planner", "sdxl")


def validator_section(quick: bool) -> Section:
    """bench/validator_bench.py as it is (tiny random CLIP on the CPU), its printed table taken over."""
    rounds = "2" if quick else "5"
    command = [sys.executable, str(REPO / "bench" / "validator_bench.py"), "--rounds", rounds]
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, timeout=600).stdout
    method = """
`bench/validator_bench.py`: scoring one storyboard with the validator's batched, cached scorer against the original's
pairwise method (frame 1 and frame i embedded afresh for every pair), side by side on the same loaded model. Here a
tiny random CLIP on the CPU, so the ratio shows the method, not ViT-L-14 on a GPU (run the script with
`--clip-model ViT-L-14 --clip-pretrained FILE --device cuda` there).
"""
    return Section("Validator: batched vs pairwise", method, [output.strip()])


def sdxl_section() -> Section:
    """The GPU runs of bench/sdxl_bench.py found in bench/results/ (the CPU toy run says nothing about SDXL)."""
    gpu_runs = sorted(path for path in RESULTS.glob("sdxl_*.md") if "cpu" not in path.name)
    if not gpu_runs:
        method = """
**No GPU result yet.** `bench/gpu/run.py`, the device benchmark (real SDXL-base architecture, random weights, a
rank-64 LoRA, 1024x1024, 40 guided steps, through the renderer's own diffusers backend; bench/gpu/README.md), and
`bench/sdxl_bench.py --device cuda` give tables that go to `bench/results/sdxl_*.md` when run on a GPU machine;
`make bench` includes every such file here. This run had no GPU.
`bench/results/sdxl_cpu-toy.md` only shows that the script works (a 1 M-parameter model at 64x64).
"""
        return Section("Renderer: SDXL on a GPU", method)
    tables = [demoted(path.read_text().strip()) for path in gpu_runs]
    method = "`bench/sdxl_bench.py`'s GPU results, as recorded in bench/results/ (dates in each):"
    return Section("Renderer: SDXL on a GPU", method, tables)


def demoted(markdown: str) -> str:
    """``markdown`` with every heading two levels down, to sit under a section of RESULTS.md."""
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def build(only: Sequence[str], quick: bool, results: Path, log: Callable[[str], None]) -> list[Section]:
    """The sections named in ``only``; the orchestration's figures also go to ``results``/orchestration.json."""
    figures = ["--json", str(results / "orchestration.json")]
    runners: dict[str, Callable[[], Section]] = {
        "orchestration": lambda: orchestration.run(["--rounds", "2" if quick else "5", *figures], log),
        "transport": lambda: transport.run(["--frames", "6"]),
        "validator": lambda: validator_section(quick),
        "planner": lambda: planner_bench.run(["--rounds", "1" if quick else "3"]),
        "sdxl": sdxl_section,
    }
    sections = []
    for name in only:
        started = time.monotonic()
        log(f"== {name}")
        sections.append(runners[name]())
        log(f"== {name}: {time.monotonic() - started:.0f} s")
    return sections


def document(sections: list[Section], machine_rows: list[tuple[str, str]], seconds: float) -> str:
    head = f"""# Benchmark results

Written by `make bench` (`bench/run.py`) in {seconds / 60:.1f} minutes. Wall-clock figures on shared machines are
noisy, so every speed figure below is a ratio of things measured side by side in this same run. Rerun with
`make bench`; each section names the script that measures it.

{table(["machine", ""], machine_rows, align="ll")}
"""
    return "\n".join([head, *(section.markdown() for section in sections)])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    machine_rows = machine()
    started = time.monotonic()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    sections = build(only, args.quick, args.output.parent / "results", log)
    args.output.write_text(document(sections, machine_rows, time.monotonic() - started))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
