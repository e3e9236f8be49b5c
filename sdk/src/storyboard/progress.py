"""How the CLI shows a storyboard being made: live bars on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from storyboard import events as ev
from storyboard.results import StoryboardResult


class PlainReporter:
    """One line per meaningful event (no per-step lines): for logs, pipes and CI."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._out = stream
        self._reasons: set[str] = set()

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def show(self, event: ev.StoryboardEvent) -> None:
        for line in describe(event) + _new_reason(event, self._reasons):
            self.say(line)


def _new_reason(event: ev.StoryboardEvent, seen: set[str]) -> list[str]:
    """Why frames were not validated, the first time a reason comes up (it is the same for every frame)."""
    if not isinstance(event, ev.FrameValidated) or not event.reason or event.reason in seen:
        return []
    seen.add(event.reason)
    return [f"  ({event.reason})"]


class LiveReporter:
    """A bar for the storyboard and one per frame being rendered, with the plan printed as soon as it is ready."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self._console, transient=False,
        )  # fmt: skip
        self._overall: TaskID | None = None
        self._frames: dict[int, TaskID] = {}
        self._reasons: set[str] = set()

    def __enter__(self) -> LiveReporter:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def say(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)

    def show(self, event: ev.StoryboardEvent) -> None:
        if isinstance(event, ev.PlanReady):
            for line in describe(event):
                self.say(line)
            self._overall = self._progress.add_task("storyboard", total=len(event.plan.scenes))
        elif isinstance(event, ev.FrameProgress):
            task = self._frames.get(event.frame)
            label = f"  frame {event.frame}" + (f" (attempt {event.attempt})" if event.attempt > 1 else "")
            if task is None:
                task = self._frames[event.frame] = self._progress.add_task(label, total=event.total_steps)
            self._progress.update(task, description=label, completed=event.step, total=event.total_steps)
        elif isinstance(event, ev.FrameValidated):
            if event.frame in self._frames:
                self._progress.remove_task(self._frames.pop(event.frame))
            if self._overall is not None and event.verdict != "low consistency":
                self._progress.advance(self._overall)
            for line in describe(event) + _new_reason(event, self._reasons):
                self.say(line)
        elif isinstance(event, ev.Retry | ev.Accepted | ev.Completed):
            for line in describe(event):
                self.say(line)


def describe(event: ev.StoryboardEvent) -> list[str]:
    """The plain-text lines for an event; none for per-step progress, nor for a failure: the command reports that
    itself, once, on stderr with its exit status."""
    if isinstance(event, ev.Accepted):
        return [f"storyboard {event.storyboard_id} accepted"]
    if isinstance(event, ev.PlanReady):
        plan = event.plan
        lines = [f"plan ready: {len(plan.scenes)} frames (planner: {plan.planner})"]
        lines += [f"  {s.frame:>2}. {s.camera}: {s.description}" for s in plan.scenes]
        return lines + [f"  warning: {w}" for w in plan.warnings]
    if isinstance(event, ev.FrameRendered):
        return [f"frame {event.frame} rendered (attempt {event.attempt}, seed {event.seed}, {event.backend})"]
    if isinstance(event, ev.FrameValidated):
        detail = f" (consistency {event.consistency:.2f})" if event.consistency is not None else ""
        return [f"frame {event.frame} validated: {event.verdict}{detail}"]
    if isinstance(event, ev.Retry):
        return [f"frame {event.frame}: attempt {event.attempt} with seed {event.seed} ({event.reason})"]
    if isinstance(event, ev.Completed):
        return [f"storyboard {event.storyboard_id} completed"]
    return []


def frames_table(result: StoryboardResult) -> Table:
    """The final table: each frame's seed, attempts, scores and verdict."""
    table = Table(title="frames")
    for column in ("frame", "seed", "attempts", "consistency", "alignment", "verdict"):
        table.add_column(column, justify="right" if column != "verdict" else "left")
    for row in summary_rows(result):
        table.add_row(*(str(value) for value in row))
    return table


def summary_rows(result: StoryboardResult) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    if result.final is None:
        return rows
    for frame in result.final.frames:
        scored = frame.HasField("score")
        rows.append((
            frame.frame, frame.seed, frame.attempts,
            f"{frame.score.consistency:.3f}" if scored else "-", f"{frame.score.alignment:.3f}" if scored else "-",
            ev.verdict_name(frame.verdict),
        ))  # fmt: skip
    return rows
