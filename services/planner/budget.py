"""How long a plan may take: the caller's gRPC deadline, and whether the caller is still waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from storyboard_common.errors import Cancelled, DeadlineExceeded


def _always_active() -> bool:
    return True


@dataclass(frozen=True)
class CallBudget:
    """A deadline on the monotonic clock (None: no deadline) and a test for a caller that has gone away."""

    expires_at: float | None = None
    is_active: Callable[[], bool] = field(default=_always_active)

    @classmethod
    def from_context(cls, context: grpc.ServicerContext) -> CallBudget:
        """The budget of the call ``context`` serves."""
        remaining = context.time_remaining()
        expires_at = None if remaining is None else time.monotonic() + remaining
        return cls(expires_at, context.is_active)

    @classmethod
    def seconds(cls, seconds: float | None) -> CallBudget:
        """A budget that ends ``seconds`` from now (None: never)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left, never negative; None when there is no deadline."""
        return None if self.expires_at is None else max(0.0, self.expires_at - time.monotonic())

    def check(self, what: str) -> None:
        """Raise Cancelled when the caller left, DeadlineExceeded when the deadline has passed."""
        if not self.is_active():
            raise Cancelled(f"the caller cancelled while {what}")
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"the deadline passed while {what}")
