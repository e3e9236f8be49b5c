"""IP-Adapter for the diffusers backend: frames conditioned on their characters' reference pictures.

``--ip-adapter DIR`` names a local folder in this layout (what diffusers' ``load_ip_adapter`` reads with
``subfolder=""``, ``weight_name=WEIGHTS_FILE``, ``image_encoder_folder=IMAGE_ENCODER_FOLDER``):

    DIR/ip-adapter.safetensors   the plain IP-Adapter (``image_proj.proj``/``.norm`` and per cross-attention layer
                                 ``ip_adapter.{i}.to_k_ip``/``to_v_ip``), e.g. h94/IP-Adapter's
                                 sdxl_models/ip-adapter_sdxl_vit-h.safetensors, renamed or linked
    DIR/image_encoder/           its CLIP image encoder, a transformers ``CLIPVisionModelWithProjection`` folder
                                 (for that file, h94/IP-Adapter's models/image_encoder/, the ViT-H one)

It is loaded once, with the pipeline, offline. Loading replaces the UNet's cross-attention (attn2) processors with
diffusers' IP-Adapter processors; every other processor is kept as it was.

How a frame is conditioned (``ReferenceConditioning``): each character's pictures are embedded by the image encoder
and averaged (one embedding per character, as the validator also compares a frame with the mean of a character's
pictures); the frame's characters' embeddings are stacked, so each becomes its own 4 image tokens in cross-attention
rather than being blended into one. The pipeline is given these embeddings per frame (``ip_adapter_image_embeds``),
and the negative (unguided) half gets zeros, as diffusers does for the plain IP-Adapter. The IP-Adapter has one scale
per pipeline call, so the frames of a batch must share their references (``FrameSpec.batch_key``), and the scale of a
frame is the *mean* of its characters' scales (a scale of 0 is ``--ip-adapter-scale``): the characters share the
image tokens' attention, and the mean keeps the pictures' total weight in the range each character asked for. A frame
without references gets scale 0, which makes diffusers skip the image tokens altogether: the frame is exactly the one a
renderer without an IP-Adapter draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from services.renderer.backend import CharacterReference, FrameSpec, ReferencePicture

WEIGHTS_FILE = "ip-adapter.safetensors"
IMAGE_ENCODER_FOLDER = "image_encoder"
CROSS_ATTENTION = "attn2.processor"


def check_ip_adapter_folder(folder: Path | None) -> Path | None:
    """``folder`` resolved, if it holds an IP-Adapter in the layout above; ValueError saying what is missing."""
    if folder is None:
        return None
    folder = folder.expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not an existing folder")
    missing = [name for name in (WEIGHTS_FILE, f"{IMAGE_ENCODER_FOLDER}/config.json") if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is a folder but not an IP-Adapter folder (no {' nor '.join(missing)} in it)")
    return folder.resolve()


def frame_scale(references: Sequence[CharacterReference], default: float) -> float:
    """The IP-Adapter scale of a frame: the mean of its characters' scales (0 standing for ``default``); 0 without
    references, which leaves the frame exactly as without an IP-Adapter."""
    if not references:
        return 0.0
    return sum(reference.scale or default for reference in references) / len(references)


def warm_up_references() -> tuple[CharacterReference, ...]:
    """A reference picture for the warm-up frame, so that warm-up runs the image encoder and the IP-Adapter."""
    picture = Image.merge("RGB", [Image.linear_gradient("L"), Image.radial_gradient("L"), Image.new("L", (256, 256))])
    return (CharacterReference("warm-up", (ReferencePicture("warm-up", picture),)),)


def load_ip_adapter(pipe: Any, folder: Path, *, math_attention: bool) -> None:
    """Load the IP-Adapter in ``folder`` into ``pipe`` (never touching the network), changing cross-attention
    processors only; ``math_attention`` keeps them on the plain matmul kernels as ``--attention math`` asks."""
    from diffusers.models.embeddings import ImageProjection

    unet = pipe.unet
    before = dict(unet.attn_processors)
    pipe.load_ip_adapter(
        str(folder),
        subfolder="",
        weight_name=WEIGHTS_FILE,
        image_encoder_folder=IMAGE_ENCODER_FOLDER,
        local_files_only=True,
    )
    projections = unet.encoder_hid_proj.image_projection_layers
    if not all(isinstance(projection, ImageProjection) for projection in projections):
        raise ValueError(f"{WEIGHTS_FILE} is not a plain IP-Adapter (IP-Adapter Plus and FaceID are not supported)")
    loaded = unet.attn_processors
    # diffusers rebuilds every processor; keep what others set on self-attention (e.g. shared attention).
    kept = {
        name: _kernel_matched(loaded[name], math_attention) if name.endswith(CROSS_ATTENTION) else processor
        for name, processor in before.items()
    }
    unet.set_attn_processor(kept)


def _kernel_matched(processor: Any, math_attention: bool) -> Any:
    """``processor`` (diffusers' sdpa IP-Adapter processor), or the same weights on the matmul kernels."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    if not math_attention or not isinstance(processor, IPAdapterAttnProcessor2_0):
        return processor
    weight = processor.to_k_ip[0].weight
    plain = IPAdapterAttnProcessor(
        hidden_size=processor.hidden_size,
        cross_attention_dim=processor.cross_attention_dim,
        num_tokens=processor.num_tokens,
        scale=list(processor.scale),
    )
    plain.load_state_dict(processor.state_dict())
    return plain.to(device=weight.device, dtype=weight.dtype)


class ReferenceConditioning:
    """What the pipeline is given, per batch, to condition its frames on their references."""

    def __init__(self, pipe: Any, default_scale: float) -> None:
        self._pipe = pipe
        self.default_scale = default_scale

    def pipeline_arguments(self, frames: Sequence[FrameSpec], *, guided: bool) -> dict[str, Any]:
        """Sets the batch's scale (its frames share their references) and returns the pipeline's
        ``ip_adapter_image_embeds``: per frame, its characters' embeddings, the negative half first when guided."""
        import torch

        self._pipe.set_ip_adapter_scale(frame_scale(frames[0].references, self.default_scale))
        embedded: dict[tuple[CharacterReference, ...], torch.Tensor] = {}
        for frame in frames:
            if frame.references not in embedded:
                embedded[frame.references] = self._embed(frame.references)
        positive = torch.cat([embedded[frame.references] for frame in frames])
        embeddings = torch.cat([torch.zeros_like(positive), positive]) if guided else positive
        return {"ip_adapter_image_embeds": [embeddings]}

    def _embed(self, references: Sequence[CharacterReference]) -> Any:
        """(1, characters, width): each character's pictures' mean embedding; one zero embedding without
        references (the scale is then 0, so it is never attended to)."""
        import torch

        pipe = self._pipe
        device = pipe._execution_device
        if not references:
            width = pipe.image_encoder.config.projection_dim
            return torch.zeros(1, 1, width, device=device, dtype=pipe.image_encoder.dtype)
        characters = [
            pipe.encode_image([picture.image for picture in reference.pictures], device, 1)[0].mean(dim=0)
            for reference in references
        ]
        return torch.stack(characters)[None]
