"""How the CLI shows a storyboard being made: one plain line per event (``storyboard.live`` draws bars on a terminal
where rich is installed)."""

from __future__ import annotations

import sys
from typing import TextIO

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
        for line in describe(event) + new_reason(event, self._reasons):
            self.say(line)


def new_reason(event: ev.StoryboardEvent, seen: set[str]) -> list[str]:
    """Why frames were not validated, the first time a reason comes up (it is the same for every frame)."""
    if not isinstance(event, ev.FrameValidated) or not event.reason or event.reason in seen:
        return []
    seen.add(event.reason)
    return [f"  ({event.reason})"]


def describe(event: ev.StoryboardEvent) -> list[str]:
    """The plain-text lines for an event; none for per-step progress, nor for a failure: the command reports that
    itself, once, on stderr with its exit status."""
    if isinstance(event, ev.Accepted):
        return [f"storyboard {event.storyboard_id} accepted"]
    if isinstance(event, ev.Queued):
        return [f"waiting to start: {event.position} in line"]
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
