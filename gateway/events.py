"""The event log as watchers follow it: a storyboard's events after any number, then each new one as it is logged,
until the storyboard has ended and its last event is out. Watch and the REST bridge's server-sent events are both
this async generator.

The store calls ``logged(job_id)`` after every commit that logged an event; that wakes the watchers of that job only,
so the work per event does not grow with the storyboards being watched at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from gateway.store import JobStore, LoggedEvent
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument

log = logging.getLogger(__name__)
_BATCH = 256  # events read at a time


class EventLog:
    """Follows the store's events for any number of watchers, on one asyncio loop."""

    def __init__(self, store: JobStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._waiting: dict[str, set[asyncio.Event]] = {}
        store.on_event = self.logged

    def logged(self, job_id: str) -> None:
        """An event of ``job_id`` was committed (from any thread): wake its watchers."""
        self._loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for waiter in self._waiting.get(job_id, ()):
            waiter.set()

    async def follow(self, job_id: str, after: int) -> AsyncIterator[LoggedEvent]:
        """Events after sequence ``after``, then each new one, until the job has ended and every event was sent."""
        if after < 0:
            raise InvalidArgument("after_sequence", "must not be negative")
        waiter = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(waiter)
        try:
            while True:
                waiter.clear()  # before reading: an event logged after the read sets it again
                events, ended = self._store.events_after(job_id, after, _BATCH)
                for logged in events:
                    after = logged.event.sequence
                    yield logged
                if not events and ended:
                    return
                if not events:
                    await waiter.wait()
        finally:
            waiters = self._waiting[job_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiting[job_id]

    async def follow_with_images(self, job_id: str, after: int) -> AsyncIterator[sb.StoryboardEvent]:
        """``follow``, each event as sent: a frame's image bytes read back from the file they were written to."""
        async for logged in self.follow(job_id, after):
            yield await asyncio.to_thread(with_image, logged)


def with_image(logged: LoggedEvent) -> sb.StoryboardEvent:
    """The event to send: a copy with the frame's image bytes read back from the file they were written to."""
    if logged.image_path is None:
        return logged.event
    event = sb.StoryboardEvent()
    event.CopyFrom(logged.event)
    try:
        event.frame_rendered.image.data = logged.image_path.read_bytes()
    except FileNotFoundError:
        log.warning("the image of event %d of %s is gone from its folder", event.sequence, event.storyboard_id)
    return event
