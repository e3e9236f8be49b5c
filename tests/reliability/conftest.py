"""The reliability suite (``make reliability``): faults and hostile input against real processes on loopback.

Every scenario counts what happened to each storyboard or request it made in one shared tally, printed at the end
of the run as a table: runs, completed, refused (a clean 4xx / specific status code, or a clean failure with a reason
where the scenario makes one), lost (anything else: a missing or duplicated frame, a partial file, a stuck job, a
5xx or INTERNAL). Lost must be 0, and each test also asserts it.

The whole suite runs with every plain ``pytest``, so ``make test`` and CI run it (about five minutes); ``make
reliability`` runs it alone. The scenarios marked ``slow`` (process kills, LLM faults, schemathesis, load: tens of
seconds each) can be left out of a local run with ``pytest -m "not slow"``.

``STORYBOARD_RELIABILITY_RUNS`` (default 5) sets how often the kill scenarios repeat.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Literal

import pytest

RUNS = max(1, int(os.environ.get("STORYBOARD_RELIABILITY_RUNS", "5")))
Outcome = Literal["completed", "refused", "lost"]


@dataclass
class Row:
    runs: int = 0
    completed: int = 0
    refused: int = 0
    lost: int = 0


class Tally:
    """Outcomes by scenario, for the summary table."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.lost_details: list[str] = []
        self.notes: list[str] = []
        self._lock = threading.Lock()

    def record(self, scenario: str, outcome: Outcome, detail: str = "") -> None:
        with self._lock:
            row = self.rows.setdefault(scenario, Row())
            row.runs += 1
            setattr(row, outcome, getattr(row, outcome) + 1)
            if outcome == "lost":
                self.lost_details.append(f"{scenario}: {detail}")

    def note(self, text: str) -> None:
        """A line printed under the table (e.g. the gateway's memory under load)."""
        with self._lock:
            self.notes.append(text)

    def lost(self, scenario: str) -> list[str]:
        with self._lock:
            return [detail for detail in self.lost_details if detail.startswith(f"{scenario}: ")]

    def table(self) -> list[str]:
        width = max([len("scenario"), *(len(name) for name in self.rows)])
        lines = [f"{'scenario':<{width}}  {'runs':>5}  {'completed':>9}  {'refused':>7}  {'lost':>4}"]
        total = Row()
        for name, row in self.rows.items():
            lines.append(f"{name:<{width}}  {row.runs:>5}  {row.completed:>9}  {row.refused:>7}  {row.lost:>4}")
            for field in ("runs", "completed", "refused", "lost"):
                setattr(total, field, getattr(total, field) + getattr(row, field))
        lines.append(f"{'total':<{width}}  {total.runs:>5}  {total.completed:>9}  {total.refused:>7}  {total.lost:>4}")
        return lines


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.rows:
        return
    terminalreporter.write_sep("=", "reliability summary (lost must be 0)")
    for line in TALLY.table():
        terminalreporter.write_line(line)
    for note in TALLY.notes:
        terminalreporter.write_line(note)
    for detail in TALLY.lost_details[:20]:
        terminalreporter.write_line(f"lost: {detail}")
