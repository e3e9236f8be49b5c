"""The offline planner over stories it was never tuned on: every storyboard rule holds for every plan, and every
prompt fits CLIP's 77-token window with its trigger tokens present."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.stories import STORIES
from services.planner.banned import banned_words
from services.planner.characters import CharacterRegistry
from services.planner.clip_tokens import CLIP_WINDOW, shared_counter
from services.planner.lexicon import BACK_VIEW_PHRASES, FRONT_FACING_PHRASES
from services.planner.offline import OfflinePlanner
from services.planner.planning import StoryPlanner, StoryRequest, _OfflineBackend
from services.planner.prompts import PromptBuilder
from services.planner.rules import check_plan
from services.planner.shots import canonical_shot
from services.planner.story import analyse_story
from services.planner.text import find_phrases, has_phrase, phrase_pattern, similarity
from storyboard_common.errors import InvalidArgument

REGISTRY_TOML = """
[[characters]]
name = "Aldar Kose"
aliases = ["Aldar"]
trigger_token = "aldar_kose_man"
adapter = "aldar_kose"

[[characters]]
name = "Mira"
aliases = ["Mira the Brave"]
trigger_token = "mira_girl"
adapter = "mira"

[[characters]]
name = "Old Tomas"
aliases = ["Tomas"]
trigger_token = "tomas_fisher"
descriptors = ["weathered fisherman"]

[[characters]]
name = "Bolt"
trigger_token = "bolt_robot"
adapter = "bolt"
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> CharacterRegistry:
    path = tmp_path_factory.mktemp("registry") / "characters.toml"
    path.write_text(REGISTRY_TOML, encoding="utf-8")
    return CharacterRegistry.load(path)


@pytest.fixture(scope="module")
def planner(registry: CharacterRegistry) -> StoryPlanner:
    return StoryPlanner(_OfflineBackend(), registry, PromptBuilder(shared_counter()))


def test_the_stories_are_varied() -> None:
    assert len(STORIES) >= 15


@pytest.mark.parametrize("num_frames", [None, 6, 8, 10])
@pytest.mark.parametrize("story", STORIES, ids=[f"story{index:02d}" for index in range(len(STORIES))])
def test_offline_drafts_break_no_rule(registry: CharacterRegistry, story: str, num_frames: int | None) -> None:
    facts = analyse_story(story, registry.mentioned_in(story), [])
    draft = OfflinePlanner().draft(facts, num_frames)
    assert [str(v) for v in check_plan(draft, facts, num_frames)] == []


@pytest.mark.parametrize("num_frames", [None, 7, 10])
@pytest.mark.parametrize("story", STORIES, ids=[f"story{index:02d}" for index in range(len(STORIES))])
def test_every_rule_holds_on_the_finished_plan(
    planner: StoryPlanner, registry: CharacterRegistry, story: str, num_frames: int | None
) -> None:
    plan = planner.plan(StoryRequest(story, num_frames))
    counter = shared_counter()
    scenes = list(plan.scenes)

    assert 6 <= len(scenes) <= 10
    if num_frames is not None:
        assert len(scenes) == num_frames
    assert [scene.frame for scene in scenes] == list(range(1, len(scenes) + 1))
    mentioned = {c.trigger_token for c in registry.mentioned_in(story)}
    assert {c.trigger_token for c in plan.characters} == mentioned
    for scene in scenes:
        assert counter.count(scene.prompt) <= CLIP_WINDOW, scene.prompt
        for token in scene.trigger_tokens:
            assert mentions(scene.prompt, token) == 1, (token, scene.prompt)
        assert leading_triggers(scene.prompt, len(scene.trigger_tokens)) == set(scene.trigger_tokens), scene.prompt
        if mentioned:
            assert set(scene.trigger_tokens) & mentioned, scene
        assert scene.setting and scene.lighting and scene.mood and scene.camera and scene.description
        for text in (scene.description, scene.prompt, scene.setting):
            assert banned_words(text, ["knight", "mira_girl", "aldar_kose_man"]) == [], text
    first = scenes[0]
    if mentioned or plan.characters:
        assert find_phrases(f"{first.description} {first.camera}", FRONT_FACING_PHRASES)
    assert not find_phrases(f"{first.description} {first.camera}", BACK_VIEW_PHRASES)
    shots = [canonical_shot(scene.camera) for scene in scenes]
    assert len(set(shots)) >= 3
    for before, after in itertools.pairwise(scenes):
        same_shot = canonical_shot(before.camera) == canonical_shot(after.camera)
        assert not (same_shot and similarity(before.description, after.description) >= 0.8)
    assert plan.negative_prompt and counter.count(plan.negative_prompt) <= CLIP_WINDOW
    assert plan.planner == "offline"


def test_each_prompt_of_the_aldar_kose_story_leads_with_its_trigger_once(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest("Aldar Kose tricks a wealthy merchant by selling him a magical pot"))
    for scene in plan.scenes:
        assert scene.trigger_tokens == ["aldar_kose_man"]
        assert scene.prompt.startswith("aldar_kose_man") and mentions(scene.prompt, "aldar_kose_man") == 1, scene
    seen_from_afar = [scene for scene in plan.scenes if "small in the distance" in scene.description]
    assert seen_from_afar and seen_from_afar[0].prompt.startswith("aldar_kose_man small in the distance, ")
    assert "aldar_kose_man small in the distance" in seen_from_afar[0].description  # the plan keeps its wording


def mentions(text: str, token: str) -> int:
    return len(phrase_pattern(token).findall(text))


def leading_triggers(prompt: str, count: int) -> set[str]:
    """The trigger tokens (one-word ones, as these tests' are) that start the prompt's first ``count`` clauses."""
    return {clause.split()[0].removesuffix("'s") for clause in prompt.split(", ")[:count]}


def test_the_plan_is_deterministic(planner: StoryPlanner) -> None:
    first = planner.plan(StoryRequest(STORIES[5], 8))
    second = planner.plan(StoryRequest(STORIES[5], 8))
    assert first == second


def test_count_is_chosen_from_the_story(planner: StoryPlanner) -> None:
    short = planner.plan(StoryRequest("Mira smiles."))
    long = planner.plan(StoryRequest(STORIES[10]))
    assert len(short.scenes) == 6
    assert len(long.scenes) == 10
    assert any("beats" in warning for warning in long.warnings)  # the long story was condensed, and says so


def test_frame_one_is_a_reference_shot_with_the_key_elements(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest("Aldar Kose tricks a wealthy merchant by selling him a magical pot", 8))
    first = plan.scenes[0]
    assert first.description.startswith("aldar_kose_man")
    assert "wealthy merchant" in first.description and "magical pot" in first.description
    assert "facing the camera" in first.description
    assert canonical_shot(first.camera) == "medium shot"


def test_journeys_change_setting_where_the_story_moves(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest(STORIES[0], 8))
    settings = [scene.setting for scene in plan.scenes]
    assert settings[0] == "steppe" and settings[-1] == "yurt"
    assert settings.index("yurt") == len(settings) - 1  # it changes once, at the arrival
    assert all(scene.lighting == "golden hour lighting" for scene in plan.scenes)


def test_recurring_things_keep_one_descriptor(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest(STORIES[19], 10))
    for scene in plan.scenes:
        if has_phrase(scene.description, "horse"):
            assert has_phrase(scene.description, "brown horse"), scene.description
    keeper = planner.plan(StoryRequest(STORIES[23], 8))
    assert all(has_phrase(scene.description, "lonely lighthouse keeper") for scene in keeper.scenes)


def test_a_story_without_words_is_invalid(planner: StoryPlanner) -> None:
    with pytest.raises(InvalidArgument, match="story"):
        planner.plan(StoryRequest("🐎 🏕️ !!! 123"))


def test_clothing_and_appearance_never_reach_a_prompt(planner: StoryPlanner) -> None:
    for story in (STORIES[8], STORIES[9]):
        plan = planner.plan(StoryRequest(story, 8))
        text = " ".join(scene.description + " " + scene.prompt for scene in plan.scenes).lower()
        for word in ("cloak", "boots", "wearing", "beard", "tall", "handsome"):
            assert not has_phrase(text, word), word
        assert "knight" in text or "mira_girl" in text  # the people stay, only the clothes go


def test_several_characters_each_get_their_trigger(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest(STORIES[7], 9))
    assert [c.trigger_token for c in plan.characters] == ["aldar_kose_man", "mira_girl", "tomas_fisher"]
    shown = {token for scene in plan.scenes for token in scene.trigger_tokens}
    assert shown == {"aldar_kose_man", "mira_girl", "tomas_fisher"}
    assert plan.characters[0].adapter == "aldar_kose"


def test_requested_characters_replace_the_story_subject(planner: StoryPlanner) -> None:
    plan = planner.plan(
        StoryRequest("A clever trickster rides to the market and sells a pot.", 6, characters=("Aldar",))
    )
    assert [c.name for c in plan.characters] == ["Aldar Kose"]
    assert all("aldar_kose_man" in scene.trigger_tokens for scene in plan.scenes)
    assert all(scene.prompt.startswith("aldar_kose_man") or "aldar_kose_man" in scene.prompt for scene in plan.scenes)


def test_without_a_registry_the_first_subject_is_the_main_character() -> None:
    planner = StoryPlanner(_OfflineBackend(), CharacterRegistry(), PromptBuilder(shared_counter()))
    plan = planner.plan(StoryRequest(STORIES[0], 6))
    assert not plan.characters
    assert all(not scene.trigger_tokens for scene in plan.scenes)
    assert plan.scenes[0].description.startswith("Aldar Kose")


def test_a_story_without_a_place_gets_one_and_a_warning(planner: StoryPlanner) -> None:
    plan = planner.plan(StoryRequest(STORIES[14], 6))
    assert any("names no place" in warning for warning in plan.warnings)
    assert all(scene.setting for scene in plan.scenes)


def test_example_registry_has_aldar_kose() -> None:
    registry = CharacterRegistry.load(Path(__file__).parents[2] / "examples" / "characters.toml")
    character = registry.find("aldar")
    assert character is not None
    assert (character.name, character.trigger_token, character.adapter) == (
        "Aldar Kose",
        "aldar_kose_man",
        "aldar_kose",
    )
