"""Choosing the backend the settings name. Only backends this build has are listed; the settings refuse others.

Backends: ``sketch`` (``sketch.py``: CPU layout panels) and ``diffusers`` (``diffusers_backend.py``: SDXL + LoRA).
Adding one: implement ``backend.RenderBackend`` in its own module (load weights in ``warm_up``, render a whole
compatible batch per call, check ``should_stop`` at every step), add its name to ``settings.AVAILABLE_BACKENDS`` and
build it here. The scheduler, servicer, limits and metrics need no change.
"""

from __future__ import annotations

import logging

from services.renderer.backend import RenderBackend
from services.renderer.metrics import RendererMetrics
from services.renderer.settings import RendererSettings
from services.renderer.sketch import SketchBackend

log = logging.getLogger(__name__)


def create_backend(settings: RendererSettings, metrics: RendererMetrics | None = None) -> RenderBackend:
    """The backend ``settings.backend`` names, built from the settings (nothing is loaded until warm-up).

    ``metrics`` receives the backend's own counts (adapter loads and evictions, out-of-memory batches)."""
    if settings.backend == "diffusers":
        # Imported here: the sketch backend must not pay for (or need) torch and diffusers.
        from services.renderer.diffusers_backend import DiffusersBackend

        return DiffusersBackend(settings, metrics)
    if settings.backend == "sketch":
        unused = [
            flag
            for flag, used in (
                ("--base-model", bool(settings.base_model)),
                ("--vae", bool(settings.vae)),
                ("--device", settings.device not in ("auto", "cpu")),
                ("--dtype", settings.dtype != "auto"),
                ("--consistency", settings.consistency != "off"),
            )
            if used
        ]
        if unused:
            # Not an error, so one stack command can pass the same flags to every renderer; but never silent.
            log.warning("the sketch backend draws on the CPU without weights; ignoring %s", ", ".join(unused))
        return SketchBackend()
    raise ValueError(f"the {settings.backend} backend is not available in this build yet; use --backend sketch")
