"""Choosing the backend the settings name. Only backends this build has are listed; the settings refuse others.

Adding a backend (e.g. ``diffusers``): implement ``backend.RenderBackend`` in its own module (load weights in
``warm_up``, render a whole compatible batch per pipeline call with one generator per frame, check ``should_stop`` in
``callback_on_step_end`` and set ``pipe._interrupt``, ``applies_adapters = True``), add its name to
``settings.AVAILABLE_BACKENDS`` and build it here. The scheduler, servicer, limits and tests need no change.
"""

from __future__ import annotations

import logging

from services.renderer.backend import RenderBackend
from services.renderer.settings import RendererSettings
from services.renderer.sketch import SketchBackend

log = logging.getLogger(__name__)


def create_backend(settings: RendererSettings) -> RenderBackend:
    """The backend ``settings.backend`` names, built from the settings (nothing is loaded until warm-up)."""
    if settings.backend == "sketch":
        unused = [
            flag
            for flag, used in (
                ("--base-model", bool(settings.base_model)),
                ("--device", settings.device not in ("auto", "cpu")),
                ("--dtype", settings.dtype != "auto"),
            )
            if used
        ]
        if unused:
            # Not an error, so one stack command can pass the same flags to every renderer; but never silent.
            log.warning("the sketch backend draws on the CPU without weights; ignoring %s", ", ".join(unused))
        return SketchBackend()
    raise ValueError(f"the {settings.backend} backend is not available in this build yet; use --backend sketch")
