"""The Planner gRPC service in-process on port 0, over a real channel: plans, status codes for every bad input,
health, settings, the character registry file and the spec's output files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from pydantic import ValidationError

from gateway.outputs import SCENE_BREAKDOWN, SDXL_PROMPTS, write_plan_files
from services.planner.__main__ import main
from services.planner.characters import CharacterRegistry
from services.planner.planning import plan_story
from services.planner.server import create_server
from services.planner.settings import PlannerSettings
from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument, NotFound
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc

EXAMPLE_REGISTRY = Path(__file__).parents[2] / "examples" / "characters.toml"
STORY = "Aldar Kose riding his horse across the steppe to his yurt at sunset"


@pytest.fixture(autouse=True)
def _no_ambient_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment: tests start from a clean one."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name in [n for n in __import__("os").environ if n.startswith("STORYBOARD_PLANNER_")]:
        monkeypatch.delenv(name)


def _serve(settings: PlannerSettings) -> Iterator[grpc.Channel]:
    server, port = create_server(settings)
    server.start()
    assert server.ready.wait(30), server.not_ready_reason
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0)


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    yield from _serve(PlannerSettings(port=0, characters_file=EXAMPLE_REGISTRY))


@pytest.fixture
def stub(channel: grpc.Channel) -> planner_pb2_grpc.PlannerStub:
    return planner_pb2_grpc.PlannerStub(channel)


def _plan(stub: planner_pb2_grpc.PlannerStub, story: str = STORY, **options: object) -> planner_pb2.PlanResponse:
    characters = options.pop("characters", [])
    request = planner_pb2.PlanRequest(story=story, options=planner_pb2.PlanOptions(characters=characters, **options))
    return stub.Plan(request, timeout=30)


def test_plan_over_grpc(stub: planner_pb2_grpc.PlannerStub) -> None:
    plan = _plan(stub, num_frames=8).plan
    assert plan.planner == "offline"
    assert plan.story == STORY
    assert len(plan.scenes) == 8
    assert [c.trigger_token for c in plan.characters] == ["aldar_kose_man"]
    assert plan.characters[0].adapter == "aldar_kose"
    first = plan.scenes[0]
    assert first.frame == 1 and "facing the camera" in first.description
    assert all(scene.prompt.startswith("aldar_kose_man") for scene in plan.scenes)
    assert all(list(scene.trigger_tokens) == ["aldar_kose_man"] for scene in plan.scenes)
    assert plan.negative_prompt


def test_health_is_serving_after_warm_up(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(service="storyboard.v1.Planner"), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("story", "options", "field"),
    [
        ("", {}, "story"),
        ("   \n\t ", {}, "story"),
        ("x" * 4001, {}, "story"),
        ("a story with a bell \x07 in it", {}, "story"),
        (STORY, {"num_frames": 0}, "options.num_frames"),
        (STORY, {"num_frames": 5}, "options.num_frames"),
        (STORY, {"num_frames": 11}, "options.num_frames"),
        (STORY, {"num_frames": -3}, "options.num_frames"),
        (STORY, {"temperature": -0.1}, "options.temperature"),
        (STORY, {"temperature": 1.5}, "options.temperature"),
        (STORY, {"temperature": float("nan")}, "options.temperature"),
        (STORY, {"seed": -1}, "options.seed"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    stub: planner_pb2_grpc.PlannerStub, story: str, options: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _plan(stub, story, **options)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:")


def test_edge_values_are_accepted(stub: planner_pb2_grpc.PlannerStub) -> None:
    assert len(_plan(stub, num_frames=6, temperature=0.0).plan.scenes) == 6
    assert len(_plan(stub, num_frames=10, temperature=1.0, seed=0).plan.scenes) == 10
    assert len(_plan(stub, "x " * 2000).plan.scenes) >= 6  # 4,000 characters is the limit, inclusive


def test_unknown_character_is_not_found(stub: planner_pb2_grpc.PlannerStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _plan(stub, characters=["Nobody"])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Nobody" in caught.value.details() and "Aldar Kose" in caught.value.details()


def test_requested_character_by_alias(stub: planner_pb2_grpc.PlannerStub) -> None:
    plan = _plan(stub, "A trickster walks to the bazaar and sells a pot.", characters=["aldar"]).plan
    assert [c.name for c in plan.characters] == ["Aldar Kose"]


def test_missing_api_key_is_failed_precondition_that_says_how_to_set_it() -> None:
    for channel in _serve(PlannerSettings(port=0, backend="openai")):
        stub = planner_pb2_grpc.PlannerStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            _plan(stub)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "OPENAI_API_KEY" in caught.value.details()
        assert "--backend offline" in caught.value.details()


def test_an_unusable_tokenizer_keeps_the_service_not_serving(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt.gz"
    vocab.write_bytes(b"not gzip at all")
    server, port = create_server(PlannerSettings(port=0, clip_vocab_file=vocab))
    server.start()
    try:
        assert server._warm_thread is not None
        server._warm_thread.join(30)
        assert not server.ready.is_set() and "CLIP vocabulary" in server.not_ready_reason
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as caught:
                _plan(planner_pb2_grpc.PlannerStub(channel))
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        server.stop(0)


# -- settings -------------------------------------------------------------------------------------------------------


def test_settings_defaults_and_backend_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = PlannerSettings()
    assert settings.port == 50052
    assert settings.backend == "offline"
    assert settings.openai_model.startswith("gpt-4")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert PlannerSettings().backend == "openai"
    assert PlannerSettings(backend="offline").backend == "offline"
    monkeypatch.delenv("OPENAI_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    from_file = PlannerSettings(openai_api_key_file=key_file)
    assert from_file.backend == "openai"
    assert from_file.read_api_key() == "sk-from-file"
    assert "sk-from-file" not in repr(from_file)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYBOARD_PLANNER_PORT", "6000")
    monkeypatch.setenv("STORYBOARD_PLANNER_CHARACTERS_FILE", str(EXAMPLE_REGISTRY))
    monkeypatch.setenv("STORYBOARD_PLANNER_OPENAI_MODEL", "gpt-4.1")
    settings = PlannerSettings()
    assert (settings.port, settings.characters_file, settings.openai_model) == (6000, EXAMPLE_REGISTRY, "gpt-4.1")


def test_a_configured_file_that_does_not_exist_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError):
        PlannerSettings(characters_file=tmp_path / "missing.toml")
    with pytest.raises(SystemExit) as exited:
        main(["--characters-file", str(tmp_path / "missing.toml")])
    assert exited.value.code == 2
    assert "--characters-file" in capsys.readouterr().err


# -- the character registry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not toml [", "cannot read"),
        ("title = 'no characters'", "[[characters]]"),
        ('[[characters]]\nname = "A"', "trigger_token"),
        ('[[characters]]\nname = "A"\ntrigger_token = "bad token!"', "trigger_token"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nadapter = "../escape"', "adapter"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\ndescriptors = ["man in a red hat"]', "clothing"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nreference_images = ["nope.png"]', "does not exist"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nreference_images = ["text.png"]', "not a picture"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nreference_images = ["a.gif"]', "is GIF, not PNG"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nunknown = 1', "unknown"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nadapter_weight = 0', "must not be 0"),
        ('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nreference_scale = 1.5', "reference_scale"),
        (
            '[[characters]]\nname = "A"\naliases = ["Al"]\ntrigger_token = "a_tok"\n'
            '[[characters]]\nname = "B"\naliases = ["al"]\ntrigger_token = "b_tok"',
            "belongs to both",
        ),
    ],
)
def test_a_bad_registry_is_refused_with_a_reason(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "text.png").write_text("not a picture")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.gif")
    path = tmp_path / "characters.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"characters\.toml") as caught:
        CharacterRegistry.load(path)
    assert problem in str(caught.value)


def test_registry_mentions_are_whole_words(tmp_path: Path) -> None:
    registry = CharacterRegistry.load(EXAMPLE_REGISTRY)
    assert [c.name for c in registry.mentioned_in("Then ALDAR laughed.")] == ["Aldar Kose"]
    assert registry.mentioned_in("Aldarov and Koseman met.") == []
    with pytest.raises(NotFound):
        registry.resolve(["Mira"])


def test_reference_images_resolve_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "refs" / "a.png")
    path = tmp_path / "characters.toml"
    path.write_text('[[characters]]\nname = "A"\ntrigger_token = "a_tok"\nreference_images = ["refs/a.png"]\n')
    (character,) = CharacterRegistry.load(path)
    assert character.reference_images == ((tmp_path / "refs" / "a.png").resolve(),)


# -- plan_story and the output files ---------------------------------------------------------------------------------


def test_plan_story_validates_like_the_service() -> None:
    with pytest.raises(InvalidArgument, match="num_frames"):
        plan_story(STORY, 12)
    with pytest.raises(InvalidArgument, match="story"):
        plan_story("  ")


def test_outputs_are_the_specs_files(tmp_path: Path) -> None:
    settings = PlannerSettings(characters_file=EXAMPLE_REGISTRY)
    plan = plan_story(STORY, 8, settings=settings)
    folder = tmp_path / "out" / "nested"
    assert write_plan_files(folder, plan) == [SCENE_BREAKDOWN, SDXL_PROMPTS]
    breakdown_path, prompts_path = folder / SCENE_BREAKDOWN, folder / SDXL_PROMPTS
    assert sorted(p.name for p in folder.iterdir()) == [SCENE_BREAKDOWN, SDXL_PROMPTS]  # no temporary files left
    breakdown = json.loads(breakdown_path.read_text())
    assert breakdown["story"] == STORY and breakdown["num_frames"] == 8 and breakdown["timestamp"]
    assert [scene["frame"] for scene in breakdown["scenes"]] == list(range(1, 9))
    assert {"frame", "description", "camera", "mood"} <= set(breakdown["scenes"][0])
    assert breakdown["planner"] == "offline" and breakdown["characters"][0]["trigger_token"] == "aldar_kose_man"
    prompts = json.loads(prompts_path.read_text())
    assert prompts == [scene.prompt for scene in plan.scenes]
    write_plan_files(folder, plan)  # overwriting in place works too
    assert json.loads(prompts_path.read_text()) == prompts


def test_list_characters_returns_the_registry_with_aliases() -> None:
    server, port = create_server(PlannerSettings(port=0, characters_file=EXAMPLE_REGISTRY))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = planner_pb2_grpc.PlannerStub(channel).ListCharacters(
                planner_pb2.ListCharactersRequest(), timeout=10
            )
    finally:
        server.stop(0)
    (aldar,) = [c for c in response.characters if c.name == "Aldar Kose"]
    assert aldar.trigger_token == "aldar_kose_man" and "Aldar" in aldar.aliases


def test_a_characters_reference_pictures_are_counted_and_sent_one_by_one(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), "red").save(tmp_path / "front.png")
    Image.new("RGB", (20, 50), "blue").save(tmp_path / "side.jpg")
    path = tmp_path / "characters.toml"
    path.write_text('[[characters]]\nname = "Mira"\ntrigger_token = "mira_girl"\n'
                    'reference_images = ["front.png", "side.jpg"]\n')  # fmt: skip
    for channel in _serve(PlannerSettings(port=0, characters_file=path)):
        stub = planner_pb2_grpc.PlannerStub(channel)
        (mira,) = stub.ListCharacters(planner_pb2.ListCharactersRequest(), timeout=10).characters
        pictures = [
            stub.ReferenceImage(planner_pb2.ReferenceImageRequest(trigger_token="mira_girl", number=n), timeout=10)
            for n in (1, 2)
        ]
        with pytest.raises(grpc.RpcError) as beyond:
            stub.ReferenceImage(planner_pb2.ReferenceImageRequest(trigger_token="mira_girl", number=3), timeout=10)
        with pytest.raises(grpc.RpcError) as nobody:
            stub.ReferenceImage(planner_pb2.ReferenceImageRequest(trigger_token="nobody", number=1), timeout=10)
    assert (mira.reference_images, mira.adapter_weight, mira.reference_scale) == (2, 1.0, 0.0)
    first, second = (picture.image for picture in pictures)
    assert first.data == (tmp_path / "front.png").read_bytes() and first.mime_type == "image/png"
    assert (first.width, first.height, second.mime_type, second.width) == (40, 30, "image/jpeg", 20)
    assert beyond.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no reference picture 3 (it has 2)" in beyond.value.details()
    assert nobody.value.code() == grpc.StatusCode.NOT_FOUND and nobody.value.details().startswith("trigger_token")


# -- Review: a plan written elsewhere --------------------------------------------------------------------------------


def _planned(stub: planner_pb2_grpc.PlannerStub) -> common_pb2.Plan:
    return _plan(stub, num_frames=8).plan


def test_review_of_an_untouched_plan_changes_nothing_and_warns_of_nothing(stub) -> None:
    planned = _planned(stub)
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=planned)).plan
    assert list(reviewed.scenes) == list(planned.scenes)
    assert list(reviewed.warnings) == list(planned.warnings)
    assert reviewed.characters == planned.characters and reviewed.negative_prompt == planned.negative_prompt


def test_review_keeps_an_edited_description_and_a_given_prompt_and_says_the_prompt_is_not_the_scenes(stub) -> None:
    plan = _planned(stub)
    plan.scenes[2].description = "aldar_kose_man waters his horse at a frozen well"
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan
    assert reviewed.scenes[2].description == "aldar_kose_man waters his horse at a frozen well"
    assert reviewed.scenes[2].prompt == plan.scenes[2].prompt  # rendered as given, never rewritten
    assert any(w.startswith("frame 3: its prompt is rendered as given") for w in reviewed.warnings)


def test_review_writes_an_empty_prompt_from_its_scene(stub) -> None:
    plan = _planned(stub)
    plan.scenes[2].description = "aldar_kose_man waters his horse at a frozen well"
    plan.scenes[2].prompt = ""
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan
    assert reviewed.scenes[2].prompt.startswith("aldar_kose_man waters his horse at a frozen well")
    assert not any(w.startswith("frame 3") for w in reviewed.warnings)


def test_review_reports_broken_rules_and_long_prompts_as_warnings_without_changing_the_words(stub) -> None:
    plan = _planned(stub)
    plan.scenes[1].description = "aldar_kose_man in a red silk robe rides on"
    plan.scenes[4].prompt = ", ".join(["aldar_kose_man rides a brown horse across the wide golden steppe"] * 8)
    plan.scenes[5].camera = ""
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan
    assert reviewed.scenes[1].description == "aldar_kose_man in a red silk robe rides on"
    assert reviewed.scenes[4].prompt == plan.scenes[4].prompt and reviewed.scenes[5].camera == ""
    warnings = "\n".join(reviewed.warnings)
    assert "frame 2: uses clothing or appearance words (robe" in warnings
    assert "frame 5: its prompt is " in warnings and "SDXL reads the first 77" in warnings
    assert "frame 6: the camera is empty" in warnings


def test_review_numbers_frames_in_order_and_fills_story_and_negative_prompt(stub) -> None:
    plan = _planned(stub)
    plan.story, plan.negative_prompt = "", ""
    for scene in plan.scenes:
        scene.frame = 0
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan
    assert [scene.frame for scene in reviewed.scenes] == list(range(1, 9))
    assert reviewed.story.startswith(plan.scenes[0].description) and reviewed.negative_prompt


@pytest.mark.parametrize(
    ("edit", "code", "field"),
    [
        (lambda plan: plan.scenes.pop(), grpc.StatusCode.OK, ""),  # 7 scenes: still a storyboard
        (lambda plan: [plan.scenes.pop() for _ in range(3)], grpc.StatusCode.INVALID_ARGUMENT, "plan.scenes:"),
        (
            lambda plan: setattr(plan.scenes[3], "description", "  "),
            grpc.StatusCode.INVALID_ARGUMENT,
            "plan.scenes[3].description: must not be empty",
        ),
        (
            lambda plan: setattr(plan.scenes[0], "mood", "x" * 1001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "plan.scenes[0].mood: is 1001 characters long",
        ),
        (
            lambda plan: plan.scenes[2].trigger_tokens.append("nobody_man"),
            grpc.StatusCode.NOT_FOUND,
            "plan.scenes[2].trigger_tokens[1]: no character has the trigger token 'nobody_man'",
        ),
    ],
)
def test_review_refuses_a_plan_that_cannot_be_drawn_naming_the_field(stub, edit, code, field) -> None:
    plan = _planned(stub)
    edit(plan)
    if code == grpc.StatusCode.OK:
        assert len(stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan.scenes) == 7
        return
    with pytest.raises(grpc.RpcError) as raised:
        stub.Review(planner_pb2.ReviewRequest(plan=plan))
    assert raised.value.code() == code and raised.value.details().startswith(field)


def test_review_checks_the_scenes_against_themselves_when_the_story_has_nothing_to_read(stub) -> None:
    plan = _planned(stub)
    plan.story = "1 2 3"
    reviewed = stub.Review(planner_pb2.ReviewRequest(plan=plan)).plan
    assert [s.prompt for s in reviewed.scenes] == [s.prompt for s in plan.scenes] and reviewed.story == "1 2 3"
    plan.scenes[0].description = "42 !"
    with pytest.raises(grpc.RpcError) as raised:
        stub.Review(planner_pb2.ReviewRequest(plan=plan))
    assert raised.value.details() == "plan.scenes[0].description: has no words to draw a frame from"


@pytest.mark.parametrize(
    ("story", "warned"),
    [
        ("Алдар Көсе едет на коне по степи к своей юрте на закате. Он встречает жадного бая.", True),
        ("Le renard traverse la rivière gelée à l'aube, trouve sa tanière sous un vieux chêne et s'endort.", True),
        ("A fox crosses a frozen river at dawn, finds its den under an old oak and falls asleep.", False),
        ("Aldar Kose tricks a wealthy merchant by selling him a magical pot", False),
    ],
)
def test_an_offline_plan_of_a_story_not_in_english_says_its_prompts_copy_the_words(story, warned) -> None:
    registry = Path(__file__).parents[2] / "tests" / "unit" / "cyrillic_characters.toml"
    plan = plan_story(story, 6, settings=PlannerSettings(characters_file=registry))
    said = any("does not read as English" in warning for warning in plan.warnings)
    assert said == warned, list(plan.warnings)
    if story.startswith("Алдар"):  # registry names match in any script
        assert all(scene.prompt.startswith("aldar_kose_man") for scene in plan.scenes)


def test_a_characters_adapter_weight_and_reference_scale_reach_the_plans_characters(tmp_path: Path) -> None:
    path = tmp_path / "characters.toml"
    path.write_text('[[characters]]\nname = "Mira"\ntrigger_token = "mira_girl"\nadapter = "mira"\n'
                    'adapter_weight = 0.75\nreference_scale = 0.4\n')  # fmt: skip
    for channel in _serve(PlannerSettings(port=0, characters_file=path)):
        plan = _plan(planner_pb2_grpc.PlannerStub(channel), story="Mira walks her dog along the river").plan
    (mira,) = plan.characters
    assert (mira.adapter, mira.adapter_weight, mira.reference_scale) == ("mira", 0.75, pytest.approx(0.4))
