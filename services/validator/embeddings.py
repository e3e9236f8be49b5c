"""Image and text embeddings: one batched forward pass for whatever a call needs, and a cache for the rest.

Images are keyed by the SHA-256 of their encoded bytes, so re-scoring a storyboard after one frame was re-rendered
embeds only that frame. Texts are keyed by the text itself. Forward passes are serialized by a lock: the server
serves calls on many threads, and one model on one device gains nothing from running passes side by side.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

from services.validator.clip_model import LoadedClip

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


def content_key(data: bytes) -> str:
    """The cache key of an encoded image: the hex SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


class LruCache(Generic[K, V]):
    """A thread-safe least-recently-used map holding at most ``capacity`` entries (0 keeps nothing)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class ClipEmbedder:
    """Unit-length CLIP embeddings (float32, on the CPU) of images and texts, cached."""

    def __init__(self, clip: LoadedClip, cache_size: int, preprocess_workers: int = 1) -> None:
        self.clip = clip
        self._images: LruCache[str, torch.Tensor] = LruCache(cache_size)
        self._texts: LruCache[str, torch.Tensor] = LruCache(cache_size)
        self._forward_lock = threading.Lock()
        # Decoding and resizing a large frame costs more than embedding it on a GPU, and Pillow does both off the
        # interpreter's lock, so a call's images are opened side by side.
        self._pool = ThreadPoolExecutor(max(1, preprocess_workers), thread_name_prefix="clip-preprocess")

    def image_embeddings(self, images: Mapping[str, Callable[[], Image.Image]]) -> dict[str, torch.Tensor]:
        """The embedding of each image, by key; ``images[key]()`` opens an image and is called only on a cache miss.

        Every missing image is opened and preprocessed (in key order, so the first bad one is the one reported)
        before the single forward pass that embeds them all.
        """
        found, missing = self._lookup(self._images, images)
        if missing:
            # map() yields in order, so the first bad image in key order is the error raised.
            pixels = list(self._pool.map(lambda key: self.clip.preprocess(images[key]()), missing))
            vectors = self._encode(lambda: self._encode_images(pixels))
            self._remember(self._images, found, missing, vectors)
        log.debug("images: %d embedded, %d from the cache", len(missing), len(found) - len(missing))
        return found

    def text_embeddings(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The embedding of each distinct text, by text, in one forward pass for those not cached."""
        found, missing = self._lookup(self._texts, dict.fromkeys(texts))
        if missing:
            vectors = self._encode(lambda: self._encode_texts(missing))
            self._remember(self._texts, found, missing, vectors)
        return found

    def warm_up(self) -> None:
        """One small pass through both towers, so the first request does not pay for lazy initialization."""
        from PIL import Image

        blank = self.clip.preprocess(Image.new("RGB", (64, 64), (128, 128, 128)))
        self._encode(lambda: (self._encode_images([blank]), self._encode_texts(["a storyboard frame"])))

    def clear(self) -> None:
        """Forget every cached embedding."""
        self._images.clear()
        self._texts.clear()

    def close(self) -> None:
        """Forget the cache and stop the preprocessing threads."""
        self.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _lookup(cache: LruCache[str, torch.Tensor], keys: Mapping[str, object]) -> tuple[dict, list[str]]:
        found: dict[str, torch.Tensor] = {}
        missing: list[str] = []
        for key in keys:
            vector = cache.get(key)
            if vector is None:
                missing.append(key)
            else:
                found[key] = vector
        return found, missing

    @staticmethod
    def _remember(cache: LruCache, found: dict, keys: list[str], vectors: torch.Tensor) -> None:
        for key, vector in zip(keys, vectors, strict=True):
            vector = vector.clone()  # a row of its own, so the cache does not keep the whole batch alive
            cache.put(key, vector)
            found[key] = vector

    def _encode(self, forward: Callable[[], T]) -> T:
        import torch

        with self._forward_lock, torch.inference_mode():
            return forward()

    def _encode_images(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        import torch

        batch = torch.stack(pixels).to(self.clip.device, dtype=self.clip.input_dtype)
        return self._unit_rows(self.clip.model.encode_image(batch))

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.clip.tokenizer(texts).to(self.clip.device)
        return self._unit_rows(self.clip.model.encode_text(tokens))

    @staticmethod
    def _unit_rows(features: torch.Tensor) -> torch.Tensor:
        import torch

        # Normalized in float32: fp16 rounding in the norm would keep an image's similarity to itself off 1.0.
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu()
