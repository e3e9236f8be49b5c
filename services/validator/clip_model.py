"""Loading an open_clip model from local files only, on the configured device.

Nothing here ever downloads: Hugging Face offline mode is switched on before open_clip is used, and a ``pretrained``
tag is first looked up in the local caches, so a tag that was never fetched fails at once with a message that says
what to do, instead of hanging on a network that is not there. torch and open_clip are imported only when a model
loads, so the server answers health and Info within moments of starting.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.validator.weights import LOCAL_DIR_PREFIX, WeightsKind, WeightsSource

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME = "open_clip_pytorch_model.bin", "open_clip_model.safetensors"  # open_clip's
LOCAL_DIR_WEIGHTS = ("*.safetensors", "*.bin", "*.pth")  # what open_clip's local-dir: loader picks up


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to change."""


@dataclass
class LoadedClip:
    """A CLIP model ready for inference, with the transforms that feed it."""

    model: Any  # an open_clip CLIP / CustomTextCLIP in eval mode
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    input_dtype: torch.dtype
    name: str
    pretrained: str


def forbid_downloads() -> None:
    """Switch Hugging Face (hub and transformers) to offline mode in this process, even if already imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # read at import time; a module imported earlier needs telling


def pick_device(setting: str) -> torch.device:
    """The device for ``setting`` (auto|cpu|cuda|mps); ModelLoadError when the requested one is not here."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if setting == "auto":
        return torch.device("cuda:0" if cuda else "mps" if mps else "cpu")
    if setting == "cuda" and not cuda:
        raise ModelLoadError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu")
    if setting == "mps" and not mps:
        raise ModelLoadError("--device mps was asked for, but torch sees no MPS device here; use --device cpu")
    return torch.device("cuda:0" if setting == "cuda" else setting)


def load_clip(source: WeightsSource, device_setting: str) -> LoadedClip:
    """Load the model ``source`` describes; ModelLoadError with an actionable message when it cannot."""
    forbid_downloads()
    import open_clip
    import torch

    device = pick_device(device_setting)
    precision = "fp16" if device.type == "cuda" else "fp32"  # fp16 halves memory and time on GPUs; CPUs lack fp16
    options = _open_clip_options(source)
    log.info("loading CLIP %s on %s (%s)", source.label(), device, precision)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.model,
            pretrained=source.pretrained or None,
            precision=precision,
            device=device,
            pretrained_image=False,
            pretrained_text=False,
            require_pretrained=True,  # random weights would score nonsense; fail instead
            **options,
        )
        tokenizer = open_clip.get_tokenizer(source.model)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"could not load CLIP {source.label()}: {error}") from error
    model.eval().requires_grad_(False)
    return LoadedClip(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=device,
        input_dtype=open_clip.get_input_dtype(precision) or torch.float32,
        name=source.model,
        pretrained=source.describe(),
    )


def _open_clip_options(source: WeightsSource) -> dict[str, Any]:
    """Checks that need open_clip, done before it is asked to load, and the options the source needs."""
    import open_clip

    if source.kind is WeightsKind.LOCAL_DIR:
        _require_local_dir_weights(Path(source.model[len(LOCAL_DIR_PREFIX) :]))
        return {}
    if source.kind is WeightsKind.HF_HUB:
        _require_cached_hub_model(source.model.split(":", 1)[1])
        return {}
    name = source.model.replace("/", "-")  # open_clip's own spelling of names like ViT-L/14
    if name not in open_clip.list_models():
        raise ModelLoadError(
            f"--clip-model {source.model} is not an open_clip model name; use one of open_clip.list_models() "
            "(e.g. ViT-L-14) or local-dir:DIR"
        )
    if source.kind is WeightsKind.TAG:
        tag_config = open_clip.get_pretrained_cfg(name, source.pretrained)
        if not tag_config:
            known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
            raise ModelLoadError(
                f"--clip-pretrained {source.pretrained} is not an open_clip tag of {name} (known tags: {known}); "
                "give a known tag or a checkpoint file"
            )
        _require_cached_tag(name, source.pretrained, tag_config)
        # open_clip only warns when a tag was trained with QuickGELU and the model config lacks it; the embeddings
        # would then be quietly wrong, so the activation the weights were trained with is used.
        if tag_config.get("quick_gelu") and not name.endswith("-quickgelu"):
            return {"force_quick_gelu": True}
    return {}


def _require_local_dir_weights(folder: Path) -> None:
    if not any(any(folder.glob(pattern)) for pattern in LOCAL_DIR_WEIGHTS):
        raise ModelLoadError(f"local-dir:{folder} holds no weights (a .safetensors, .bin or .pth file)")


def _require_cached_hub_model(repo: str) -> None:
    if _hub_cached(repo, "open_clip_config.json") is None:
        raise ModelLoadError(
            f"hf-hub:{repo} is not in the local Hugging Face cache, and this service never downloads: fetch it on a "
            "machine with network access and copy the cache, or save it to a folder and use local-dir:DIR"
        )


def _require_cached_tag(name: str, tag: str, tag_config: dict[str, Any]) -> None:
    """Fail unless the weights of ``tag`` are where open_clip would look for them before downloading."""
    hub = tag_config.get("hf_hub", "")
    if "file" in tag_config:
        found = Path(tag_config["file"]).is_file()
        where = tag_config["file"]
    elif hub:
        repo, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        found = any(_hub_cached(repo, name) is not None for name in (*_safetensors_alternatives(filename), filename))
        where = f"the Hugging Face cache (repo {repo})"
    else:
        url = tag_config.get("url", "")
        where = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        found = bool(url) and os.path.isfile(where)
    if not found:
        raise ModelLoadError(
            f"the weights of --clip-pretrained {tag} for {name} are not in {where}, and this service never "
            "downloads: fetch them once where there is network access (open_clip.create_model"
            f"('{name}', pretrained='{tag}')) and copy the cache here, or give --clip-pretrained a checkpoint file"
        )


def _safetensors_alternatives(filename: str) -> tuple[str, ...]:
    """The .safetensors files open_clip tries before ``filename`` on the hub (as its ``_get_safe_alternatives``)."""
    if filename == HF_WEIGHTS_NAME:
        return (HF_SAFE_WEIGHTS_NAME,)
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors",)
    return ()


def _hub_cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id=repo, filename=filename)
    return path if isinstance(path, str) else None
