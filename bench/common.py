"""What the benchmarks share: the machine and versions they ran on, medians and percentiles, markdown tables."""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for bench and the services when a benchmark runs as a script


@dataclass
class Section:
    """One benchmark's part of RESULTS.md: a heading, what was measured and how, tables, and the conclusion."""

    title: str
    method: str
    tables: list[str] = field(default_factory=list)
    conclusion: str = ""

    def markdown(self) -> str:
        parts = [f"## {self.title}", self.method.strip(), *self.tables]
        if self.conclusion:
            parts.append(self.conclusion.strip())
        return "\n\n".join(parts) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A markdown table; ``align`` has one letter per column, l or r (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def timed(work: Callable[[], object]) -> float:
    """Seconds ``work()`` took."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile by the nearest-rank method (p95 of 20 values is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def machine() -> list[tuple[str, str]]:
    """(what, value) rows: date, CPU, cores, RAM, OS, and the versions that matter to the numbers."""
    import grpc
    import PIL

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    load = os.getloadavg()
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("ram", f"{ram_gib():.1f} GiB"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("load average at start (1/5/15 min)", " / ".join(f"{value:.2f}" for value in load)),
        ("python", platform.python_version()),
        ("torch", torch_version),
        ("grpcio", grpc.__version__),
        ("pillow", PIL.__version__),
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def ratio(value: float) -> str:
    return f"{value:.3f}"
