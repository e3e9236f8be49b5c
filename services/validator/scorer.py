"""The validator's engine: owns the CLIP model's life (load, readiness, release) and scores checked jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.validator.clip_model import LoadedClip, ModelLoadError, load_clip
from services.validator.embeddings import ClipEmbedder
from services.validator.requests import CharacterJob, EncodedImage, ScoreJob
from services.validator.scoring import (
    CharacterReference,
    FrameResult,
    ReferencePolicy,
    Thresholds,
    reference_vector,
    score_frames,
)
from services.validator.weights import WeightsSource
from storyboard_common.errors import FailedPrecondition, Unavailable
from storyboard_common.images import decode

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreOutcome:
    """The scores of one job and what they were judged by."""

    results: list[FrameResult]
    thresholds: Thresholds
    policy: ReferencePolicy
    model: str


class FrameScorer:
    """Scores frames once its model is loaded; until then (or when none is configured) says why it cannot."""

    def __init__(
        self,
        source: WeightsSource,
        device: str,
        cache_size: int,
        max_image_pixels: int,
        preprocess_workers: int = 1,
    ) -> None:
        self.source = source
        self._device_setting = device
        self._cache_size = cache_size
        self._preprocess_workers = preprocess_workers
        self._max_image_pixels = max_image_pixels
        self._embedder: ClipEmbedder | None = None
        self._lock = threading.Lock()
        self._reason = f"loading CLIP {source.label()}" if source.configured else source.not_configured_reason()

    @property
    def ready(self) -> bool:
        return self._embedder is not None

    @property
    def not_ready_reason(self) -> str:
        """Why scoring is impossible, in words a user can act on; empty when ready."""
        return "" if self.ready else self._reason

    @property
    def device(self) -> str:
        """The device the model runs on, or the configured choice while none is loaded."""
        embedder = self._embedder
        return str(embedder.clip.device) if embedder is not None else self._device_setting

    @property
    def clip(self) -> LoadedClip | None:
        """The loaded model, or None while there is none."""
        embedder = self._embedder
        return embedder.clip if embedder is not None else None

    def clear_cache(self) -> None:
        """Forget every cached embedding (the next calls embed everything again)."""
        embedder = self._embedder
        if embedder is not None:
            embedder.clear()

    def warm_up(self) -> None:
        """Load the model (the server's warm-up: health turns SERVING when this returns); raises with the reason."""
        if not self.source.configured:
            raise ModelLoadError(self._reason)
        started = time.perf_counter()
        try:
            clip = load_clip(self.source, self._device_setting)
            embedder = ClipEmbedder(clip, self._cache_size, self._preprocess_workers)
            embedder.warm_up()
        except Exception as error:
            self._reason = str(error) or type(error).__name__
            raise
        with self._lock:
            self._embedder = embedder
        log.info("CLIP %s loaded on %s in %.1f s", self.source.label(), self.device, time.perf_counter() - started)

    def close(self) -> None:
        """Release the model (and its GPU memory)."""
        with self._lock:
            embedder, self._embedder = self._embedder, None
        self._reason = "the validator is shutting down"
        if embedder is not None:
            embedder.close()
            device = embedder.clip.device
            del embedder
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()

    def score(self, job: ScoreJob) -> ScoreOutcome:
        """Score a checked job: every image not cached is embedded in one batched forward pass."""
        embedder = self._embedder
        if embedder is None:
            raise Unavailable(self.not_ready_reason)
        started = time.perf_counter()
        policy = job.policy
        references = job.references if policy is ReferencePolicy.REFERENCE_IMAGES else []
        pictures = [picture for character in job.characters for picture in character.pictures]
        images = {image.key: self._opener(image) for image in _with_data_first((*job.frames, *references, *pictures))}
        image_vectors = embedder.image_embeddings(images)
        texts = [prompt for prompt in job.prompts if prompt]
        text_vectors = embedder.text_embeddings(texts) if texts else {}

        frames = _stack([image_vectors[image.key] for image in job.frames])
        reference_rows = _stack([image_vectors[image.key] for image in references]) if references else None
        reference = reference_vector(policy, frames, reference_rows)
        prompts = [text_vectors[prompt] if prompt else None for prompt in job.prompts]
        characters = [_character_reference(character, frames, image_vectors) for character in job.characters]
        results = score_frames(frames, reference, prompts, job.thresholds, characters)
        log.info(
            "scored %d frames against %s in %.0f ms",
            len(results),
            policy.value,
            (time.perf_counter() - started) * 1000,
        )
        return ScoreOutcome(results, job.thresholds, policy, self.source.model)

    def _opener(self, image: EncodedImage) -> Callable[[], Image.Image]:
        if not image.data:
            return lambda: _not_held(image)
        return lambda: decode(image.data, image.field, self._max_image_pixels)


def _character_reference(
    character: CharacterJob, frames: torch.Tensor, image_vectors: dict[str, torch.Tensor]
) -> CharacterReference:
    pictures = _stack([image_vectors[picture.key] for picture in character.pictures])
    vector = reference_vector(ReferencePolicy.REFERENCE_IMAGES, frames, pictures)
    return CharacterReference(character.trigger_token, vector, character.frames)


def _with_data_first(images: Sequence[EncodedImage]) -> list[EncodedImage]:
    """Each distinct image once, by key, as sent with its bytes where the request has them: an image named by its
    digest alone is opened from the same request's copy before the cache is asked."""
    chosen: dict[str, EncodedImage] = {}
    for image in images:
        if image.key not in chosen or (image.data and not chosen[image.key].data):
            chosen[image.key] = image
    return list(chosen.values())


def _not_held(image: EncodedImage) -> Image.Image:
    """The opener of an image named by its SHA-256 alone: reached only when the cache does not have it."""
    raise FailedPrecondition(
        f"{image.field}: no image with sha256 {image.key} is held here (never sent, or forgotten since); send its data"
    )


def _stack(vectors: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.stack(vectors)
