"""The storyboards this gateway is working on (or waiting to): one asyncio task each. Cancelling a storyboard is
cancelling its task; stopping the gateway cancels them all, and what they leave unfinished is resumed by the next
start. The registry tells the two apart for a task that sees its cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Runs:
    """One task per storyboard being worked on (or waiting to be), by storyboard id."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # by their users, while their tasks end
        self.closing = False

    def start(self, job_id: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` as the storyboard's task; a storyboard already at work is not started twice."""
        if job_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(work(), name=f"storyboard-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _done: self._ended(job_id))

    def _ended(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._cancelled.discard(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel the storyboard's task for its user (its renders are cancelled with it); False when it has none."""
        task = self._tasks.get(job_id)
        if task is None:
            return False
        self._cancelled.add(job_id)
        task.cancel()
        return True

    def cancelled_by_user(self, job_id: str) -> bool:
        """Whether the storyboard's task was cancelled by its user (not by the gateway stopping)."""
        return job_id in self._cancelled

    async def wait(self, job_id: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the storyboard's task to end."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait([task], timeout=timeout)

    async def stop_all(self) -> None:
        """Cancel every task and wait for them: the storyboards stay unfinished, to be resumed by the next start."""
        self.closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
