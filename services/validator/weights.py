"""Where the CLIP weights come from, decided from the two settings alone (no torch import, so it can run at start).

open_clip's own conventions are kept: ``clip_model`` is a built-in model name (then ``clip_pretrained`` is a tag or
a checkpoint file), ``local-dir:DIR`` (a folder with ``open_clip_config.json`` and weights; ``pretrained`` unused)
or ``hf-hub:ORG/REPO`` (read from the local Hugging Face cache only: this service never downloads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_CONFIG = "open_clip_config.json"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".npy")

NOT_CONFIGURED_REASON = (
    "no CLIP weights are configured, so frames cannot be scored: set --clip-pretrained TAG_OR_FILE "
    "(or $STORYBOARD_VALIDATOR_CLIP_PRETRAINED) to an open_clip tag already in the local cache or a checkpoint file "
    "for --clip-model {model}, or set --clip-model local-dir:DIR (or $STORYBOARD_VALIDATOR_CLIP_MODEL) to a folder "
    "holding open_clip_config.json and its weights"
)


class WeightsKind(Enum):
    """How the weights are found."""

    NONE = "none"  # nothing configured: the validator serves NOT_SERVING and says what to set
    LOCAL_DIR = "local-dir"
    HF_HUB = "hf-hub"
    FILE = "file"
    TAG = "tag"


@dataclass(frozen=True)
class WeightsSource:
    """A CLIP model and its weights, as open_clip's ``create_model_and_transforms`` takes them."""

    kind: WeightsKind
    model: str
    pretrained: str = ""

    @property
    def configured(self) -> bool:
        return self.kind is not WeightsKind.NONE

    def describe(self) -> str:
        """Where the weights come from, for Info and logs."""
        if self.kind is WeightsKind.LOCAL_DIR:
            return self.model
        if self.kind is WeightsKind.HF_HUB:
            return f"{self.model} (local cache)"
        return self.pretrained

    def label(self) -> str:
        """The model and its weights in a few words, e.g. "ViT-L-14 with laion2b_s32b_b82k"."""
        return f"{self.model} with {self.pretrained}" if self.pretrained else self.model

    def not_configured_reason(self) -> str:
        return NOT_CONFIGURED_REASON.format(model=self.model or "ViT-L-14")


def looks_like_path(value: str) -> bool:
    """True when ``value`` is meant as a file rather than an open_clip tag (tags have no slashes or suffixes)."""
    return "/" in value or "\\" in value or value.startswith(("~", ".")) or value.lower().endswith(CHECKPOINT_SUFFIXES)


def check_clip_model(clip_model: str) -> str:
    """``clip_model`` with a ``local-dir:`` folder made absolute; ValueError when it cannot name a model."""
    model = clip_model.strip()
    if not model:
        raise ValueError("must not be empty; use an open_clip model name such as ViT-L-14")
    if model.startswith(HF_HUB_PREFIX) and not model[len(HF_HUB_PREFIX) :].strip("/"):
        raise ValueError("hf-hub: needs ORG/REPO after the prefix")
    if model.startswith(LOCAL_DIR_PREFIX):
        return f"{LOCAL_DIR_PREFIX}{_local_dir(model[len(LOCAL_DIR_PREFIX) :])}"
    return model


def check_clip_pretrained(clip_model: str, clip_pretrained: str) -> str:
    """``clip_pretrained`` with a checkpoint path made absolute; ValueError when it cannot work with ``clip_model``."""
    pretrained = clip_pretrained.strip()
    if not pretrained:
        return ""
    if clip_model.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX)):
        raise ValueError(
            f"{pretrained!r} would be ignored: a {clip_model.split(':', 1)[0]}: model carries its own weights; "
            "leave --clip-pretrained empty"
        )
    if not looks_like_path(pretrained):
        return pretrained  # a tag; whether it is in the local cache is checked when the model loads
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ValueError(f"{pretrained}: no such checkpoint file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{pretrained}: the file is not readable by this user")
    return str(path.resolve())


def weights_source(clip_model: str, clip_pretrained: str) -> WeightsSource:
    """The source that two already checked settings describe."""
    if clip_model.startswith(LOCAL_DIR_PREFIX):
        return WeightsSource(WeightsKind.LOCAL_DIR, clip_model)
    if clip_model.startswith(HF_HUB_PREFIX):
        return WeightsSource(WeightsKind.HF_HUB, clip_model)
    if not clip_pretrained:
        return WeightsSource(WeightsKind.NONE, clip_model)
    kind = WeightsKind.FILE if looks_like_path(clip_pretrained) else WeightsKind.TAG
    return WeightsSource(kind, clip_model, clip_pretrained)


def _local_dir(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("local-dir: needs a folder after the prefix")
    folder = Path(raw).expanduser()
    if not folder.is_dir():
        raise ValueError(f"local-dir:{raw}: no such folder")
    if not (folder / LOCAL_DIR_CONFIG).is_file():
        raise ValueError(f"local-dir:{raw}: the folder has no {LOCAL_DIR_CONFIG}")
    return folder.resolve()
