"""The scores themselves, from unit-length embeddings: consistency (to the storyboard's reference, and to each
character's reference pictures), prompt alignment, repetition and a verdict.

Pure functions on tensors (no model, no gRPC), so that what a score means can be read in one place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class ReferencePolicy(Enum):
    """What consistency is measured against."""

    REFERENCE_IMAGES = "reference_images"  # the normalized mean of the request's reference images
    FIRST_FRAME = "first_frame"  # the first frame, as the original did
    CENTROID = "centroid"  # the normalized mean of all frames


class Verdict(Enum):
    """The first failed check, in the order consistency, alignment, repetition; else PASS."""

    PASS = "pass"
    LOW_CONSISTENCY = "low_consistency"
    LOW_ALIGNMENT = "low_alignment"
    REPETITIVE = "repetitive"


@dataclass(frozen=True)
class Thresholds:
    """Cosine-similarity thresholds: consistency and alignment must reach theirs, repetition must not exceed its;
    a frame's similarity to each character's reference pictures must reach ``reference_consistency``."""

    consistency: float
    alignment: float
    repetition: float
    reference_consistency: float


@dataclass(frozen=True)
class CharacterReference:
    """A character's reference (the unit mean of its pictures' embeddings) and the frames that show it."""

    trigger_token: str
    vector: torch.Tensor
    frames: tuple[int, ...]


@dataclass(frozen=True)
class FrameResult:
    """The scores of one frame; alignment is None when the frame had no prompt to align with."""

    index: int
    consistency: float
    alignment: float | None
    repetition: float
    most_similar_index: int
    verdict: Verdict
    characters: tuple[tuple[str, float], ...] = ()  # (trigger token, similarity to its pictures), as asked


def reference_vector(
    policy: ReferencePolicy, frames: torch.Tensor, references: torch.Tensor | None = None
) -> torch.Tensor:
    """The unit vector consistency is measured against, from (N, D) frame and (R, D) reference embeddings."""
    if policy is ReferencePolicy.FIRST_FRAME:
        return frames[0]
    source = references if policy is ReferencePolicy.REFERENCE_IMAGES else frames
    if source is None or len(source) == 0:
        raise ValueError(f"policy {policy.value} needs at least one embedding")
    return _unit(source.mean(dim=0))


def score_frames(
    frames: torch.Tensor,
    reference: torch.Tensor,
    prompts: Sequence[torch.Tensor | None],
    thresholds: Thresholds,
    characters: Sequence[CharacterReference] = (),
) -> list[FrameResult]:
    """Scores of (N, D) unit frame embeddings against a unit ``reference``, each frame's prompt embedding and the
    references of the ``characters`` each frame shows."""
    import torch

    consistency = (frames @ reference).tolist()
    repetition, most_similar = _nearest_other_frame(frames)
    results = []
    for index in range(len(frames)):
        prompt = prompts[index] if index < len(prompts) else None
        alignment = float(torch.dot(frames[index], prompt)) if prompt is not None else None
        shown = tuple(
            (character.trigger_token, float(torch.dot(frames[index], character.vector)))
            for character in characters
            if index in character.frames
        )
        verdict = judge(consistency[index], alignment, repetition[index], thresholds, [score for _, score in shown])
        results.append(
            FrameResult(index, consistency[index], alignment, repetition[index], most_similar[index], verdict, shown)
        )
    return results


def judge(
    consistency: float,
    alignment: float | None,
    repetition: float,
    thresholds: Thresholds,
    character_consistency: Sequence[float] = (),
) -> Verdict:
    """The verdict on one frame: the first failed check, else PASS; a frame without a prompt skips alignment. A
    frame showing characters with reference pictures is as consistent as it is like the least like of them: their
    pictures, not another frame, say what the character looks like."""
    if character_consistency:
        if min(character_consistency) < thresholds.reference_consistency:
            return Verdict.LOW_CONSISTENCY
    elif consistency < thresholds.consistency:
        return Verdict.LOW_CONSISTENCY
    if alignment is not None and alignment < thresholds.alignment:
        return Verdict.LOW_ALIGNMENT
    if repetition > thresholds.repetition:
        return Verdict.REPETITIVE
    return Verdict.PASS


def _nearest_other_frame(frames: torch.Tensor) -> tuple[list[float], list[int]]:
    """For each frame, its highest similarity to any other frame and that frame's index (0.0 and -1 when alone)."""
    import torch

    if len(frames) < 2:
        return [0.0] * len(frames), [-1] * len(frames)
    similarity = frames @ frames.T
    similarity.fill_diagonal_(-torch.inf)
    best, index = similarity.max(dim=1)
    return best.tolist(), index.tolist()


def _unit(vector: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.normalize(vector, dim=-1)


_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_REPEATED_COMMAS = re.compile(r"(?:,\s*){2,}")


def strip_trigger_tokens(prompt: str, trigger_tokens: Sequence[str]) -> str:
    """``prompt`` without the trigger tokens (whole words, any case) and the stray commas they leave behind.

    A trigger token names a LoRA's character, not anything CLIP has seen, so it would only add noise to alignment.
    """
    text = prompt
    for token in sorted({t.strip() for t in trigger_tokens if t.strip()}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(token)}(?!\w)", " ", text, flags=re.IGNORECASE)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    text = _REPEATED_COMMAS.sub(", ", text)
    return text.strip(" ,;")
