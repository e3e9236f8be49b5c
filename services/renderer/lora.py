"""LoRA adapters inside the diffusers pipeline: loaded by name in three formats, switched per batch, evicted LRU.

Formats, told apart by what the adapters folder holds under the adapter's name:

* ``NAME/`` with ``unet_lora/``, ``text_encoder_one_lora/``, ``text_encoder_two_lora/`` (any of them), each a PEFT
  adapter (``adapter_config.json`` + ``adapter_model.safetensors``, keys ``base_model.model.*``): the original
  system's checkpoints. Each part goes into its component as a named adapter with the rank, alpha and target modules
  of its ``adapter_config.json`` (diffusers' ``load_lora_into_unet`` / ``load_lora_into_text_encoder`` given the
  config as metadata, so nothing is re-guessed from tensor shapes). ``NAME/`` with just ``adapter_config.json`` is a
  UNet-only PEFT adapter.
* ``NAME.safetensors`` (or ``NAME/pytorch_lora_weights.safetensors``) written by diffusers' ``save_lora_weights``:
  ``load_lora_weights`` reads the alpha from the file's ``lora_adapter_metadata``.
* ``NAME.safetensors`` in the kohya-ss / A1111 layout (``lora_unet_*``, ``lora_te1_*``, ``.alpha``):
  ``load_lora_weights`` converts it, SDXL's original UNet block names included.

Only ``.safetensors`` weights are read (a pickle can run code). A file that cannot be loaded, holds nothing that fits
the model, or holds NaN/inf weights is FAILED_PRECONDITION naming the file (relative to the adapters folder), and
whatever part of it was loaded is removed again.

Adapters stay loaded between requests; a batch activates its own with ``set_adapters`` (one call, skipped when the
batch wants what the previous one had). Past ``max_loaded`` the least recently used adapter is deleted, never one the
current batch needs. Inside the pipeline an adapter has an internal name (``<name>__<n>``, dots replaced), because
PEFT keeps adapters in module dicts whose keys cannot contain dots.

With ``merge`` (``--merge-loras``, the default) the UNet's active LoRAs are merged into its weights before a batch
(``UnetMerge``, PEFT's own ``merge``): a step then costs what it costs without adapters. Text-encoder LoRAs stay
separate PEFT layers (the encoders run once per frame, not once per step).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from services.renderer.adapters import AdapterCatalog
from services.renderer.backend import AdapterWeight
from services.renderer.metrics import RendererMetrics
from storyboard_common.errors import FailedPrecondition, ServiceError

log = logging.getLogger(__name__)

# The original system's layout: pipeline component -> sub-folder holding its PEFT adapter.
PEFT_PARTS = {"unet": "unet_lora", "text_encoder": "text_encoder_one_lora", "text_encoder_2": "text_encoder_two_lora"}
PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# transformers logs a "LOAD REPORT" listing every *other* loaded adapter's weights as MISSING whenever one more is
# loaded into a text encoder (and a tensor-parallel "not sharded" note): noise that reads like an error, so these
# loggers are muted while adapters load. peft warns about the very things this module does on purpose (several
# adapters in one model; deleting one that was active); those two warnings are silenced while it does them.
_NOISY_LOGGERS = (
    "transformers.integrations.peft",
    "transformers.modeling_utils",
    "transformers.distributed.tensor_parallel",
    "diffusers.loaders.peft",
)
_EXPECTED_PEFT_WARNINGS = (
    "Already found a `peft_config` attribute in the model",
    "Adapter .* was active which is now deleted",
)


@dataclass(frozen=True)
class LoadedAdapter:
    """An adapter in the pipeline: the name clients use, its name inside the pipeline, where it came from."""

    name: str
    internal: str
    path: Path
    stamp: tuple[tuple[str, int, int], ...]
    format: str


class AdapterLoadError(FailedPrecondition):
    """An adapter's files cannot be loaded into this model."""


class LoraAdapters:
    """The LoRA adapters loaded in one pipeline. Used from the renderer's worker thread only, except
    ``loaded_names`` (Info), which any thread may call."""

    def __init__(
        self,
        pipeline: Any,
        catalog: AdapterCatalog,
        max_loaded: int,
        metrics: RendererMetrics | None = None,
        *,
        merge: bool = False,
    ) -> None:
        self._pipe = pipeline
        self._catalog = catalog
        self.max_loaded = max_loaded
        self._metrics = metrics if metrics is not None else RendererMetrics()
        self._loaded: OrderedDict[str, LoadedAdapter] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # guards _loaded against Info reading it while the worker changes it
        self._active: tuple[tuple[str, float], ...] | None = ()  # what set_adapters last made active; None: unknown
        self._ids = count(1)
        self._merge = UnetMerge(pipeline.unet) if merge else None

    def loaded_names(self) -> tuple[str, ...]:
        """Names of the loaded adapters, least recently used first."""
        with self._lock:
            return tuple(self._loaded)

    def activate(self, adapters: Sequence[AdapterWeight]) -> None:
        """Make exactly ``adapters`` active at their weights, loading any that are not loaded yet (and, merging,
        merged into the UNet; a batch that wants what the previous one had keeps its merge)."""
        if not adapters:
            if self._active != ():
                self._unmerge()
                if self._any_loaded():
                    self._pipe.disable_lora()
                self._active = ()
            return
        if self._merge is not None and self._merge.merged != self._wanted_if_loaded(adapters):
            self._unmerge()  # before loading or deleting anything: PEFT must never see merged layers change
        entries = [self._ensure_loaded(adapter.name) for adapter in adapters]
        self._evict(keep={adapter.name for adapter in adapters})
        wanted = tuple((entry.internal, adapter.weight) for entry, adapter in zip(entries, adapters, strict=True))
        if wanted != self._active:
            self._unmerge()
            self._pipe.enable_lora()
            self._pipe.set_adapters([name for name, _ in wanted], [weight for _, weight in wanted])
            self._active = wanted
        if self._merge is not None and self._merge.merged != wanted:
            self._merge.merge(wanted)

    def _wanted_if_loaded(self, adapters: Sequence[AdapterWeight]) -> tuple[tuple[str, float], ...] | None:
        """The (internal name, weight) pairs ``adapters`` would be activated as, if all are loaded; else None."""
        with self._lock:
            entries = [self._loaded.get(adapter.name) for adapter in adapters]
        if any(entry is None for entry in entries):
            return None
        return tuple((entry.internal, adapter.weight) for entry, adapter in zip(entries, adapters, strict=True))  # type: ignore[union-attr]

    def _unmerge(self) -> None:
        if self._merge is not None:
            self._merge.restore()

    def unload_all(self) -> None:
        """Delete every adapter (when the server stops)."""
        self._unmerge()
        for entry in list(self._loaded.values()):
            self._delete(entry)

    # --- loading ----------------------------------------------------------------------------------------------------

    def _any_loaded(self) -> bool:
        return bool(self._loaded)

    def _ensure_loaded(self, name: str) -> LoadedAdapter:
        path = self._catalog.path_for(name)  # NotFound if it left the folder since the request was checked
        stamp = file_stamp(path)
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None and entry.path == path and entry.stamp == stamp:
                self._loaded.move_to_end(name)
                return entry
        if entry is not None:
            log.info("adapter %r changed on disk; reloading it", name)
            self._delete(entry)
        internal = f"{re.sub(r'[^A-Za-z0-9_]', '_', name)[:64]}__{next(self._ids)}"
        self._active = None  # loading can change which adapters the layers have active
        try:
            with _quiet_loaders():
                adapter_format = self._load(path, internal)
            self._check_loaded(path, internal)
        except Exception as error:
            self._remove_partial(internal)
            self._metrics.adapter_load_failures.inc()
            if isinstance(error, AdapterLoadError):
                raise AdapterLoadError(f"adapter {name!r}: {error.message}") from None
            if isinstance(error, ServiceError) or type(error).__name__ == "OutOfMemoryError":
                raise
            raise AdapterLoadError(f"adapter {name!r}: cannot load {self._relative(path)}: {_reason(error)}") from None
        entry = LoadedAdapter(name, internal, path, stamp, adapter_format)
        with self._lock:
            self._loaded[name] = entry
        self._metrics.adapter_loads.inc()
        self._metrics.loaded_adapters.set(len(self._loaded))
        log.info("loaded adapter %r (%s) from %s", name, adapter_format, self._relative(path))
        return entry

    def _load(self, path: Path, internal: str) -> str:
        """Load the adapter at ``path`` as ``internal``; its format's name."""
        if path.is_file():
            self._load_lora_file(path, internal)
            return "kohya" if _is_kohya(path) else "diffusers"
        if any((path / part).is_dir() for part in PEFT_PARTS.values()):
            self._load_peft_checkpoint(path, internal)
            return "peft checkpoint"
        if (path / PEFT_CONFIG).is_file():
            self._load_peft_part(path, "unet", internal)
            return "peft unet adapter"
        if (path / DIFFUSERS_WEIGHTS).is_file():
            self._load_lora_file(path / DIFFUSERS_WEIGHTS, internal)
            return "diffusers"
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise self._error(path, f"holds only pickle weights ({', '.join(pickles)}); convert them to .safetensors")
        raise self._error(
            path,
            f"holds no LoRA weights: expected {', '.join(p + '/' for p in PEFT_PARTS.values())} (PEFT), "
            f"{PEFT_CONFIG} + {PEFT_WEIGHTS}, or {DIFFUSERS_WEIGHTS}",
        )

    def _load_lora_file(self, file: Path, internal: str) -> None:
        try:
            self._pipe.load_lora_weights(str(file), adapter_name=internal)
        except Exception as error:
            raise self._error(file, _reason(error)) from None

    def _load_peft_checkpoint(self, folder: Path, internal: str) -> None:
        for component, part in PEFT_PARTS.items():
            if (folder / part).is_dir():
                self._load_peft_part(folder / part, component, internal)

    def _load_peft_part(self, folder: Path, component: str, internal: str) -> None:
        """One PEFT adapter folder into one pipeline component, with the rank and alpha of its own config."""
        from peft import LoraConfig
        from safetensors.torch import load_file

        config_file, weights_file = folder / PEFT_CONFIG, folder / PEFT_WEIGHTS
        if not config_file.is_file():
            raise self._error(folder, f"has no {PEFT_CONFIG}")
        if not weights_file.is_file():
            pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
            found = f" (only {', '.join(pickles)}: convert it to .safetensors)" if pickles else ""
            raise self._error(folder, f"has no {PEFT_WEIGHTS}{found}")
        try:
            config = LoraConfig.from_pretrained(str(folder))
        except Exception as error:
            raise self._error(config_file, _reason(error)) from None
        try:
            tensors = load_file(str(weights_file))
        except Exception as error:
            raise self._error(weights_file, _reason(error)) from None
        # PeftModel.save_pretrained prefixes every key with the wrapper's path; the pipeline's loaders want the
        # component's own module paths, prefixed with the component's name.
        state = {f"{component}.{key.removeprefix('base_model.model.')}": value for key, value in tensors.items()}
        metadata = {f"{component}.{key}": value for key, value in config.to_dict().items()}
        pipe = self._pipe
        try:
            if component == "unet":
                pipe.load_lora_into_unet(
                    state, network_alphas=None, unet=pipe.unet, adapter_name=internal, metadata=metadata, _pipeline=pipe
                )
            else:
                pipe.load_lora_into_text_encoder(
                    state,
                    network_alphas=None,
                    text_encoder=getattr(pipe, component),
                    prefix=component,
                    adapter_name=internal,
                    metadata=metadata,
                    _pipeline=pipe,
                )
        except Exception as error:
            raise self._error(weights_file, _reason(error)) from None

    def _check_loaded(self, path: Path, internal: str) -> None:
        """Refuse an adapter that fitted nowhere in the model, or whose weights are not all finite."""
        import torch

        found = False
        for component in COMPONENTS:
            module = getattr(self._pipe, component, None)
            if module is None or internal not in getattr(module, "peft_config", {}):
                continue
            for name, parameter in module.named_parameters():
                if f".{internal}." not in name:
                    continue
                found = True
                if not bool(torch.isfinite(parameter).all()):
                    raise self._error(path, f"has NaN or infinite weights ({component}: {name})")
        if not found:
            raise self._error(path, "holds no LoRA weights that fit this model's UNet or text encoders")

    # --- unloading --------------------------------------------------------------------------------------------------

    def _evict(self, keep: set[str]) -> None:
        """Delete least recently used adapters not in ``keep`` until at most ``max_loaded`` remain."""
        for name in list(self._loaded):
            if len(self._loaded) <= self.max_loaded:
                return
            if name in keep:
                continue
            log.info("unloading adapter %r (least recently used; --max-loaded-adapters %d)", name, self.max_loaded)
            self._delete(self._loaded[name])
            self._metrics.adapter_evictions.inc()

    def _delete(self, entry: LoadedAdapter) -> None:
        with self._lock:
            self._loaded.pop(entry.name, None)
        self._remove_partial(entry.internal)
        self._metrics.loaded_adapters.set(len(self._loaded))

    def _remove_partial(self, internal: str) -> None:
        """Remove adapter ``internal`` from every component that has (some of) it."""
        from diffusers.utils.peft_utils import delete_adapter_layers

        self._unmerge()
        self._active = None
        for component in COMPONENTS:
            module = getattr(self._pipe, component, None)
            if module is None:
                continue
            has_config = internal in getattr(module, "peft_config", {})
            if not has_config and not any(f".{internal}." in name for name, _ in module.named_parameters()):
                continue
            try:
                with _quiet_loaders():
                    if component == "unet":
                        module.delete_adapters([internal])
                    else:
                        delete_adapter_layers(module, internal)
            except Exception:
                log.exception("removing adapter %s from %s failed", internal, component)

    # --- messages ---------------------------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        root = self._catalog.adapters_dir
        if root is not None:
            try:
                return str(path.relative_to(root))
            except ValueError:
                pass
        return path.name

    def _error(self, path: Path, problem: str) -> AdapterLoadError:
        return AdapterLoadError(f"cannot load {self._relative(path)}: {problem}")


class UnetMerge:
    """The UNet's LoRAs merged into its weights, and restored exactly.

    ``merge`` calls PEFT's ``merge`` on every LoRA layer of the UNet that holds one of the adapters: each base weight
    gains the adapters' ``B @ A * scale`` in place. Then every LoRA layer of the UNet is *disabled* and left with
    PEFT's list of merged adapters empty, so its forward is the base layer alone, now holding the merge. That state
    is the same whichever adapters are merged, and the same as a batch without adapters (layers disabled, nothing
    merged): torch.compile's guards read exactly these attributes (PEFT's list of merged adapter *names* among them),
    so the compiled UNet is reused across adapter changes instead of recompiled for each set.

    Before a layer's first merge its base weight (and bias) is copied, once, on its own device; ``restore`` copies
    those originals back, so the UNet returns to its loaded weights bit for bit. PEFT's ``unmerge`` would subtract
    the delta again, and in float16 or bfloat16 ``(W + D) - D`` rounds away from ``W``; it is never called (the
    emptied list keeps PEFT from trying).

    The copies stay for the process's life (the base weights never change otherwise): memory for the weights LoRAs
    reach, taken once, instead of a copy at every adapter change."""

    def __init__(self, unet: Any) -> None:
        self._unet = unet
        self._originals: dict[str, tuple[Any, Any]] = {}  # layer's name in the UNet -> (weight, bias) as loaded
        self._merged_layers: list[tuple[str, Any]] = []
        self.merged: tuple[tuple[str, float], ...] = ()  # the (internal name, weight) pairs merged now

    def merge(self, adapters: tuple[tuple[str, float], ...]) -> None:
        """Merge ``adapters`` (active already, at their weights, through ``set_adapters``) into the UNet."""
        import torch

        self.restore()
        names = [name for name, _ in adapters]
        with torch.no_grad():
            for path, layer in _lora_layers(self._unet):
                present = [name for name in names if name in layer.lora_A or name in layer.lora_embedding_A]
                if present:
                    self._keep_original(path, layer)
                    self._merged_layers.append((path, layer))
                    layer.merge(adapter_names=present)
                    layer.merged_adapters.clear()  # restoring is this class's job (see above)
                layer.enable_adapters(False)
        self.merged = adapters

    def restore(self) -> None:
        """Put every merged layer's original weights back and mark it unmerged."""
        import torch

        with torch.no_grad():
            for path, layer in self._merged_layers:
                weight, bias = self._originals[path]
                base = layer.get_base_layer()
                base.weight.copy_(weight)
                if bias is not None:
                    base.bias.copy_(bias)
        self._merged_layers = []
        self.merged = ()

    def _keep_original(self, path: str, layer: Any) -> None:
        """Copy the layer's base weights the first time anything is merged into it (they are as loaded then: every
        merge is restored before the next one)."""
        if path in self._originals:
            return
        base = layer.get_base_layer()
        bias = base.bias.detach().clone() if getattr(base, "bias", None) is not None else None
        self._originals[path] = (base.weight.detach().clone(), bias)


def _lora_layers(model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def file_stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Sizes and modification times of an adapter's files: when they change, the adapter is loaded again."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = []
    for file in files:
        stat = file.stat()
        stamp.append((str(file.relative_to(path)) if file != path else file.name, stat.st_size, stat.st_mtime_ns))
    return tuple(stamp)


def _is_kohya(file: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return any(key.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for key in handle.keys())  # noqa: SIM118
    except Exception:
        return False


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:400] if first else type(error).__name__


@contextmanager
def _quiet_loaders() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in _EXPECTED_PEFT_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
