"""The trigger token of a LoRA checkpoint given to the local stack: from the caller, the registry, the checkpoint's
kohya metadata or a training config beside it; a token the registry lacks joins a copy of it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from services.planner.characters import CharacterRegistry
from storyboard_server.lora import lora_character


def _checkpoint(root: Path, metadata: dict[str, str] | None = None) -> Path:
    """outputs/checkpoints/checkpoint-400 with one real safetensors file, as diffusers' training scripts lay it out."""
    folder = root / "outputs" / "checkpoints" / "checkpoint-400"
    folder.mkdir(parents=True)
    save_file({"lora.down.weight": np.zeros((4, 4), np.float32)}, folder / "pytorch_lora_weights.safetensors",
              metadata=metadata)  # fmt: skip
    return folder


def _registry(root: Path, text: str) -> Path:
    (root / "characters.toml").write_text(text)
    return root / "characters.toml"


@pytest.fixture(autouse=True)
def _no_default_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default registry is found in the working directory


KOHYA = {"ss_tag_frequency": json.dumps({"10_hero": {"fox_hero": 40, "river": 5}, "5_more": {"fox_hero": 10}})}


def test_the_callers_token_comes_first(tmp_path):
    found = lora_character(_checkpoint(tmp_path, KOHYA), "checkpoint-400", "my_token", None)
    assert (found.token, found.source) == ("my_token", "--trigger-token")


def test_the_registry_entry_whose_adapter_it_is_names_the_token(tmp_path):
    registry = _registry(
        tmp_path, '[[characters]]\nname = "Fox"\ntrigger_token = "fox_reg"\nadapter = "checkpoint-400"\n'
    )
    found = lora_character(_checkpoint(tmp_path, KOHYA), "checkpoint-400", None, registry)
    assert found.token == "fox_reg" and "Fox" in found.source and found.characters_file == registry


def test_kohya_metadata_gives_the_most_frequent_tag_and_a_registry_copy_adds_it(tmp_path):
    (tmp_path / "refs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "refs" / "front.png")
    registry = _registry(tmp_path, '[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_kose_man"\n'
                                   'reference_images = ["refs/front.png"]\n')  # fmt: skip
    found = lora_character(_checkpoint(tmp_path, KOHYA), "checkpoint-400", None, registry)
    assert found.token == "fox_hero" and "ss_tag_frequency" in found.source
    assert found.characters_file != registry
    copied = CharacterRegistry.load(found.characters_file)  # the real loader: valid, images found from elsewhere
    assert [c.trigger_token for c in copied] == ["aldar_kose_man", "fox_hero"]
    entries = tomllib.loads(found.characters_file.read_text())["characters"]
    assert entries[0]["reference_images"] == [str((tmp_path / "refs" / "front.png").resolve())]


@pytest.mark.parametrize(
    ("name", "config", "token"),
    [
        ("training_config.json", {"instance_prompt": "a photo of fox_hero on the ice"}, "fox_hero"),
        ("train.toml", None, "toml_fox"),
        ("config.json", {"trigger_token": "fox_cfg"}, "fox_cfg"),
        ("config.json", {"instance_prompt": "a photo of sks fox"}, None),  # no word joined by underscores
    ],
)
def test_a_training_config_beside_it_names_the_token(tmp_path, name, config, token):
    checkpoint = _checkpoint(tmp_path)
    text = 'instance_token = "toml_fox"\n' if config is None else json.dumps(config)
    (checkpoint.parent / name).write_text(text)
    found = lora_character(checkpoint, "checkpoint-400", None, None)
    assert found.token == token
    assert (found.source.endswith(name)) if token else found.source == ""


def test_nothing_known_is_none(tmp_path):
    found = lora_character(_checkpoint(tmp_path), "checkpoint-400", None, None)
    assert found.token is None and found.characters_file is None


def test_a_token_no_registry_could_hold_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="trigger_token"):
        lora_character(_checkpoint(tmp_path, {"ss_tag_frequency": json.dumps({"d": {"fox, hero!": 3}})}),
                       "checkpoint-400", None, None)  # fmt: skip
