"""Consistency without a trained LoRA: the frames of a batch share their self-attention (``--consistency
shared-attention``), after StoryDiffusion's "Consistent Self-Attention" (Zhou et al., 2024).

In each chosen self-attention layer (``attn1`` of the UNet's transformer blocks; cross-attention is left alone), every
frame attends to its own tokens *and* to a random sample of the other frames' tokens: its queries stay its own, its
keys and values are computed from its own tokens followed by the sampled ones. Features of the character drawn in one
frame so reach the others at every step, and the same character comes out alike across the storyboard.

Choices made here, and why:

* **The sample.** In each layer and step, every frame offers ``floor(rate * N)`` of its ``N`` tokens, drawn without
  replacement, and every other frame of the batch attends to them: each frame so attends to
  ``N + (B - 1) * floor(rate * N)`` tokens, ``1 + rate * (B - 1)`` times its own. A fixed count per frame keeps every
  row the same length, so the batch stays one attention call without masks.
* **Classifier-free guidance** stacks the batch twice (the unconditional rows, then the conditional ones, as
  diffusers' SDXL pipeline does). Tokens are shared only inside each half: an unconditional row never sees a
  conditional row's tokens, so the guidance difference stays the difference the prompts make.
* **Determinism.** The sample a frame offers is drawn from a CPU ``torch.Generator`` seeded from a hash of the
  batch's seeds (sorted), the frame's own seed, the layer's name and the step, never from torch's global RNG: the same
  request gives the same bytes, and a frame is a function of the model, adapters, prompts, seeds, settings and the
  frames it is batched with (not of their order, up to floating-point rounding in the attention's sums).
* **Nothing to share** (a batch of one frame, a rate too small to offer one token, a call outside a batch such as a
  pipeline used directly): the layer's own processor runs unchanged, so the frame is bit-identical to the frame drawn
  with consistency off.
* **The attention itself** is the processor ``--attention`` installed (sdpa or math), given the shared tokens as its
  ``encoder_hidden_states``: its kernels, LoRA-wrapped projections and dtype handling are diffusers' own.

The processors are installed once, when the pipeline is set up; a batch switches sharing on with ``sharing(seeds)``.
Anything that replaces the UNet's attention processors afterwards (``set_attn_processor``, loading an IP-Adapter)
would remove them: install them last, and ``sharing`` refuses to run a batch without them rather than silently
rendering frames that share nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Where a UNet layer sits, by the first part of its module name, for --shared-attention-layers.
LAYER_GROUP_PREFIXES = {"down": "down_blocks.", "mid": "mid_block.", "up": "up_blocks."}
SELF_ATTENTION_SUFFIX = ".attn1"


def self_attention_layers(unet: Any, groups: Iterable[str]) -> list[tuple[str, Any]]:
    """The UNet's self-attention layers (name, module) in the given groups (``down``, ``mid``, ``up``), in model
    order."""
    from diffusers.models.attention_processor import Attention

    prefixes = tuple(LAYER_GROUP_PREFIXES[group] for group in groups)
    return [
        (name, module)
        for name, module in unet.named_modules()
        if isinstance(module, Attention)
        and name.endswith(SELF_ATTENTION_SUFFIX)
        and not module.is_cross_attention
        and name.startswith(prefixes)
    ]


def tokens_offered(rate: float, tokens: int) -> int:
    """How many of a frame's ``tokens`` the other frames of its batch attend to, at sampling rate ``rate``."""
    return math.floor(rate * tokens)


def sample_seed(batch_seeds: Sequence[int], own_seed: int, layer: str, step: int) -> int:
    """The seed of the generator drawing the tokens one frame offers in one layer at one step: a hash of the batch's
    seeds (sorted, so that the order of the frames in the batch does not matter), the frame's seed, the layer's name
    and the step."""
    key = f"{sorted(batch_seeds)}|{own_seed}|{layer}|{step}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & (2**63 - 1)


@dataclass
class _Batch:
    """The batch being denoised: its frames' seeds, and how many times each layer has run (its step)."""

    seeds: tuple[int, ...]
    calls: dict[str, int] = field(default_factory=dict)

    def next_step(self, layer: str) -> int:
        step = self.calls.get(layer, 0)
        self.calls[layer] = step + 1
        return step


class SharedSelfAttention:
    """The attention processor of one self-attention layer: with a batch of several frames running, each frame's
    keys and values also come from tokens sampled from the other frames of its half of the batch; otherwise the
    layer's own processor (``base``), unchanged."""

    def __init__(self, owner: SharedAttention, layer: str, base: Any) -> None:
        self.owner = owner  # holds the rate and the batch running now
        self.layer = layer
        self.base = base

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch = self.owner.batch
        offered = self._tokens_to_offer(batch, hidden_states, encoder_hidden_states)
        if batch is None or offered == 0:
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask=attention_mask, temb=temb)
        step = batch.next_step(self.layer)
        picks = [
            _draw(sample_seed(batch.seeds, seed, self.layer, step), hidden_states.shape[1], offered)
            for seed in batch.seeds
        ]
        with_shared = shared_tokens(hidden_states, len(batch.seeds), picks)
        return self.base(attn, hidden_states, with_shared, attention_mask=attention_mask, temb=temb)

    def _tokens_to_offer(
        self, batch: _Batch | None, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None
    ) -> int:
        """How many tokens each frame offers the others in this call; 0 when nothing is shared: no batch running, a
        batch of one, a rate too small for one token, or a call that is not self-attention over (rows, tokens,
        channels)."""
        if batch is None or len(batch.seeds) < 2 or encoder_hidden_states is not None or hidden_states.ndim != 3:
            return 0
        return tokens_offered(self.owner.rate, hidden_states.shape[1])


def _draw(seed: int, tokens: int, count: int) -> torch.Tensor:
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randperm(tokens, generator=generator)[:count]


def shared_tokens(hidden_states: torch.Tensor, frames: int, picks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each row's own tokens followed by the tokens the other frames of its half offer.

    ``hidden_states`` is (rows, N, C) with rows = frames (no guidance) or 2 * frames (the unconditional half, then the
    conditional half, frame order within each); ``picks[j]`` holds the token positions frame j offers (the same
    positions in both halves). Returns (rows, N + (frames - 1) * len(picks[j]), C)."""
    import torch

    rows, _tokens, channels = hidden_states.shape
    if rows % frames:
        raise RuntimeError(f"shared attention: {rows} rows do not split into halves of the batch's {frames} frames")
    halves = rows // frames
    device = hidden_states.device
    positions = torch.stack(list(picks)).repeat(halves, 1).to(device)  # (rows, offered)
    offered = torch.gather(hidden_states, 1, positions.unsqueeze(-1).expand(-1, -1, channels))
    others = torch.tensor(
        [[half * frames + j for j in range(frames) if j != i] for half in range(halves) for i in range(frames)],
        device=device,
    )  # (rows, frames - 1): the rows of the same half that are not this frame
    from_others = offered[others].reshape(rows, -1, channels)
    return torch.cat([hidden_states, from_others], dim=1)


class SharedAttention:
    """Shared self-attention on a UNet: installed once on the chosen layers, switched on per batch by ``sharing``."""

    def __init__(self, unet: Any, rate: float, groups: Iterable[str]) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"the sampling rate must be in (0, 1], got {rate}")
        self.rate = rate
        self.batch: _Batch | None = None
        self.processors: list[SharedSelfAttention] = []
        self._modules: list[Any] = []
        for name, module in self_attention_layers(unet, groups):
            processor = SharedSelfAttention(self, name, module.processor)
            module.set_processor(processor)
            self.processors.append(processor)
            self._modules.append(module)

    def installed(self) -> bool:
        """Whether every layer still runs its shared-attention processor (nothing replaced them since)."""
        return all(
            module.processor is processor for module, processor in zip(self._modules, self.processors, strict=True)
        )

    def remove(self) -> None:
        """Give every layer its own processor back."""
        for module, processor in zip(self._modules, self.processors, strict=True):
            if module.processor is processor:
                module.set_processor(processor.base)
        self.processors, self._modules = [], []

    @contextmanager
    def sharing(self, seeds: Sequence[int]) -> Iterator[None]:
        """While the ``with`` body denoises a batch of frames with these seeds (in batch order), they share."""
        if not self.installed():
            raise RuntimeError(
                "shared attention: the UNet's self-attention processors were replaced after they were installed "
                "(install them after anything that sets attention processors, such as loading an IP-Adapter)"
            )
        self.batch = _Batch(tuple(seeds))
        try:
            yield
        finally:
            self.batch = None
