"""Live bars on a terminal, with rich (the SDK's ``progress`` extra): a bar for the storyboard and one per frame being
rendered, and the final table of frames."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from storyboard import events as ev
from storyboard.progress import describe, new_reason, summary_rows
from storyboard.results import StoryboardResult


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
            for line in describe(event) + new_reason(event, self._reasons):
                self.say(line)
        elif isinstance(event, ev.Retry | ev.Accepted | ev.Queued | ev.Completed):
            for line in describe(event):
                self.say(line)


def frames_table(result: StoryboardResult) -> Table:
    """The final table: each frame's seed, attempts, scores and verdict."""
    table = Table(title="frames")
    for column in ("frame", "seed", "attempts", "consistency", "alignment", "verdict"):
        table.add_column(column, justify="right" if column != "verdict" else "left")
    for row in summary_rows(result):
        table.add_row(*(str(value) for value in row))
    return table
