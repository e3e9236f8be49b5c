"""A tiny open_clip model with random weights, saved as an open_clip ``local-dir`` folder, for the validator in the
benchmarks: ``--clip-model local-dir:<folder>`` loads it through the validator's real loading path. Built in well
under a second; the scores mean nothing, the work per frame (decode, preprocess, one forward pass) is real.

Shaped like the test suite's tiny CLIP (tests/support/tiny_clip.py), which the benchmarks do not import: a ViT image
tower and a text transformer over CLIP's real 49,408-token vocabulary, average-pooled so that distinct pictures
score apart.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE = "open_clip_config.json"  # the names open_clip's local-dir: loader looks for
WEIGHTS_FILE = "open_clip_model.safetensors"
MODEL_CFG: dict[str, object] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "pool_type": "avg"},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG: dict[str, object] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Write the model, random weights drawn from ``seed``, to ``folder``; its resolved path (the validator's
    ``--clip-model local-dir:<path>``). torch's global random state is left as it was."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**json.loads(json.dumps(MODEL_CFG)))
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    return folder
