"""A storyboard's characters' reference pictures: those a request uploads, checked at the edge and kept in the
storyboard's folder (``references/``), and those the registry holds, sent by the planner; gathered for its run.

The stored request keeps each uploaded picture's digest, media type and size but not its bytes, so that reading a
storyboard back (Get, List, its events) never carries pictures; the run reads them from the folder.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from PIL import Image, UnidentifiedImageError

from gateway import outputs
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import FailedPrecondition, InvalidArgument
from storyboard_common.images import EXTENSIONS, MIME_TYPES

log = logging.getLogger(__name__)
FOLDER = "references"
MAX_PICTURES = 4  # a character's uploaded pictures
MAX_PICTURE_BYTES = 2 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 64, 4096

# Fetches one registry picture: (trigger token, 1-based number) -> the picture.
RegistryPicture = Callable[[str, int], Awaitable[common_pb2.Image]]


# -- at the edge --------------------------------------------------------------------------------------------------


def check_uploads(uploads: Sequence[common_pb2.CharacterPictures]) -> list[common_pb2.CharacterPictures]:
    """The request's uploaded pictures, each checked (InvalidArgument naming it) and described: its sha256, media
    type and size filled in from its bytes."""
    checked, seen = [], set()
    for index, upload in enumerate(uploads):
        field = f"spec.character_references[{index}]"
        if upload.trigger_token in seen:
            raise InvalidArgument(f"{field}.trigger_token", f"{upload.trigger_token!r} is named twice; give it once")
        seen.add(upload.trigger_token)
        if not 1 <= len(upload.pictures) <= MAX_PICTURES:
            raise InvalidArgument(f"{field}.pictures", f"must hold 1 to {MAX_PICTURES} pictures")
        if not math.isfinite(upload.scale) or not 0.0 <= upload.scale <= 1.0:
            raise InvalidArgument(f"{field}.scale", f"must be between 0 and 1, got {upload.scale:g}")
        pictures = [
            _described(picture, f"{field}.pictures[{number}]") for number, picture in enumerate(upload.pictures)
        ]
        checked.append(common_pb2.CharacterPictures(trigger_token=upload.trigger_token, pictures=pictures,
                                                    scale=upload.scale))  # fmt: skip
    return checked


def _described(picture: common_pb2.Image, field: str) -> common_pb2.Image:
    if not picture.data:
        raise InvalidArgument(field, "is empty; data must hold a PNG, JPEG or WebP picture")
    if len(picture.data) > MAX_PICTURE_BYTES:
        raise InvalidArgument(field, f"is {len(picture.data)} bytes; the limit is {MAX_PICTURE_BYTES}")
    try:
        with Image.open(io.BytesIO(picture.data)) as opened:
            kind, width, height = opened.format, opened.width, opened.height
            opened.verify()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise InvalidArgument(field, "is not a picture that can be read (PNG, JPEG or WebP)") from None
    if kind not in MIME_TYPES:
        raise InvalidArgument(field, f"is {kind}, not PNG, JPEG or WebP")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidArgument(field, f"is {width}x{height}; each side must be {MIN_SIDE} to {MAX_SIDE} pixels")
    digest = hashlib.sha256(picture.data).digest()
    return common_pb2.Image(data=picture.data, mime_type=MIME_TYPES[kind], width=width, height=height, sha256=digest)


def without_bytes(spec: sb.StoryboardSpec) -> sb.StoryboardSpec:
    """``spec`` as it is stored and read back: its uploaded pictures described, their bytes left out."""
    stored = sb.StoryboardSpec()
    stored.CopyFrom(spec)
    for upload in stored.character_references:
        for picture in upload.pictures:
            picture.ClearField("data")
    return stored


# -- in the folder ------------------------------------------------------------------------------------------------


def picture_file(trigger_token: str, number: int, mime_type: str) -> str:
    """``references/aldar_kose_man_1.png``: where an uploaded picture is kept, relative to the storyboard's folder."""
    return f"{FOLDER}/{trigger_token.replace(' ', '_')}_{number}{EXTENSIONS[mime_type]}"


def write_uploads(folder: Path, uploads: Sequence[common_pb2.CharacterPictures]) -> None:
    for upload in uploads:
        for number, picture in enumerate(upload.pictures, start=1):
            outputs.write_bytes_atomic(
                folder / picture_file(upload.trigger_token, number, picture.mime_type), picture.data
            )


def read_uploads(folder: Path, spec: sb.StoryboardSpec) -> dict[str, common_pb2.CharacterPictures]:
    """The uploaded pictures of ``spec`` (as stored, without bytes) read back from the folder, by trigger token."""
    found = {}
    for upload in spec.character_references:
        pictures = []
        for number, described in enumerate(upload.pictures, start=1):
            path = folder / picture_file(upload.trigger_token, number, described.mime_type)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                missing = f"the uploaded reference picture {path.name} is missing from {path.parent}"
                raise FailedPrecondition(missing) from None
            picture = common_pb2.Image()
            picture.CopyFrom(described)
            picture.data = data
            pictures.append(picture)
        found[upload.trigger_token] = common_pb2.CharacterPictures(
            trigger_token=upload.trigger_token, pictures=pictures, scale=upload.scale
        )
    return found


# -- for the run --------------------------------------------------------------------------------------------------


async def character_pictures(
    plan: common_pb2.Plan, uploads: dict[str, common_pb2.CharacterPictures], registry_picture: RegistryPicture
) -> tuple[dict[str, common_pb2.CharacterPictures], list[str]]:
    """Every reference picture of the plan's characters, by trigger token: the registry's, then those uploaded for
    the storyboard (whose scale, when given, wins over the registry's); and the notes on pictures that could not be
    fetched (the storyboard goes on without them)."""
    gathered, notes = {}, []
    for character in plan.characters:
        token = character.trigger_token
        pictures = []
        for number in range(1, character.reference_images + 1):
            try:
                pictures.append(await registry_picture(token, number))
            except grpc.aio.AioRpcError as error:
                notes.append(f"reference picture {number} of {character.name} not used: {error.details()}")
                log.warning("cannot fetch reference picture %d of %s: %s", number, token, error.code().name)
        uploaded = uploads.get(token)
        if uploaded is not None:
            pictures += list(uploaded.pictures)
        if pictures:
            for picture in pictures:
                picture.sha256 = picture.sha256 or hashlib.sha256(picture.data).digest()
            scale = (uploaded.scale if uploaded is not None else 0.0) or character.reference_scale
            gathered[token] = common_pb2.CharacterPictures(trigger_token=token, pictures=pictures, scale=scale)
    return gathered, notes


def frame_references(
    scene: common_pb2.Scene, pictures: dict[str, common_pb2.CharacterPictures]
) -> list[common_pb2.CharacterPictures]:
    """The reference pictures of the characters a frame shows, in the order it names them."""
    return [pictures[token] for token in scene.trigger_tokens if token in pictures]
