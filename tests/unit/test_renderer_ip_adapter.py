"""The diffusers backend with an IP-Adapter: a tiny random one (``tests/support/tiny_ip_adapter.py``) for the tiny SDXL,
loaded by ``--ip-adapter`` through diffusers' real ``load_ip_adapter``, on in-process servers. Frames are conditioned
on their characters' reference pictures; frames without pictures stay exactly as without the adapter. CPU, 64x64."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from PIL import Image

from services.renderer.__main__ import main
from services.renderer.backend import CharacterReference, ReferencePicture
from services.renderer.backends import create_backend
from services.renderer.ip_adapter import WEIGHTS_FILE, frame_scale
from services.renderer.server import create_server
from services.renderer.settings import RendererSettings
from storyboard.v1 import common_pb2
from tests.support.tiny_ip_adapter import TinyIpAdapter, build_tiny_ip_adapter
from tests.support.tiny_sdxl import TinySdxl, build_tiny_sdxl, write_diffusers_lora
from tests.unit.test_renderer_diffusers import (
    BATCH_TOLERANCE,
    Served,
    eventually,
    frames_of,
    info,
    largest_difference,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread, as there)
    png,
    render,
    request,
    rpc_error,
    sample,
    serving,
    settings_for,
    spec,
)


@dataclass(frozen=True)
class Assets:
    model: TinySdxl
    ip_adapter: TinyIpAdapter
    not_an_ip_adapter: Path  # the right files, but the weights are a LoRA
    adapters: Path  # one LoRA, hero.safetensors


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("ip_adapter")
    model = build_tiny_sdxl(root / "sdxl")
    ip_adapter = build_tiny_ip_adapter(model, root / "ip-adapter")
    wrong = build_tiny_ip_adapter(model, root / "not-an-ip-adapter").folder
    write_diffusers_lora(model, wrong / WEIGHTS_FILE, seed=1)
    adapters = root / "adapters"
    write_diffusers_lora(model, adapters / "hero.safetensors", seed=2)
    return Assets(model, ip_adapter, wrong, adapters)


def ip_settings(assets: Assets, **fields) -> RendererSettings:  # type: ignore[no-untyped-def]
    """test_renderer_diffusers.py's settings, with the IP-Adapter."""
    return settings_for(assets, **{"ip_adapter": assets.ip_adapter.folder, **fields})


@pytest.fixture(scope="module")
def served(assets: Assets) -> Iterator[Served]:
    with serving(ip_settings(assets)) as s:
        yield s


@pytest.fixture(scope="module")
def plain(assets: Assets) -> Iterator[Served]:
    """The same renderer without an IP-Adapter."""
    with serving(ip_settings(assets, ip_adapter=None)) as s:
        yield s


def picture(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> common_pb2.Image:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return common_pb2.Image(data=buffer.getvalue(), mime_type="image/png")


RED, BLUE, GREEN = picture((200, 20, 20)), picture((20, 20, 200)), picture((20, 160, 20))


def character(token: str, *pictures: common_pb2.Image, scale: float = 0.0) -> common_pb2.CharacterPictures:
    return common_pb2.CharacterPictures(trigger_token=token, pictures=list(pictures), scale=scale)


# --- conditioning -----------------------------------------------------------------------------------------------------


def test_info_says_an_ip_adapter_is_loaded(served, plain):
    assert info(served.channel).ip_adapter
    assert not info(plain.channel).ip_adapter


def test_reference_pictures_change_the_frame_and_each_picture_its_own_way(served):
    without = png(served.channel, spec())[0]
    red = png(served.channel, spec(references=[character("hero", RED)]))[0]
    blue = png(served.channel, spec(references=[character("hero", BLUE)]))[0]
    assert largest_difference(red, without) > 10
    assert largest_difference(red, blue) > 10


def test_the_same_request_with_references_gives_the_same_bytes(served):
    frames = (spec(1, references=[character("hero", RED, BLUE)]), spec(2, references=[character("hero", RED, BLUE)]))
    assert png(served.channel, *frames) == png(served.channel, *frames)


def test_a_frame_without_references_equals_the_frame_of_a_renderer_without_ip_adapter(served, plain):
    assert png(served.channel, spec()) == png(plain.channel, spec())


def test_without_ip_adapter_references_are_ignored_even_undecodable_ones(plain):
    broken = common_pb2.Image(data=b"not a picture", mime_type="image/png")
    assert png(plain.channel, spec(references=[character("hero", broken)])) == png(plain.channel, spec())


def test_scale_matters_and_zero_is_the_default_scale(served, assets):
    default = ip_settings(assets).ip_adapter_scale
    at_zero = png(served.channel, spec(references=[character("hero", RED)]))[0]
    assert png(served.channel, spec(references=[character("hero", RED, scale=default)]))[0] == at_zero
    assert largest_difference(png(served.channel, spec(references=[character("hero", RED, scale=1.0)]))[0], at_zero)


def test_every_character_of_a_frame_conditions_it(served):
    hero = png(served.channel, spec(references=[character("hero", RED)]))[0]
    both = png(served.channel, spec(references=[character("hero", RED), character("villain", BLUE)]))[0]
    assert largest_difference(both, hero) > 0


def test_a_lora_and_reference_pictures_apply_together(served):
    hero = [common_pb2.AdapterRef(name="hero", weight=1.0)]
    lora = png(served.channel, spec(adapters=hero))[0]
    pictures = png(served.channel, spec(references=[character("hero", RED)]))[0]
    both = png(served.channel, spec(adapters=hero, references=[character("hero", RED)]))[0]
    assert largest_difference(both, lora) > 0
    assert largest_difference(both, pictures) > 0


def test_a_frame_scale_is_the_mean_of_its_characters_scales():
    def reference(scale: float) -> CharacterReference:
        return CharacterReference("x", (ReferencePicture("d", Image.new("RGB", (1, 1))),), scale)

    assert frame_scale((), 0.6) == 0.0
    assert frame_scale((reference(0.0),), 0.6) == 0.6
    assert frame_scale((reference(0.2), reference(0.0)), 0.6) == pytest.approx(0.4)


# --- batching ---------------------------------------------------------------------------------------------------------


def test_frames_with_different_references_are_never_batched_together(served):
    with_red, with_blue = [character("hero", RED)], [character("hero", BLUE)]
    frames = [spec(1, references=with_red), spec(2, references=with_blue), spec(3, references=with_red), spec(4)]
    batches_before = sample(served.metrics, "storyboard_renderer_batch_size_count")
    sizes_before = sample(served.metrics, "storyboard_renderer_batch_size_sum")
    together = {done.frame: done.image.data for done in frames_of(render(served.channel, request(*frames)))}
    assert sample(served.metrics, "storyboard_renderer_batch_size_count") == batches_before + 3  # red, blue, none
    assert sample(served.metrics, "storyboard_renderer_batch_size_sum") == sizes_before + 4
    for frame in frames:  # frames come as they finish: red's two first, then blue's, then the one without
        assert largest_difference(together[frame.frame], png(served.channel, frame)[0]) <= BATCH_TOLERANCE


# --- bad input and bad settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "field"),
    [
        (character("hero", RED, common_pb2.Image(data=b"not a picture")), "frames[0].references[0].pictures[1]"),
        (character("hero", common_pb2.Image()), "frames[0].references[0].pictures[0]"),
        (character("hero", RED, scale=1.5), "frames[0].references[0].scale"),
        (character("hero", *[GREEN] * 9), "frames[0].references[0].pictures"),
    ],
)
def test_bad_references_are_invalid_argument_naming_the_field(served, reference, field):
    error = rpc_error(lambda: render(served.channel, request(spec(references=[reference]))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()


def test_a_missing_or_incomplete_ip_adapter_folder_fails_fast_naming_the_flag(capsys, assets, tmp_path):
    base = ["--backend", "diffusers", "--base-model", assets.model.base_model]
    for folder, problem in (
        (tmp_path / "nowhere", "is not an existing folder"),
        (tmp_path, "not an IP-Adapter folder (no ip-adapter.safetensors nor image_encoder/config.json in it)"),
    ):
        with pytest.raises(SystemExit) as exited:
            main([*base, "--ip-adapter", str(folder)])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "--ip-adapter" in err and problem in err


def test_a_folder_whose_weights_are_not_an_ip_adapter_never_becomes_ready(assets):
    settings = ip_settings(assets, ip_adapter=assets.not_an_ip_adapter)
    server, _port = create_server(settings, create_backend(settings))
    server.start()
    try:
        eventually(lambda: "--ip-adapter" in server.not_ready_reason, "loading the IP-Adapter fails")
        assert f"cannot load --ip-adapter {assets.not_an_ip_adapter}" in server.not_ready_reason
    finally:
        server.stop(0)
