"""A tiny random SDXL pipeline and tiny LoRAs in the three formats the renderer loads, built in code for tests.

Nothing is downloaded: the pipeline is an SDXL-shaped ``StableDiffusionXLPipeline`` with random weights (UNet with
SDXL's ``text_time`` conditioning, two CLIP text encoders, a small VAE) and two ``CLIPTokenizer``s built from the BPE
vocabulary that ships inside open_clip, so prompts tokenize exactly as they do for the real SDXL. It is saved with
``save_pretrained`` and the renderer loads it back through its real loading code:

    model = build_tiny_sdxl(tmp / "sdxl")                                     # a diffusers folder, ~24 MB
    write_peft_checkpoint(model, adapters / "hero", seed=1)                    # the original system's PEFT folders
    write_diffusers_lora(model, adapters / "villain.safetensors", seed=2)      # save_lora_weights, alpha in metadata
    write_kohya_lora(model, adapters / "style.safetensors", seed=3)            # kohya/A1111 keys (sgm UNet names)

LoRAs are drawn with peft ``LoraConfig(init_lora_weights=False)`` (so lora_B is not zero and the adapter really
changes the output), rank 4 and alpha 8: an alpha lost on the way (the scale would fall from 2 to 1) shows up as a
different image. For one seed and the same text-encoder targets (kohya files always target ``KOHYA_TEXT_TARGETS``;
pass ``text_targets=KOHYA_TEXT_TARGETS`` to the other two), the three writers hold the *same* LoRA, and a renderer
must draw the same frame from each.

Sizes: the VAE downsamples by 2, so a 64x64 frame is a 32x32 latent; 3 steps at 64x64 take about a tenth of a second
on a CPU. Building the pipeline takes about a second after the imports (the first tokenizer, a second more).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TINY_SIZE = 64  # the smallest frame the tests render: a 32x32 latent
LORA_RANK, LORA_ALPHA = 4, 8
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "v_proj")  # what the original system trained on both text encoders
# kohya trains every linear layer of CLIP's attention and MLP blocks. (diffusers recognises kohya's old text-encoder
# key names only when out_proj is among them, which it always is in kohya's files.)
KOHYA_TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")

# The original system's checkpoint layout: one PEFT adapter folder per component.
PEFT_FOLDERS = {"unet": "unet_lora", "text_encoder": "text_encoder_one_lora", "text_encoder_2": "text_encoder_two_lora"}
PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"


_TEXT_CONFIG: dict[str, Any] = {
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "hidden_size": 32,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-5,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 32,
}
_TIME_EMBED_DIM = 8


@dataclass(frozen=True)
class TinySdxl:
    """Where a tiny SDXL pipeline was saved."""

    folder: Path

    @property
    def base_model(self) -> str:
        """The value of the renderer's ``--base-model`` that loads it."""
        return str(self.folder)


# --- the pipeline -------------------------------------------------------------------------------------------------


def clip_tokenizer(pad_token: str = "<|endoftext|>"):  # type: ignore[no-untyped-def]
    """A ``CLIPTokenizer`` with OpenAI CLIP's vocabulary, built from the file open_clip ships (no download)."""
    tokenizer = copy.deepcopy(_clip_tokenizer())  # building one takes a second or two; copying, a fraction of that
    tokenizer.pad_token = pad_token
    return tokenizer


@lru_cache(maxsize=1)
def _clip_tokenizer():  # type: ignore[no-untyped-def]
    from services.planner.clip_tokens import build_clip_tokenizer, bundled_vocab_path

    path = bundled_vocab_path()
    assert path is not None, "open_clip (which ships the CLIP vocabulary) is not installed"
    tokenizer = build_clip_tokenizer(path)
    tokenizer.model_max_length = 77  # SDXL's window; without it the pipeline truncates at a huge sentinel and fails
    return tokenizer


def tiny_unet_config() -> dict[str, Any]:
    """The tiny UNet's config: SDXL's structure (text_time conditioning, cross-attention on both encoders' hidden
    states) at toy widths."""
    return {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "sample_size": TINY_SIZE // 2,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4),
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": _TIME_EMBED_DIM,
        "transformer_layers_per_block": (1, 1),
        # SDXL's added conditioning: six time ids, each embedded, plus the second encoder's pooled projection.
        "projection_class_embeddings_input_dim": 6 * _TIME_EMBED_DIM + _TEXT_CONFIG["projection_dim"],
        "cross_attention_dim": 2 * _TEXT_CONFIG["hidden_size"],  # both encoders' hidden states, concatenated
        "norm_num_groups": 8,
    }


def tiny_sdxl_pipeline(seed: int = 0):  # type: ignore[no-untyped-def]
    """A tiny ``StableDiffusionXLPipeline`` with random weights drawn from ``seed`` (torch's global RNG is kept)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**tiny_unet_config())
        vae = AutoencoderKL(
            block_out_channels=[16, 32],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            sample_size=TINY_SIZE,
            norm_num_groups=8,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(**_TEXT_CONFIG))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_TEXT_CONFIG))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"),  # SDXL's second tokenizer pads with "!"
        unet=unet,
        scheduler=scheduler,
    )


def build_tiny_sdxl(folder: str | Path, seed: int = 0, *, transform: Callable[[Any], None] | None = None) -> TinySdxl:
    """Build the tiny pipeline and save it to ``folder`` as a diffusers pipeline folder.

    ``transform(pipeline)`` may change it before it is saved (tests use it to make a VAE whose output is NaN).
    """
    folder = Path(folder).resolve()
    pipeline = tiny_sdxl_pipeline(seed)
    if transform is not None:
        transform(pipeline)
    pipeline.save_pretrained(folder)
    _readable(folder)
    return TinySdxl(folder)


def _readable(folder: Path) -> None:
    # safetensors writes 0600 whatever the umask; a renderer running as another user must read the files.
    for path in folder.rglob("*.safetensors"):
        path.chmod(0o644)


# --- LoRAs ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyLora:
    """One LoRA drawn for the tiny pipeline: per component, its peft config and its peft-format state dict (keys are
    module paths of the component as this transformers version names them, ending in ``lora_A/B.weight``)."""

    configs: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]


def draw_lora(
    model: TinySdxl, seed: int, *, text_encoders: bool = True, text_targets: tuple[str, ...] = TEXT_TARGETS
) -> TinyLora:
    """A rank-4, alpha-8 LoRA for ``model``'s UNet (and, by default, both text encoders), drawn from ``seed``."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    components: dict[str, tuple[Any, tuple[str, ...]]] = {
        "unet": (
            UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model.folder / "unet")),
            UNET_TARGETS,
        )
    }
    if text_encoders:
        for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            components[name] = (cls(CLIPTextConfig.from_pretrained(model.folder / name)), text_targets)
    configs, weights = {}, {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, (module, targets) in components.items():
            # init_lora_weights=False: lora_B is random too (peft's default makes it zero: an adapter that does nothing)
            config = LoraConfig(
                r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(targets), init_lora_weights=False
            )
            inject_adapter_in_model(config, module, adapter_name="default")
            configs[name] = config
            weights[name] = {
                k: v.contiguous() for k, v in get_peft_model_state_dict(module, adapter_name="default").items()
            }
    return TinyLora(configs, weights)


def _legacy_text_key(key: str) -> str:
    # transformers 4 (which trained the users' checkpoints) named CLIPTextModel's modules text_model.encoder...;
    # transformers 5 flattened CLIPTextModel to encoder... Write what users' files hold.
    return key if key.startswith("text_model.") else f"text_model.{key}"


def write_peft_checkpoint(
    model: TinySdxl,
    folder: str | Path,
    seed: int,
    *,
    text_encoders: bool = True,
    text_targets: tuple[str, ...] = TEXT_TARGETS,
) -> Path:
    """The original system's layout: ``folder/unet_lora/``, ``text_encoder_one_lora/``, ``text_encoder_two_lora/``,
    each what ``PeftModel.save_pretrained`` writes (``adapter_config.json`` + ``adapter_model.safetensors`` whose keys
    start with ``base_model.model.``)."""
    from safetensors.torch import save_file

    lora = draw_lora(model, seed, text_encoders=text_encoders, text_targets=text_targets)
    folder = Path(folder)
    for component, config in lora.configs.items():
        target = folder / PEFT_FOLDERS[component]
        config.save_pretrained(str(target))
        rename = _legacy_text_key if component != "unet" else (lambda key: key)
        tensors = {f"base_model.model.{rename(k)}": v for k, v in lora.weights[component].items()}
        save_file(tensors, str(target / PEFT_WEIGHTS_FILE), metadata={"format": "pt"})
    _readable(folder)
    return folder


def _metadata(config: Any) -> dict[str, Any]:
    data = config.to_dict()
    return {key: sorted(value) if isinstance(value, set) else value for key, value in data.items()}


def write_diffusers_lora(
    model: TinySdxl,
    file: str | Path,
    seed: int,
    *,
    keep_alpha: bool = True,
    text_targets: tuple[str, ...] = TEXT_TARGETS,
    transform: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    """What diffusers' LoRA training scripts save: ``save_lora_weights`` with the adapter configs as metadata (the
    only place the alpha is kept; ``keep_alpha=False`` leaves it out, as older scripts did)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    lora = draw_lora(model, seed, text_targets=text_targets)
    file = Path(file)
    layers = {name: convert_state_dict_to_diffusers(dict(state)) for name, state in lora.weights.items()}
    if transform is not None:
        for state in layers.values():
            transform(state)
    metadata = {name: _metadata(config) for name, config in lora.configs.items()} if keep_alpha else {}
    StableDiffusionXLPipeline.save_lora_weights(
        str(file.parent),
        unet_lora_layers=layers["unet"],
        text_encoder_lora_layers=layers["text_encoder"],
        text_encoder_2_lora_layers=layers["text_encoder_2"],
        weight_name=file.name,
        unet_lora_adapter_metadata=metadata.get("unet"),
        text_encoder_lora_adapter_metadata=metadata.get("text_encoder"),
        text_encoder_2_lora_adapter_metadata=metadata.get("text_encoder_2"),
    )
    file.chmod(0o644)
    return file


def write_kohya_lora(model: TinySdxl, file: str | Path, seed: int) -> Path:
    """The kohya-ss / A1111 layout: ``lora_unet_*`` keys named after SDXL's original (sgm) UNet blocks,
    ``lora_te1_*`` / ``lora_te2_*`` for the text encoders, ``lora_down`` / ``lora_up`` and a scalar ``.alpha``."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    lora = draw_lora(model, seed, text_targets=KOHYA_TEXT_TARGETS)
    layers_per_block = UNet2DConditionModel.load_config(model.folder / "unet")["layers_per_block"]
    prefixes = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
    tensors: dict[str, torch.Tensor] = {}
    for component, state in lora.weights.items():
        for key, value in state.items():
            if not key.endswith("lora_A.weight"):
                continue
            module = module_key(key)
            renamed = _sgm_module_name(module, layers_per_block) if component == "unet" else _legacy_text_key(module)
            name = f"{prefixes[component]}_{renamed.replace('.', '_')}"
            tensors[f"{name}.lora_down.weight"] = value
            tensors[f"{name}.lora_up.weight"] = state[f"{module}.lora_B.weight"]
            tensors[f"{name}.alpha"] = torch.tensor(float(LORA_ALPHA))
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(file), metadata={"format": "pt"})
    file.chmod(0o644)
    return file


def module_key(key: str) -> str:
    """``down_blocks.1...to_q`` from ``down_blocks.1...to_q.lora_A.weight``."""
    return key.rsplit(".lora_", 1)[0]


def _sgm_module_name(module: str, layers_per_block: int) -> str:
    """A diffusers UNet attention module's name in SDXL's original (sgm) UNet, as kohya writes it."""
    parts = module.split(".")
    if parts[0] == "down_blocks":  # down_blocks.B.attentions.L -> input_blocks.(B*(lpb+1)+L+1).1
        block, layer = int(parts[1]), int(parts[3])
        return ".".join(["input_blocks", str(block * (layers_per_block + 1) + layer + 1), "1", *parts[4:]])
    if parts[0] == "mid_block":  # mid_block.attentions.0 -> middle_block.1
        return ".".join(["middle_block", "1", *parts[3:]])
    if parts[0] == "up_blocks":  # up_blocks.B.attentions.L -> output_blocks.(B*(lpb+1)+L).1
        block, layer = int(parts[1]), int(parts[3])
        return ".".join(["output_blocks", str(block * (layers_per_block + 1) + layer), "1", *parts[4:]])
    raise ValueError(f"no sgm name for {module}")
