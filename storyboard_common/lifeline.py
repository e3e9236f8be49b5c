"""The lifeline: a service started by a supervisor (the local stack of ``storyboard up`` and ``storyboard generate``)
stops when that supervisor is gone, however it went: SIGKILL and crashes included.

The supervisor makes a pipe, keeps its write end and hands every service it starts the read end, naming the
descriptor in ``$STORYBOARD_LIFELINE_FD``. Nothing is ever written to it. When the supervisor's process ends, the
kernel closes its write end and a read here returns end-of-file: the service then stops as it does on SIGTERM.

Why a pipe rather than Linux's ``prctl(PR_SET_PDEATHSIG)``: the pipe works on every POSIX system (macOS included);
it follows the supervisor's *process*, where PDEATHSIG fires when the *thread* that forked the child ends; it needs
no ``preexec_fn`` (unsafe in a parent that runs threads) and has no window between the fork and the prctl in which
a dying parent goes unnoticed; and a supervisor that closes its end on purpose stops even a child it lost track of.
A service started without the variable (on its own, in a container) has no lifeline and is unaffected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LIFELINE_ENV = "STORYBOARD_LIFELINE_FD"


def watch_lifeline(on_lost: Callable[[], None], hard_exit_after: float | None = None) -> bool:
    """Watch the lifeline named by ``$STORYBOARD_LIFELINE_FD``, if any, in a daemon thread: when the supervisor is
    gone, call ``on_lost`` (which should begin a graceful stop); if the process is still alive ``hard_exit_after``
    seconds later (a stop stuck in a model load, say), end it with ``os._exit(1)``. True when there is a lifeline.

    The variable is removed from the environment and the descriptor made non-inheritable, so that nothing this
    process starts in turn holds it or mistakes it for its own."""
    raw = os.environ.pop(LIFELINE_ENV, None)
    if not raw:
        return False
    try:
        fd = int(raw)
        os.set_inheritable(fd, False)
    except (ValueError, OSError) as error:
        log.warning("ignoring $%s=%r: %s", LIFELINE_ENV, raw, error)
        return False
    thread = threading.Thread(target=_watch, args=(fd, on_lost, hard_exit_after), name="lifeline", daemon=True)
    thread.start()
    return True


def _watch(fd: int, on_lost: Callable[[], None], hard_exit_after: float | None) -> None:
    try:
        while os.read(fd, 512):
            pass  # nothing is meant to be written; whatever is, is not the end
    except OSError as error:
        log.warning("lifeline unreadable (%s); this service no longer follows its supervisor", error)
        return
    log.warning("the supervisor that started this service is gone; stopping")
    on_lost()
    if hard_exit_after is not None:
        time.sleep(hard_exit_after)
        log.error("still running %.0f s after the supervisor went; exiting now", hard_exit_after)
        os._exit(1)
