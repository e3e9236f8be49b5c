"""torch.compile for the diffusers backend (``--compile``) and its on-disk cache (``--compile-cache``).

* ``regional``: diffusers' ``compile_repeated_blocks`` compiles each of the UNet's transformer blocks (the class
  diffusers lists in ``UNet2DConditionModel._repeated_blocks``), which hold most of its work; every block shares one
  compiled code, so compiling costs a fraction of compiling the whole UNet.
* ``full``: the whole UNet and the VAE decoder, compiled in place (``Module.compile``: ``pipe.unet`` stays the UNet,
  so LoRA loading and everything else that looks into it keep working), with the inductor settings of diffusers'
  speed guide.

Both use ``fullgraph=True``: a graph break would be a silent slowdown; with fullgraph it is an error at warm-up.
So nothing inside a compiled region may run Python that dynamo cannot trace: the backend's per-layer stop checks
(forward pre-hooks that call back into the service) are not put on layers inside compiled regions
(``outside_compiled``); such a batch stops at the end of its step instead, as the pipeline's step callback still
checks. Shared attention draws token samples in Python per layer and step, so the settings refuse it with compile.

Compiling happens at the first call of each shape: the backend's warm-up renders every ``--warm-up-sizes`` x
``--warm-up-batches`` shape before the renderer reports SERVING. Then ``save_cache`` writes torch's compile
artifacts (``torch.compiler.save_cache_artifacts``: inductor's kernels and autotuning results) to one file, and at
the next start ``load_cache`` hands it back (``load_cache_artifacts``) before anything is compiled: dynamo still
traces, but inductor's code generation and autotuning are read from the cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FILE = "torch-compile-artifacts.bin"


def compile_pipeline(pipe: Any, mode: str, device_type: str) -> None:
    """Compile ``pipe``'s UNet (and, for 'full', its VAE decoder) in place as ``--compile`` says."""
    if mode == "off":
        return
    if mode == "regional":
        pipe.unet.compile_repeated_blocks(fullgraph=True)
        return
    _speed_guide_inductor_settings()
    # max-autotune searches matmul and convolution kernels (and uses CUDA graphs) on GPUs; on a CPU it only adds
    # compile time.
    options: dict[str, Any] = {"fullgraph": True, "mode": "max-autotune" if device_type == "cuda" else None}
    pipe.unet.compile(**options)
    pipe.vae.decoder.compile(**options)


def _speed_guide_inductor_settings() -> None:
    """Inductor settings from diffusers' SDXL speed guide, for 'full' only: they change how the whole UNet's
    convolutions and fusions are generated (1x1 convolutions as matmuls, a wider kernel-tuning search, no epilogue
    fusion into the matmuls the guide found slower); 'regional' blocks hold few convolutions and keep inductor's
    defaults, and its short compile."""
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True
    inductor.coordinate_descent_tuning = True
    inductor.epilogue_fusion = False
    inductor.coordinate_descent_check_all_directions = True


def is_compiled(module: Any) -> bool:
    """Whether ``module`` itself runs compiled (``Module.compile`` was called on it)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def outside_compiled(model: Any) -> list[Any]:
    """Every module of ``model`` (itself included) that is neither compiled nor inside a compiled module."""
    if is_compiled(model):
        return []
    found = [model]
    for child in model.children():
        found.extend(outside_compiled(child))
    return found


def cache_file(folder: Path) -> Path:
    return folder / CACHE_FILE


def load_cache(folder: Path | None) -> bool:
    """Hand torch the compile artifacts saved in ``folder``, if any; whether it took them. A cache that cannot be
    read (another torch, a damaged file) only costs a full compile, so it is logged, not raised."""
    import torch

    if folder is None or not cache_file(folder).is_file():
        return False
    try:
        torch.compiler.load_cache_artifacts(cache_file(folder).read_bytes())
    except Exception as error:
        log.warning("ignoring the compile cache %s (compiling afresh): %s", cache_file(folder), error)
        return False
    log.info("loaded the compile cache %s", cache_file(folder))
    return True


def save_cache(folder: Path | None) -> None:
    """Write what torch compiled so far to ``folder`` (atomically: a reader never sees half a file)."""
    import torch

    if folder is None:
        return
    artifacts = torch.compiler.save_cache_artifacts()
    if artifacts is None:
        log.info("nothing compiled to save in %s", folder)
        return
    data, _info = artifacts
    folder.mkdir(parents=True, exist_ok=True)
    partial = cache_file(folder).with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, cache_file(folder))
    log.info("saved the compile cache to %s (%d bytes)", cache_file(folder), len(data))
