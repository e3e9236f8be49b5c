"""The character registry: who can appear in a storyboard, how a story names them, and which LoRA draws them.

A registry is a TOML file with one ``[[characters]]`` table per character::

    [[characters]]
    name = "Aldar Kose"                    # display name, matched in stories as a whole phrase
    aliases = ["Aldar"]                    # other names the story may use
    trigger_token = "aldar_kose_man"       # the token the character's LoRA was trained on
    adapter = "aldar_kose"                 # the LoRA adapter's name in the renderer's adapters folder (optional)
    adapter_weight = 0.8                   # optional: the weight its LoRA is applied at (default 1.0)
    reference_images = ["refs/aldar.png"]  # optional, relative to the registry file: PNG, JPEG or WebP files
    reference_scale = 0.6                  # optional: how strongly the pictures condition its frames (IP-Adapter)
    descriptors = ["kazakh folk trickster"]  # optional identity words added to prompts; never clothing/appearance

Nothing about any particular character lives in code: the spec's Aldar Kose is one entry of examples/characters.toml.
"""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.planner.banned import banned_words
from services.planner.text import phrase_pattern
from storyboard.v1 import common_pb2
from storyboard_common.errors import NotFound
from storyboard_common.images import MIME_TYPES

_TRIGGER = re.compile(r"^[\w-]+( [\w-]+)*$")
_ADAPTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# One picture is one gRPC message, whose default limit is 4 MiB.
MAX_REFERENCE_BYTES = 3 * 1024 * 1024


@dataclass(frozen=True)
class Character:
    """One registered character."""

    name: str
    trigger_token: str
    adapter: str = ""
    aliases: tuple[str, ...] = ()
    reference_images: tuple[Path, ...] = ()
    descriptors: tuple[str, ...] = ()
    adapter_weight: float = 1.0
    reference_scale: float = 0.0  # 0: the renderer's default

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a story may use for the character, longest first (so "Aldar Kose" wins over "Aldar")."""
        return tuple(sorted({self.name, *self.aliases}, key=len, reverse=True))

    @property
    def name_words(self) -> frozenset[str]:
        """The lower-cased words of every name, plus the trigger token."""
        found = {word.lower() for name in self.names for word in name.split()}
        return frozenset({*found, self.trigger_token.lower()})

    def first_mention(self, text: str) -> int | None:
        """Where ``text`` first names the character (by name, alias or trigger token), or None."""
        starts = [
            match.start()
            for name in (*self.names, self.trigger_token)
            if (match := phrase_pattern(name).search(text)) is not None
        ]
        return min(starts) if starts else None

    def to_proto(self) -> common_pb2.CharacterRef:
        """The character as the contract's CharacterRef."""
        return common_pb2.CharacterRef(
            name=self.name, trigger_token=self.trigger_token, adapter=self.adapter, aliases=self.aliases,
            reference_images=len(self.reference_images), adapter_weight=self.adapter_weight,
            reference_scale=self.reference_scale,
        )  # fmt: skip

    def reference_picture(self, number: int) -> common_pb2.Image:
        """The ``number``-th (1-based) reference picture, its bytes as the file holds them; NotFound beyond them."""
        if not 1 <= number <= len(self.reference_images):
            held = len(self.reference_images)
            raise NotFound(f"number: character {self.name!r} has no reference picture {number} (it has {held})")
        data = self.reference_images[number - 1].read_bytes()
        with Image.open(io.BytesIO(data)) as picture:
            return common_pb2.Image(data=data, mime_type=MIME_TYPES[picture.format or ""], width=picture.width,
                                    height=picture.height)  # fmt: skip


class _Entry(BaseModel):
    """One ``[[characters]]`` table, as written in the file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    trigger_token: str = Field(min_length=1, max_length=80)
    adapter: str = ""
    aliases: list[str] = []
    reference_images: list[str] = []
    descriptors: list[str] = []
    adapter_weight: float = Field(1.0, ge=-4.0, le=4.0)
    reference_scale: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("trigger_token")
    @classmethod
    def _trigger_is_plain(cls, value: str) -> str:
        if not _TRIGGER.match(value):
            raise ValueError("must be words of letters, digits, '_' or '-' separated by single spaces")
        return value

    @field_validator("adapter_weight")
    @classmethod
    def _weight_draws_something(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0 (a weight of 0 draws nothing of the adapter: leave 'adapter' out)")
        return value

    @field_validator("adapter")
    @classmethod
    def _adapter_is_a_name(cls, value: str) -> str:
        if value and (not _ADAPTER.match(value) or ".." in value):
            raise ValueError("must be an adapter name (letters, digits, '_', '.', '-'), not a path")
        return value

    @field_validator("descriptors")
    @classmethod
    def _descriptors_are_allowed(cls, value: list[str]) -> list[str]:
        for descriptor in value:
            if found := banned_words(descriptor, ["character"]):
                raise ValueError(f"{descriptor!r} uses clothing or appearance words ({', '.join(found)})")
        return value


class CharacterRegistry:
    """The registered characters, looked up by name, alias or trigger token (case-insensitive)."""

    def __init__(self, characters: Sequence[Character] = ()) -> None:
        self._characters = tuple(characters)
        self._by_key: dict[str, Character] = {}
        for character in self._characters:
            for key in (*character.names, character.trigger_token):
                other = self._by_key.setdefault(key.lower(), character)
                if other is not character:
                    raise ValueError(f"the name {key!r} belongs to both {other.name!r} and {character.name!r}")

    @classmethod
    def load(cls, path: Path) -> CharacterRegistry:
        """The registry in a TOML file; ValueError with a readable message when the file is wrong."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"{path}: cannot read the character registry: {error}") from None
        entries = data.get("characters", [])
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: expected one or more [[characters]] tables")
        characters = [_character(path, index, entry) for index, entry in enumerate(entries, start=1)]
        try:
            return cls(characters)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def __iter__(self) -> Iterator[Character]:
        return iter(self._characters)

    def __len__(self) -> int:
        return len(self._characters)

    def find(self, name: str) -> Character | None:
        """The character called ``name`` (name, alias or trigger token), or None."""
        return self._by_key.get(name.strip().lower())

    def resolve(self, names: Sequence[str], field: str = "options.characters") -> list[Character]:
        """The characters with these names, in order and without repeats; NotFound for an unknown name."""
        resolved: list[Character] = []
        for name in names:
            character = self.find(name)
            if character is None:
                known = ", ".join(c.name for c in self._characters) or "none; no character registry is configured"
                raise NotFound(f"{field}: no character named {name!r}; registered characters: {known}")
            if character not in resolved:
                resolved.append(character)
        return resolved

    def mentioned_in(self, text: str) -> list[Character]:
        """The characters ``text`` names, in order of first mention."""
        found = [(position, c) for c in self._characters if (position := c.first_mention(text)) is not None]
        return [character for _position, character in sorted(found, key=lambda pair: pair[0])]


def _character(path: Path, index: int, entry: object) -> Character:
    try:
        parsed = _Entry.model_validate(entry)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'entry'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ValueError(f"{path}: character {index}: {problems}") from None
    images = tuple((path.parent / image).resolve() for image in parsed.reference_images)
    for image in images:
        if problem := _not_a_reference_picture(image):
            raise ValueError(f"{path}: character {parsed.name!r}: reference image {image} {problem}")
    return Character(
        name=parsed.name.strip(),
        trigger_token=parsed.trigger_token,
        adapter=parsed.adapter,
        aliases=tuple(alias.strip() for alias in parsed.aliases if alias.strip()),
        reference_images=images,
        descriptors=tuple(parsed.descriptors),
        adapter_weight=parsed.adapter_weight,
        reference_scale=parsed.reference_scale,
    )


def _not_a_reference_picture(path: Path) -> str:
    """What keeps the file at ``path`` from being a reference picture, or "" when nothing does."""
    if not path.is_file():
        return "does not exist"
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        return f"is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MiB"
    try:
        with Image.open(path) as picture:
            if picture.format not in MIME_TYPES:
                return f"is {picture.format}, not PNG, JPEG or WebP"
    except (UnidentifiedImageError, OSError):
        return "is not a picture Pillow can read"
    return ""
