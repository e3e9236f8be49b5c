"""A tiny open_clip model with random weights, saved the way real CLIP weights are shipped, for tests and benchmarks.

``build_tiny_clip(folder)`` writes an open_clip ``local-dir`` folder (``open_clip_config.json`` + weights) that the
validator loads through its real loading path, in this process or in any other one:

    tiny = build_tiny_clip(tmp_path / "clip")
    ValidatorSettings(clip_model=tiny.clip_model, clip_pretrained=tiny.clip_pretrained)   # in process
    python -m services.validator --clip-model local-dir:/.../clip                        # another process
    env STORYBOARD_VALIDATOR_CLIP_MODEL=local-dir:/.../clip python -m services.validator  # the same, by env

The same weights can also be loaded as open_clip's other convention, a model *name* plus ``pretrained=<file>``, in a
process that called ``register_tiny_clip_config(tiny)`` (open_clip's config registry is per process).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TINY_CLIP_NAME = "storyboard-tiny-clip"
CONFIG_FILE = "open_clip_config.json"  # the name open_clip's local-dir: loader looks for
WEIGHTS_FILE = "open_clip_model.safetensors"  # the first name open_clip's local-dir: loader prefers

# Small enough to build in milliseconds, shaped like a real CLIP: a ViT image tower and a text transformer that uses
# the real 49,408-token BPE vocabulary shipped inside open_clip, so prompts tokenize exactly as they would for ViT-L-14.
# Average pooling because a random ViT's class token hardly depends on the image (distinct images score ~0.98 to each
# other); averaged patch tokens keep distinct images apart (~0.45), so "similar" and "different" mean something.
TINY_MODEL_CFG: dict[str, object] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "pool_type": "avg"},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_PREPROCESS_CFG: dict[str, object] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


@dataclass(frozen=True)
class TinyClip:
    """Where a tiny CLIP was saved and the validator settings that load it; unpacks as (clip_model, clip_pretrained).

    ``clip_model`` is ``local-dir:<folder>``: open_clip reads the config and the weights from the folder and ignores
    ``pretrained``, so ``clip_pretrained`` is empty.
    """

    folder: Path
    checkpoint: Path
    model_name: str = TINY_CLIP_NAME

    @property
    def clip_model(self) -> str:
        return f"local-dir:{self.folder}"

    @property
    def clip_pretrained(self) -> str:
        return ""

    def settings(self) -> dict[str, str]:
        """Keyword arguments for ``ValidatorSettings``."""
        return {"clip_model": self.clip_model, "clip_pretrained": self.clip_pretrained}

    def env(self) -> dict[str, str]:
        """Environment variables that make a validator process load this model."""
        return {"STORYBOARD_VALIDATOR_CLIP_MODEL": self.clip_model, "STORYBOARD_VALIDATOR_CLIP_PRETRAINED": ""}

    def cli_args(self) -> list[str]:
        """Command-line flags that make a validator process load this model."""
        return [f"--clip-model={self.clip_model}"]

    def __iter__(self) -> Iterator[str]:
        return iter((self.clip_model, self.clip_pretrained))


def build_tiny_clip(folder: str | Path, seed: int = 0) -> TinyClip:
    """Build the tiny model with random weights drawn from ``seed`` and save it as a ``local-dir`` folder.

    The global torch random state is left as it was. Building and saving takes well under a second on CPU.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": TINY_PREPROCESS_CFG}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    # A model-registry entry too (config JSON named after the model), for the name + pretrained=<file> convention.
    registry = folder / "model_configs"
    registry.mkdir(exist_ok=True)
    (registry / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_MODEL_CFG, indent=2))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**json.loads(json.dumps(TINY_MODEL_CFG)))
    checkpoint = folder / WEIGHTS_FILE
    # Shared tensors (none here today) would need safetensors' save_model; contiguous copies keep save_file happy.
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(checkpoint))
    checkpoint.chmod(0o644)  # safetensors writes 0600 whatever the umask; a process of another user must read it
    return TinyClip(folder=folder, checkpoint=checkpoint)


def register_tiny_clip_config(tiny: TinyClip) -> None:
    """Make ``tiny.model_name`` a known open_clip model name in this process, so that
    ``clip_model=tiny.model_name, clip_pretrained=str(tiny.checkpoint)`` loads it too."""
    import open_clip

    if tiny.model_name not in open_clip.list_models():
        open_clip.add_model_config(tiny.folder / "model_configs")
