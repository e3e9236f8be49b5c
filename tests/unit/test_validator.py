"""The validator on in-process servers (port 0), with a tiny random CLIP loaded through the real loading path."""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from services.validator.server import SERVICE_NAME, create_server
from services.validator.settings import ValidatorSettings
from storyboard.v1 import common_pb2
from storyboard_common.server import ServiceServer
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc

try:
    from tests.support.tiny_clip import TinyClip, build_tiny_clip, register_tiny_clip_config
except ModuleNotFoundError:  # pytest puts tests/unit on sys.path, not the repository root, unless told to
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.tiny_clip import TinyClip, build_tiny_clip, register_tiny_clip_config

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
READY_TIMEOUT = 60  # the first load in a process pays for importing open_clip


# --- helpers -------------------------------------------------------------------------------------------------------


def png(seed: int, size: int = 64, grid: int = 4) -> bytes:
    """A frame of random coloured blocks: distinct seeds give clearly different pictures."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size: int) -> bytes:
    """A PNG that does not compress: about 3 bytes per pixel."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def images(*datas: bytes) -> list[common_pb2.Image]:
    return [common_pb2.Image(data=data, mime_type="image/png") for data in datas]


def by_digest(*datas: bytes) -> list[common_pb2.Image]:
    """The images named by their SHA-256 alone, without their bytes."""
    return [common_pb2.Image(sha256=hashlib.sha256(data).digest(), mime_type="image/png") for data in datas]


@dataclass
class Validator:
    server: ServiceServer
    stub: validator_pb2_grpc.ValidatorStub
    health: health_pb2_grpc.HealthStub

    def status(self) -> int:
        return self.health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status

    def score(self, **request: object) -> validator_pb2.ScoreResponse:
        return self.stub.Score(validator_pb2.ScoreRequest(**request), timeout=30)

    def info(self) -> validator_pb2.ValidatorInfo:
        return self.stub.Info(validator_pb2.ValidatorInfoRequest(), timeout=5)


@contextmanager
def running_validator(*, wait: bool = True, **overrides: object) -> Iterator[Validator]:
    """A started validator on a free port; with ``wait``, once its warm-up has succeeded."""
    server, port = create_server(ValidatorSettings(port=0, **overrides))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        validator = Validator(server, validator_pb2_grpc.ValidatorStub(channel), health_pb2_grpc.HealthStub(channel))
        if wait:
            assert server.ready.wait(READY_TIMEOUT), server.not_ready_reason
        yield validator
    finally:
        channel.close()
        server.stop(0)


def wait_for_failed_warm_up(server: ServiceServer) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while server.not_ready_reason == "starting" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.ready.is_set()
    return server.not_ready_reason


@dataclass
class ForwardPasses:
    """Batch sizes of the image and text forward passes seen while counting."""

    images: list[int] = field(default_factory=list)
    texts: list[int] = field(default_factory=list)


@contextmanager
def counting_forward_passes() -> Iterator[ForwardPasses]:
    """Count forward passes of every CLIP image tower (its VisionTransformer) and text tower (its token embedding)."""
    import open_clip
    import torch

    passes = ForwardPasses()

    def hook(module: torch.nn.Module, args: tuple, _output: object) -> None:
        if isinstance(module, open_clip.transformer.VisionTransformer):
            passes.images.append(args[0].shape[0])
        elif isinstance(module, torch.nn.Embedding):
            passes.texts.append(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield passes
    finally:
        handle.remove()


def expect_error(validator: Validator, code: grpc.StatusCode, **request: object) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        validator.score(**request)
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def validator(tiny: TinyClip) -> Iterator[Validator]:
    with running_validator(**tiny.settings()) as running:
        yield running


# --- readiness -----------------------------------------------------------------------------------------------------


def test_serving_once_loaded(validator: Validator, tiny: TinyClip) -> None:
    assert validator.status() == SERVING
    info = validator.info()
    assert info.ready and info.reason == ""
    assert info.model == tiny.clip_model
    assert info.device == "cpu"
    assert info.max_frames == 32
    assert info.thresholds.consistency == pytest.approx(0.70)


def test_not_configured_is_not_serving_and_says_what_to_set() -> None:
    with running_validator(wait=False, clip_model="ViT-L-14", clip_pretrained="") as validator:
        reason = wait_for_failed_warm_up(validator.server)
        assert validator.status() == NOT_SERVING
        info = validator.info()
        assert not info.ready and info.model == ""
        assert info.reason == reason
        for setting in (
            "--clip-model",
            "--clip-pretrained",
            "STORYBOARD_VALIDATOR_CLIP_MODEL",
            "STORYBOARD_VALIDATOR_CLIP_PRETRAINED",
            "local-dir:",
        ):
            assert setting in info.reason
        details = expect_error(validator, grpc.StatusCode.UNAVAILABLE, frames=images(png(1)))
        assert details == info.reason


def test_tag_missing_from_local_cache_fails_fast_without_network() -> None:
    started = time.monotonic()
    with running_validator(wait=False, clip_model="ViT-L-14", clip_pretrained="laion2b_s32b_b82k") as validator:
        reason = wait_for_failed_warm_up(validator.server)
        assert validator.status() == NOT_SERVING
        assert "never downloads" in reason and "laion2b_s32b_b82k" in reason
        assert validator.info().reason == reason
        assert expect_error(validator, grpc.StatusCode.UNAVAILABLE, frames=images(png(1))) == reason
    # No wall-clock assertion beyond "did not hang": a download attempt without network would block far longer.
    assert time.monotonic() - started < READY_TIMEOUT


def test_unknown_tag_names_the_known_ones() -> None:
    with running_validator(wait=False, clip_model="ViT-L-14", clip_pretrained="no_such_tag") as validator:
        reason = wait_for_failed_warm_up(validator.server)
        assert "no_such_tag" in reason and "laion2b_s32b_b82k" in reason


def test_tag_in_local_cache_loads_offline(
    tiny: TinyClip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validator: Validator
) -> None:
    """A tag whose weights sit in the Hugging Face cache loads with offline mode on, as a real tag would."""
    import huggingface_hub.constants
    import open_clip

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--storyboard--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(tiny.checkpoint, repo / "snapshots" / commit / "open_clip_model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    register_tiny_clip_config(tiny)
    tag = {"tiny": open_clip.pretrained._pcfg(hf_hub="storyboard/tiny-clip/")}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, tiny.model_name, tag)

    frames = images(png(1), png(2), png(3))
    with running_validator(clip_model=tiny.model_name, clip_pretrained="tiny") as tagged:
        assert tagged.status() == SERVING
        assert tagged.info().pretrained == "tiny"
        scores = [s.consistency for s in tagged.score(frames=frames).scores]
    assert scores == pytest.approx([s.consistency for s in validator.score(frames=frames).scores], abs=1e-6)


def test_model_name_with_checkpoint_file_scores_like_local_dir(tiny: TinyClip, validator: Validator) -> None:
    register_tiny_clip_config(tiny)
    frames = images(png(1), png(2), png(3))
    prompts = ["a red house", "a blue horse", "a yurt at sunset"]
    with running_validator(clip_model=tiny.model_name, clip_pretrained=str(tiny.checkpoint)) as by_file:
        assert by_file.info().pretrained == str(tiny.checkpoint)
        from_file = by_file.score(frames=frames, prompts=prompts)
    from_dir = validator.score(frames=frames, prompts=prompts)
    for a, b in zip(from_file.scores, from_dir.scores, strict=True):
        assert (a.consistency, a.alignment, a.repetition) == pytest.approx((b.consistency, b.alignment, b.repetition))


# --- scores --------------------------------------------------------------------------------------------------------


def test_frame_scored_against_itself_is_fully_consistent(validator: Validator) -> None:
    frame = png(7)
    by_reference = validator.score(frames=images(frame), references=images(frame))
    assert by_reference.policy == validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES
    assert by_reference.scores[0].consistency == pytest.approx(1.0, abs=1e-4)
    first_frame = validator.score(frames=images(frame, png(8)), policy=validator_pb2.REFERENCE_POLICY_FIRST_FRAME)
    assert first_frame.scores[0].consistency == pytest.approx(1.0, abs=1e-4)
    assert first_frame.scores[1].consistency < 0.99


def test_identical_frames_are_flagged_repetitive(validator: Validator) -> None:
    a, b, c = png(1), png(2), png(3)
    response = validator.score(
        frames=images(a, b, a, c), thresholds=common_pb2.Thresholds(consistency=-1, alignment=-1, repetition=0.99)
    )
    verdicts = [score.verdict for score in response.scores]
    assert verdicts == [
        common_pb2.VERDICT_REPETITIVE,
        common_pb2.VERDICT_PASS,
        common_pb2.VERDICT_REPETITIVE,
        common_pb2.VERDICT_PASS,
    ]
    assert response.scores[0].repetition == pytest.approx(1.0, abs=1e-4)
    assert (response.scores[0].most_similar_index, response.scores[2].most_similar_index) == (2, 0)
    assert response.scores[1].repetition < 0.99
    assert response.thresholds.repetition == pytest.approx(0.99)


def test_single_frame_has_no_repetition(validator: Validator) -> None:
    score = validator.score(frames=images(png(1))).scores[0]
    assert (score.repetition, score.most_similar_index) == (0.0, -1)


def test_batched_scores_equal_one_at_a_time_scores(tiny: TinyClip) -> None:
    frames = [png(seed) for seed in range(10, 18)]
    prompts = [f"frame {i}: a rider crossing the steppe, wide shot" for i in range(8)]
    reference = images(png(99))
    with running_validator(embedding_cache_size=0, **tiny.settings()) as validator:  # no cache: every call embeds
        with counting_forward_passes() as batched_passes:
            batched = validator.score(frames=images(*frames), prompts=prompts, references=reference)
        with counting_forward_passes() as single_passes:
            singles = [
                validator.score(frames=images(frame), prompts=[prompt], references=reference).scores[0]
                for frame, prompt in zip(frames, prompts, strict=True)
            ]
    assert batched_passes.images == [9]  # eight frames and the reference, in one pass
    assert batched_passes.texts == [8]
    assert single_passes.images == [2] * 8
    for together, alone in zip(batched.scores, singles, strict=True):
        assert together.consistency == pytest.approx(alone.consistency, abs=1e-5)
        assert together.alignment == pytest.approx(alone.alignment, abs=1e-5)


def test_cache_embeds_only_what_changed(validator: Validator) -> None:
    frames = [png(seed) for seed in range(20, 28)]
    prompts = [f"scene {i}" for i in range(8)]
    with counting_forward_passes() as first:
        before = validator.score(frames=images(*frames), prompts=prompts)
    assert first.images == [8] and first.texts == [8]

    with counting_forward_passes() as again:
        repeated = validator.score(frames=images(*frames), prompts=prompts)
    assert again.images == [] and again.texts == []
    assert repeated == before

    frames[3] = png(123)  # the re-rendered frame
    with counting_forward_passes() as changed:
        after = validator.score(frames=images(*frames), prompts=prompts)
    assert changed.images == [1] and changed.texts == []
    assert after.scores[0] == before.scores[0]  # frame 1 is the reference and did not change
    assert after.scores[3].consistency != pytest.approx(before.scores[3].consistency)


def test_duplicate_images_in_one_call_are_embedded_once(validator: Validator) -> None:
    a = png(30)
    with counting_forward_passes() as passes:
        validator.score(frames=images(a, a, png(31)), references=images(a))
    assert passes.images == [2]


def test_trigger_tokens_are_removed_before_alignment(validator: Validator) -> None:
    frame = images(png(40))
    with_token = validator.score(
        frames=frame, prompts=["aldar_kose_man riding a horse, golden hour"], trigger_tokens=["aldar_kose_man"]
    )
    without_token = validator.score(frames=frame, prompts=["riding a horse, golden hour"])
    kept_token = validator.score(frames=frame, prompts=["aldar_kose_man riding a horse, golden hour"])
    assert with_token.scores[0].alignment == pytest.approx(without_token.scores[0].alignment, abs=1e-6)
    assert with_token.scores[0].alignment != pytest.approx(kept_token.scores[0].alignment, abs=1e-6)


def test_empty_prompt_skips_alignment(validator: Validator) -> None:
    response = validator.score(
        frames=images(png(41), png(42)),
        prompts=["", "a horse"],
        thresholds=common_pb2.Thresholds(consistency=-1, alignment=0.999, repetition=0.999),
    )
    first, second = response.scores
    assert (first.alignment, first.verdict) == (0.0, common_pb2.VERDICT_PASS)
    assert second.verdict == common_pb2.VERDICT_LOW_ALIGNMENT


def test_verdicts_use_thresholds_in_order(validator: Validator) -> None:
    frames = images(png(50), png(51), png(50))
    strict = validator.score(
        frames=frames,
        prompts=["a", "b", "c"],
        policy=validator_pb2.REFERENCE_POLICY_FIRST_FRAME,
        thresholds=common_pb2.Thresholds(consistency=0.999, alignment=0.999, repetition=0.99),
    )
    # Frame 0 is its own reference, so it fails alignment; frame 1 fails consistency first.
    assert [s.verdict for s in strict.scores] == [
        common_pb2.VERDICT_LOW_ALIGNMENT,
        common_pb2.VERDICT_LOW_CONSISTENCY,
        common_pb2.VERDICT_LOW_ALIGNMENT,
    ]


def test_zero_thresholds_take_the_defaults(validator: Validator) -> None:
    response = validator.score(frames=images(png(1)), thresholds=common_pb2.Thresholds(consistency=0.5))
    assert response.thresholds.consistency == pytest.approx(0.5)
    assert response.thresholds.alignment == pytest.approx(0.20)
    assert response.thresholds.repetition == pytest.approx(0.95)


def test_reference_policies_are_applied_and_reported(tiny: TinyClip, validator: Validator) -> None:
    frames = images(png(60), png(61), png(62))
    assert validator.score(frames=frames).policy == validator_pb2.REFERENCE_POLICY_FIRST_FRAME
    centroid = validator.score(frames=frames, policy=validator_pb2.REFERENCE_POLICY_CENTROID)
    assert centroid.policy == validator_pb2.REFERENCE_POLICY_CENTROID
    assert all(score.consistency < 0.999 for score in centroid.scores)
    chosen = validator.score(frames=frames, references=images(png(61)), policy=validator_pb2.REFERENCE_POLICY_CENTROID)
    assert [s.consistency for s in chosen.scores] == pytest.approx([s.consistency for s in centroid.scores])
    with running_validator(reference_policy="centroid", **tiny.settings()) as by_default:
        assert by_default.score(frames=frames).policy == validator_pb2.REFERENCE_POLICY_CENTROID


def test_concurrent_calls_give_the_same_scores(tiny: TinyClip, validator: Validator) -> None:
    requests = [dict(frames=images(*(png(70 + i + j) for j in range(4))), prompts=["a"] * 4) for i in range(6)]
    serial = [validator.score(**request) for request in requests]
    with running_validator(embedding_cache_size=0, **tiny.settings()) as fresh, ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda request: fresh.score(**request), requests))
    for alone, concurrent in zip(serial, together, strict=True):
        assert [s.consistency for s in concurrent.scores] == pytest.approx([s.consistency for s in alone.scores])
        assert [s.alignment for s in concurrent.scores] == pytest.approx([s.alignment for s in alone.scores])


# --- bad input -----------------------------------------------------------------------------------------------------

LIMITS = dict(max_frames=4, max_references=2, max_image_bytes=60_000, max_image_pixels=128 * 128, max_prompt_chars=200)


def test_images_named_by_digest_score_like_their_bytes_without_being_sent_again(validator: Validator) -> None:
    frames, reference = [png(seed) for seed in range(40, 44)], png(49)
    prompts = [f"scene {i}" for i in range(4)]
    sent = validator.score(frames=images(*frames), prompts=prompts, references=images(reference))
    with counting_forward_passes() as passes:
        named = validator.score(frames=by_digest(*frames), prompts=prompts, references=by_digest(reference))
    assert named == sent
    assert passes.images == []


def test_an_image_named_by_digest_that_the_validator_does_not_hold_is_failed_precondition(
    tiny: TinyClip, validator: Validator
) -> None:
    details = expect_error(
        validator, grpc.StatusCode.FAILED_PRECONDITION, frames=[*images(png(50)), *by_digest(png(51))]
    )
    assert details.startswith(f"frames[1]: no image with sha256 {hashlib.sha256(png(51)).hexdigest()}"), details
    assert "send its data" in details
    with running_validator(embedding_cache_size=0, **tiny.settings()) as forgetful:
        forgetful.score(frames=images(png(52)))
        expect_error(forgetful, grpc.StatusCode.FAILED_PRECONDITION, frames=by_digest(png(52)))


def test_a_digest_names_an_image_sent_with_its_bytes_in_the_same_request(tiny: TinyClip) -> None:
    frame = png(53)
    with running_validator(embedding_cache_size=0, **tiny.settings()) as forgetful:
        response = forgetful.score(frames=images(frame), references=by_digest(frame))
    assert response.scores[0].consistency == pytest.approx(1.0, abs=1e-4)


@pytest.fixture(scope="module")
def strict_validator(tiny: TinyClip) -> Iterator[Validator]:
    with running_validator(**LIMITS, **tiny.settings()) as running:
        yield running


def bad(name: str, message: str, **request: object) -> object:
    return pytest.param(request, message, id=name)


one = images(png(1))
BAD_REQUESTS = [
    bad("no frames", "frames: must hold at least one frame", frames=[]),
    bad("too many frames", "frames: holds 5 frames; the limit is 4", frames=images(*(png(i) for i in range(5)))),
    bad("undecodable", "frames[3]: is not a decodable image", frames=images(png(1), png(2), png(3), b"no image")),
    bad("empty frame", "frames[1]: is empty", frames=images(png(1), b"")),
    bad("over byte limit", "frames[2]: is ", frames=images(png(1), png(2), noise_png(200))),
    bad("over pixel limit", "frames[0]: is 200x200; the limit is 16384 pixels", frames=images(png(1, size=200))),
    bad("too few prompts", "prompts: holds 1 prompts for 2 frames", frames=images(png(1), png(2)), prompts=["a"]),
    bad("too many prompts", "prompts: holds 2 prompts for 1 frames", frames=one, prompts=["a", "b"]),
    bad("long prompt", "prompts[1]: is 201 characters", frames=images(png(1), png(2)), prompts=["a", "x" * 201]),
    bad("control character", "prompts[0]: contains the control", frames=one, prompts=["a\x00b"]),
    bad(
        "reference policy without references",
        "references: must hold at least one image",
        frames=one,
        policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
    ),
    bad("bad reference", "references[1]: is not a decodable image", frames=one, references=images(png(2), b"junk")),
    bad(
        "too many references",
        "references: holds 3 images; the limit is 2",
        frames=one,
        references=images(png(2), png(3), png(4)),
    ),
    bad("unknown policy", "policy: unknown reference policy 9", frames=one, policy=9),
    bad(
        "threshold out of range",
        "thresholds.consistency: ",
        frames=one,
        thresholds=common_pb2.Thresholds(consistency=1.5),
    ),
    bad(
        "threshold not a number",
        "thresholds.alignment: ",
        frames=one,
        thresholds=common_pb2.Thresholds(alignment=float("nan")),
    ),
    bad("empty trigger token", "trigger_tokens[0]: must not be empty", frames=one, trigger_tokens=[" "]),
    bad(
        "short sha256",
        "frames[0].sha256: is 5 bytes; a SHA-256 is 32",
        frames=[common_pb2.Image(sha256=b"12345")],
    ),
    bad(
        "sha256 of other bytes",
        "references[0].sha256: does not match the SHA-256 of data",
        frames=one,
        references=[common_pb2.Image(data=png(2), sha256=hashlib.sha256(png(3)).digest())],
    ),
]


@pytest.mark.parametrize(("request_fields", "message"), BAD_REQUESTS)
def test_bad_input_is_invalid_argument_naming_the_field(
    strict_validator: Validator, request_fields: dict, message: str
) -> None:
    with counting_forward_passes() as passes:
        details = expect_error(strict_validator, grpc.StatusCode.INVALID_ARGUMENT, **request_fields)
    assert details.startswith(message), details
    assert passes.images == []  # every image is checked before anything is embedded


def test_a_bad_frame_does_not_spoil_the_next_call(strict_validator: Validator) -> None:
    expect_error(strict_validator, grpc.StatusCode.INVALID_ARGUMENT, frames=images(png(1), b"broken"))
    assert len(strict_validator.score(frames=images(png(1), png(2))).scores) == 2


# --- characters' reference pictures (cross consistency) -----------------------------------------------------------


def _character(token: str, pictures: list[bytes], frames: list[int]) -> validator_pb2.CharacterFrames:
    return validator_pb2.CharacterFrames(
        character=common_pb2.CharacterPictures(trigger_token=token, pictures=images(*pictures)), frames=frames
    )


def test_each_frame_is_scored_against_the_pictures_of_each_character_it_shows(validator: Validator) -> None:
    mira, fox = png(21), png(22)
    response = validator.score(
        frames=images(mira, fox, png(23)),
        characters=[_character("mira_girl", [mira], [0, 2]), _character("fox_hero", [fox, fox], [1, 2])],
        thresholds=common_pb2.Thresholds(consistency=-1, alignment=-1, repetition=1, reference_consistency=0.99),
    )
    first, second, third = response.scores
    assert [c.trigger_token for c in first.characters] == ["mira_girl"]
    assert first.characters[0].consistency == pytest.approx(1.0, abs=1e-4)  # the frame is the picture
    assert [c.trigger_token for c in second.characters] == ["fox_hero"]
    assert [c.trigger_token for c in third.characters] == ["mira_girl", "fox_hero"]
    # The reference pictures judge consistency where they exist: the third frame is like neither character.
    assert (first.verdict, second.verdict) == (common_pb2.VERDICT_PASS, common_pb2.VERDICT_PASS)
    assert third.verdict == common_pb2.VERDICT_LOW_CONSISTENCY
    assert response.thresholds.reference_consistency == pytest.approx(0.99)
    # Without them, the frame's self consistency (to frame 1) judges, as before.
    plain = validator.score(frames=images(mira, fox, png(23)),
                            thresholds=common_pb2.Thresholds(consistency=-1, alignment=-1, repetition=1))  # fmt: skip
    assert all(score.verdict == common_pb2.VERDICT_PASS and not score.characters for score in plain.scores)


def test_a_characters_pictures_named_by_digest_are_the_ones_sent_before(validator: Validator) -> None:
    mira = png(24)
    validator.score(frames=images(png(25)), characters=[_character("mira_girl", [mira], [0])])
    named = validator_pb2.CharacterFrames(
        character=common_pb2.CharacterPictures(trigger_token="mira_girl", pictures=by_digest(mira)), frames=[0]
    )
    response = validator.score(frames=images(mira), characters=[named])
    assert response.scores[0].characters[0].consistency == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("characters", "field"),
    [
        ([_character("", [png(1)], [0])], "characters[0].character.trigger_token"),
        ([_character("a", [], [0])], "characters[0].character.pictures"),
        ([_character("a", [png(1)], [3])], "characters[0].frames"),
        ([_character("a", [png(1)], [0]), _character("a", [png(2)], [0])], "characters[1].character.trigger_token"),
    ],
)
def test_bad_characters_are_invalid_argument_naming_the_field(validator: Validator, characters, field) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        validator.score(frames=images(png(1)), characters=characters)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field)
