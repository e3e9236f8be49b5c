"""What the reliability scenarios check: a storyboard's events and files are complete (no frame missing or
duplicated), and every file a reader can see in an output folder is whole, also while the gateway is being killed."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from PIL import Image

from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def watch_to_end(
    stub: storyboards_pb2_grpc.StoryboardsStub, storyboard_id: str, timeout: float
) -> list[storyboards_pb2.StoryboardEvent]:
    """Every event of a storyboard from the start until its final one, within ``timeout`` seconds."""
    return list(stub.Watch(storyboards_pb2.WatchRequest(id=storyboard_id), timeout=timeout))


def is_temporary(path: Path) -> bool:
    """A file being written atomically: hidden, renamed into place when whole."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole PNG / JSON / PDF file, or None when it is (or vanished meanwhile)."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()  # decodes every row: a truncated file fails here
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".pdf" and (not data.startswith(b"%PDF") or b"%%EOF" not in data[-1024:]):
            return f"{path.name}: not a whole PDF ({len(data)} bytes)"
    except Exception as error:
        return f"{path.name}: {type(error).__name__}: {error}"
    return None


class FolderWatcher:
    """Reads every visible file under a folder over and over, on a thread, and notes each one that is not whole."""

    def __init__(self, folder: Path, interval: float = 0.005, max_seconds: float = 300) -> None:
        self._folder = folder
        self._interval = interval
        self._deadline = time.monotonic() + max_seconds  # bounded even if nobody calls stop()
        self._stop = threading.Event()
        self.problems: list[str] = []
        self.reads = 0
        self._thread = threading.Thread(target=self._run, name="folder-watcher", daemon=True)

    def __enter__(self) -> FolderWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for path in sorted(self._folder.rglob("*")) if self._folder.exists() else []:
                if path.is_file() and not is_temporary(path):
                    self.reads += 1
                    if (problem := file_problem(path)) and problem not in self.problems:
                        self.problems.append(problem)
            self._stop.wait(self._interval)


def storyboard_problems(events: Sequence[storyboards_pb2.StoryboardEvent], folder: Path) -> list[str]:
    """Everything wrong with a storyboard that should have completed: its final event, gaps or repeats in its event
    numbers, frames missing or rendered twice (the same attempt sent twice), missing or broken files."""
    problems: list[str] = []
    if not events or not events[-1].HasField("completed"):
        last = events[-1].WhichOneof("event") if events else "nothing"
        detail = f": {events[-1].failed.code} {events[-1].failed.message}" if events and last == "failed" else ""
        return [f"did not complete (last event: {last}{detail})"]
    sequences = [event.sequence for event in events]
    if sequences != list(range(1, len(events) + 1)):
        problems.append(f"event numbers are not 1..{len(events)}: {sequences}")
    storyboard = events[-1].completed.storyboard
    count = len(storyboard.plan.scenes)
    rendered = Counter(
        (e.frame_rendered.frame, e.frame_rendered.attempt) for e in events if e.HasField("frame_rendered")
    )
    duplicated = sorted(key for key, times in rendered.items() if times > 1)
    if duplicated:
        problems.append(f"frame attempts sent twice: {duplicated}")
    frames_seen = {frame for frame, _ in rendered}
    if frames_seen != set(range(1, count + 1)):
        problems.append(f"frames with a FrameRendered event: {sorted(frames_seen)}, expected 1..{count}")
    if not all(frame.rendered for frame in storyboard.frames) or len(storyboard.frames) != count:
        problems.append("the final storyboard does not have every frame rendered")
    expected = [f"frame_{n:03d}.png" for n in range(1, count + 1)]
    present = sorted(path.name for path in folder.glob("frame_*.png"))
    if present != expected:
        problems.append(f"frame files {present}, expected {expected}")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not is_temporary(path) and (problem := file_problem(path)):
            problems.append(problem)
    for name in ("storyboard_grid.png", "frames.json", "report.json", "storyboard.pdf", "scene_breakdown.json"):
        if not (folder / name).is_file():
            problems.append(f"{name} is missing")
    return problems
