"""The trigger token of a LoRA checkpoint the local stack is given (``--lora-path outputs/checkpoints/checkpoint-400``),
so that the prompts carry the token the LoRA was trained on instead of words it ignores.

Where the token comes from, first found first: the caller's ``--trigger-token``; the registry entry whose adapter is
the checkpoint; the checkpoint's own metadata (kohya's ``ss_tag_frequency`` in its safetensors files: the most
frequent tag); a training config beside it (a ``*.json`` or ``*.toml`` in its folder or the two above it with a
``trigger_token`` or ``instance_token``, or an ``instance_prompt`` with one word joined by underscores). A token the
registry does not know is added to a copy of the registry, as a character of its own, for this run's planner.
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from services.planner.characters import CharacterRegistry
from storyboard_server.registry import characters_file as registry_file

_CONFIG_KEYS = ("trigger_token", "instance_token")
_JOINED_WORD = re.compile(r"\b[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+\b")


@dataclass(frozen=True)
class LoraCharacter:
    """What a run needs to fire a LoRA: its trigger token (None: unknown), where it was found, and the registry the
    run's planner reads (the one given, or a copy with the token added)."""

    token: str | None
    source: str
    characters_file: Path | None


def lora_character(
    checkpoint: Path, adapter: str, trigger_token: str | None, characters_file: Path | None
) -> LoraCharacter:
    """The trigger token of the LoRA at ``checkpoint`` (a file or a folder), known to the stack as ``adapter``;
    ``characters_file`` None is the default registry (``registry.characters_file``)."""
    characters_file = registry_file(characters_file)
    registry = CharacterRegistry.load(characters_file) if characters_file else CharacterRegistry()
    found = _token(checkpoint, adapter, trigger_token, registry)
    if found is None:
        return LoraCharacter(None, "", characters_file)
    token, source = found
    if registry.find(token) is not None:
        return LoraCharacter(token, source, characters_file)
    copy = _with_character(characters_file, token)
    CharacterRegistry.load(copy)  # a token no registry could hold is a ValueError naming it, before anything starts
    return LoraCharacter(token, source, copy)


def _token(checkpoint: Path, adapter: str, given: str | None, registry: CharacterRegistry) -> tuple[str, str] | None:
    if given:
        return given, "--trigger-token"
    for character in registry:
        if character.adapter == adapter:
            return character.trigger_token, f"the registry's {character.name}, whose adapter it is"
    for file in sorted(checkpoint.glob("*.safetensors")) if checkpoint.is_dir() else [checkpoint]:
        if token := _kohya_token(file):
            return token, f"the ss_tag_frequency metadata of {file.name}"
    for config in _configs_near(checkpoint):
        if token := _config_token(config):
            return token, f"the training config {config}"
    return None


def _kohya_token(file: Path) -> str | None:
    """The most frequent tag of a kohya-trained LoRA, from its safetensors metadata."""
    try:
        with safe_open(str(file), framework="numpy") as weights:
            metadata = weights.metadata() or {}
    except (OSError, SafetensorError):
        return None
    try:
        datasets = json.loads(metadata.get("ss_tag_frequency", "{}"))
    except json.JSONDecodeError:
        return None
    counts: Counter[str] = Counter()
    for tags in datasets.values() if isinstance(datasets, dict) else []:
        if isinstance(tags, dict):
            counts.update({str(tag).strip(): int(n) for tag, n in tags.items() if isinstance(n, int | float)})
    return counts.most_common(1)[0][0] if counts else None


def _configs_near(checkpoint: Path) -> list[Path]:
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    near = [folder, *list(folder.parents)[:2]]
    return [path for place in near for suffix in ("json", "toml") for path in sorted(place.glob(f"*.{suffix}"))]


def _config_token(config: Path) -> str | None:
    try:
        text = config.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if config.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in _CONFIG_KEYS:
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key].strip()
    prompt = data.get("instance_prompt")
    joined = _JOINED_WORD.findall(prompt) if isinstance(prompt, str) else []
    return joined[0] if len(joined) == 1 else None


def _with_character(characters_file: Path | None, token: str) -> Path:
    """A copy of the registry (or a new one) with a character called by ``token`` itself. The copy lives elsewhere,
    so its reference images are named by absolute path."""
    entries: list[dict[str, Any]] = []
    if characters_file is not None:
        entries = tomllib.loads(characters_file.read_text(encoding="utf-8")).get("characters", [])
        for entry in entries:
            images = entry.get("reference_images", [])
            entry["reference_images"] = [str((characters_file.parent / image).resolve()) for image in images]
    entries.append({"name": token, "trigger_token": token})
    copy = Path(tempfile.mkdtemp(prefix="storyboard-characters-")) / "characters.toml"
    copy.write_text("".join(_toml_table(entry) for entry in entries), encoding="utf-8")
    return copy


def _toml_table(entry: dict[str, Any]) -> str:
    # A registry entry holds strings and lists of strings, which JSON writes as TOML basic strings and arrays.
    lines = [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n[[characters]]\n" + "\n".join(lines) + "\n"
