"""The validator's parts without a server: settings checked at start, prompt cleaning, verdicts, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.validator.clip_model import ModelLoadError, load_clip
from services.validator.embeddings import LruCache, content_key
from services.validator.scoring import (
    ReferencePolicy,
    Thresholds,
    Verdict,
    judge,
    reference_vector,
    strip_trigger_tokens,
)
from services.validator.settings import ValidatorSettings
from services.validator.weights import WeightsKind
from storyboard_common.settings import load_settings

# --- settings ------------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = ValidatorSettings()
    assert settings.port == 50054
    assert (settings.clip_model, settings.clip_pretrained) == ("ViT-L-14", "")
    assert settings.consistency_threshold == pytest.approx(0.70)
    assert settings.weights().kind is WeightsKind.NONE  # starts, but NOT_SERVING until weights are configured


def test_missing_checkpoint_file_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such checkpoint file"):
        ValidatorSettings(clip_pretrained=str(tmp_path / "missing.safetensors"))


def test_checkpoint_file_and_tag_are_told_apart(tmp_path: Path) -> None:
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"x")
    assert ValidatorSettings(clip_pretrained=str(checkpoint)).weights().kind is WeightsKind.FILE
    assert ValidatorSettings(clip_pretrained="laion2b_s32b_b82k").weights().kind is WeightsKind.TAG


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("local-dir:/no/such/folder", "no such folder"),
        ("local-dir:", "needs a folder"),
        ("hf-hub:", "needs ORG/REPO"),
        ("  ", "must not be empty"),
    ],
)
def test_unusable_clip_model_fails_fast(model: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ValidatorSettings(clip_model=model)


def test_local_dir_needs_open_clip_config(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"open_clip_config\.json"):
        ValidatorSettings(clip_model=f"local-dir:{tmp_path}")


def test_pretrained_with_local_dir_is_refused_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(ValidationError, match="would be ignored"):
        ValidatorSettings(clip_model=f"local-dir:{tmp_path}", clip_pretrained="openai")


def test_flags_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    monkeypatch.setenv("STORYBOARD_VALIDATOR_CLIP_MODEL", f"local-dir:{tmp_path}")
    settings = load_settings(ValidatorSettings, ["--device", "cpu", "--consistency-threshold", "0.8"])
    assert settings.clip_model == f"local-dir:{tmp_path.resolve()}"
    assert (settings.device, settings.consistency_threshold) == ("cpu", 0.8)


def test_bad_flag_exits_with_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load_settings(ValidatorSettings, ["--clip-pretrained", "/no/such/file.pt"], prog="storyboard-validator")
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--clip-pretrained" in error and "STORYBOARD_VALIDATOR_CLIP_PRETRAINED" in error
    assert "no such checkpoint file" in error


def test_local_dir_without_weights_does_not_load_random_ones(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    settings = ValidatorSettings(clip_model=f"local-dir:{tmp_path}", device="cpu")
    with pytest.raises(ModelLoadError, match="holds no weights"):
        load_clip(settings.weights(), settings.device)


# --- prompts and verdicts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "tokens", "expected"),
    [
        ("aldar_kose_man riding a horse, sunset", ["aldar_kose_man"], "riding a horse, sunset"),
        ("a wide shot of Aldar_Kose_Man, at the yurt", ["aldar_kose_man"], "a wide shot of, at the yurt"),
        ("steppe, aldar_kose_man, golden hour", ["aldar_kose_man"], "steppe, golden hour"),
        ("aldar_kose_manly rider", ["aldar_kose_man"], "aldar_kose_manly rider"),  # whole tokens only
        ("<sks> horse and sks", ["<sks>"], "horse and sks"),
        ("no tokens here", [], "no tokens here"),
        ("aldar_kose_man", ["aldar_kose_man"], ""),
    ],
)
def test_strip_trigger_tokens(prompt: str, tokens: list[str], expected: str) -> None:
    assert strip_trigger_tokens(prompt, tokens) == expected


THRESHOLDS = Thresholds(consistency=0.7, alignment=0.2, repetition=0.95, reference_consistency=0.7)


@pytest.mark.parametrize(
    ("scores", "verdict"),
    [
        ((0.9, 0.3, 0.5), Verdict.PASS),
        ((0.6, 0.1, 0.99), Verdict.LOW_CONSISTENCY),
        ((0.9, 0.1, 0.99), Verdict.LOW_ALIGNMENT),
        ((0.9, 0.3, 0.99), Verdict.REPETITIVE),
        ((0.9, None, 0.5), Verdict.PASS),
        ((0.7, 0.2, 0.95), Verdict.PASS),  # reaching a threshold passes; repetition must exceed its own
    ],
)
def test_verdict_is_the_first_failed_check(scores: tuple, verdict: Verdict) -> None:
    assert judge(*scores, THRESHOLDS) is verdict


def test_reference_vectors_are_unit_length() -> None:
    import torch

    frames = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    references = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    assert torch.equal(reference_vector(ReferencePolicy.FIRST_FRAME, frames), frames[0])
    for policy in (ReferencePolicy.CENTROID, ReferencePolicy.REFERENCE_IMAGES):
        assert float(reference_vector(policy, frames, references).norm()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        reference_vector(ReferencePolicy.REFERENCE_IMAGES, frames, None)


# --- cache ---------------------------------------------------------------------------------------------------------


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    disabled: LruCache[str, int] = LruCache(0)
    disabled.put("a", 1)
    assert disabled.get("a") is None and len(disabled) == 0


def test_content_key_is_sha256_of_the_bytes() -> None:
    assert content_key(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_key(b"abc") != content_key(b"abd")
