"""Reference pictures of characters for one storyboard (``StoryboardSpec.character_references``), from files or bytes:
the gateway checks them (PNG, JPEG or WebP, at most 2 MiB and 4 a character) and keeps them in the storyboard's folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from storyboard.results import StrPath
from storyboard.v1 import common_pb2

PictureLike = bytes | StrPath
ReferencesLike = Mapping[str, Sequence[PictureLike]] | Iterable[common_pb2.CharacterPictures]


def character_pictures(
    trigger_token: str, pictures: Sequence[PictureLike], scale: float = 0.0
) -> common_pb2.CharacterPictures:
    """One character's pictures: each a file path or the picture's bytes; ``scale`` 0 means the renderer's default."""
    images = [common_pb2.Image(data=picture if isinstance(picture, bytes) else _read(picture)) for picture in pictures]
    return common_pb2.CharacterPictures(trigger_token=trigger_token, pictures=images, scale=scale)


def as_references(references: ReferencesLike) -> list[common_pb2.CharacterPictures]:
    """``{"aldar_kose_man": ["front.png", ...]}`` or CharacterPictures messages, as messages."""
    if isinstance(references, Mapping):
        return [character_pictures(token, pictures) for token, pictures in references.items()]
    return list(references)


def _read(path: StrPath) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the reference picture {path}: {error.strerror or error}") from None
