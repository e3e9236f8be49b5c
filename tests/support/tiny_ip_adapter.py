"""A tiny random IP-Adapter for the tiny SDXL of ``tiny_sdxl.py``, built in code and saved in the folder layout the
renderer's ``--ip-adapter`` reads (``services/renderer/ip_adapter.py``):

    DIR/ip-adapter.safetensors     the IP-Adapter: ``image_proj.*`` and ``ip_adapter.{i}.to_k_ip/to_v_ip.weight``
    DIR/image_encoder/             a transformers ``CLIPVisionModelWithProjection`` (save_pretrained)

    ip_adapter = build_tiny_ip_adapter(model, tmp / "ip-adapter")   # model: a TinySdxl

The weights file holds what h94/IP-Adapter's files hold for the plain IP-Adapter, in the keys diffusers'
``load_ip_adapter`` converts (``_convert_ip_adapter_image_proj_to_diffusers``: ``proj`` maps an image embedding to 4
tokens of the UNet's cross-attention width, ``norm`` normalises them; ``_convert_ip_adapter_attn_to_diffusers``: one
``to_k_ip`` / ``to_v_ip`` pair per cross-attention layer, numbered 1, 3, 5, ... in the order of the UNet's attention
processors, because the original numbering counts self- and cross-attention layers alike). The image encoder is a
toy ViT (32x32 pictures, 4x4 patches) with a 32-wide projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.tiny_sdxl import TinySdxl, _readable

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 32  # the encoder's input: load_ip_adapter builds a CLIPImageProcessor that resizes and crops to this
IMAGE_EMBED_DIM = 32  # the encoder's projection_dim: the width of one picture's embedding
IMAGE_TOKENS = 4  # the plain IP-Adapter turns an image embedding into 4 tokens

_VISION_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": 4,
    "projection_dim": IMAGE_EMBED_DIM,
    "hidden_act": "gelu",
}


@dataclass(frozen=True)
class TinyIpAdapter:
    """Where a tiny IP-Adapter was saved."""

    folder: Path


def build_tiny_ip_adapter(model: TinySdxl, folder: str | Path, seed: int = 0) -> TinyIpAdapter:
    """Draw an IP-Adapter for ``model``'s UNet and an image encoder from ``seed`` and save them to ``folder``."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder).resolve()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**_VISION_CONFIG))
        tensors = _ip_adapter_weights(model)
    encoder.save_pretrained(folder / "image_encoder")
    save_file(tensors, str(folder / "ip-adapter.safetensors"), metadata={"format": "pt"})
    _readable(folder)
    return TinyIpAdapter(folder)


def _ip_adapter_weights(model: TinySdxl) -> dict[str, torch.Tensor]:
    """The IP-Adapter's tensors for ``model``'s UNet, drawn from torch's global generator (seeded by the caller)."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model.folder / "unet"))
    width = unet.config.cross_attention_dim
    tensors = {
        "image_proj.proj.weight": torch.randn(IMAGE_TOKENS * width, IMAGE_EMBED_DIM) / IMAGE_EMBED_DIM**0.5,
        "image_proj.proj.bias": torch.randn(IMAGE_TOKENS * width) * 0.1,
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        attention = unet.get_submodule(name.removesuffix(".processor"))
        shape = (attention.to_k.out_features, attention.to_k.in_features)
        # Larger than a trained adapter's, so that the tiny model's frames move visibly with the pictures.
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(shape) / shape[1] ** 0.5
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(shape) * 2 / shape[1] ** 0.5
        key_id += 2
    return tensors
