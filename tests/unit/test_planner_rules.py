"""The rule checker on hand-written plans: what each rule catches, what it lets through, how it fixes, and when it
refuses. Also the word-level pieces it rests on: whole-phrase matching and clothing/appearance stripping."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from services.planner.banned import banned_words, strip_banned
from services.planner.characters import CharacterRegistry
from services.planner.drafts import PlanDraft, SceneDraft
from services.planner.lexicon import BACK_VIEW_PHRASES
from services.planner.rules import check_plan, enforce_rules
from services.planner.shots import canonical_shot
from services.planner.story import StoryFacts, analyse_story
from services.planner.text import find_phrases, has_phrase
from storyboard_common.errors import FailedPrecondition

REGISTRY = CharacterRegistry.load(Path(__file__).parents[2] / "examples" / "characters.toml")
STORY = "Aldar Kose rides his brown horse across the steppe to his yurt at sunset."


def facts(story: str = STORY) -> StoryFacts:
    return analyse_story(story, REGISTRY.mentioned_in(story), [])


def scene(
    description: str, camera: str, setting: str = "steppe", characters: tuple[str, ...] = ("aldar_kose_man",)
) -> SceneDraft:
    return SceneDraft(description, camera, "adventurous", setting, "golden hour", list(characters))


def good_draft() -> PlanDraft:
    return PlanDraft(
        [
            scene("aldar_kose_man standing beside his brown horse with steppe background, front-facing", "medium shot"),
            scene("aldar_kose_man riding the brown horse across the vast steppe", "wide shot"),
            scene("aldar_kose_man's determined face in the wind", "close-up"),
            scene("aldar_kose_man's view of the yurt on the horizon", "POV shot"),
            scene("aldar_kose_man and the brown horse arriving at the yurt", "medium wide shot", "yurt"),
            scene("aldar_kose_man entering the yurt", "full shot", "yurt"),
        ]
    )


def rules_broken(draft: PlanDraft, num_frames: int | None = None) -> set[str]:
    return {violation.rule for violation in check_plan(draft, facts(), num_frames)}


def test_a_good_plan_breaks_nothing_and_is_left_alone() -> None:
    draft = good_draft()
    assert check_plan(draft, facts(), 6) == []
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes == draft.scenes and fixed.warnings == []


@pytest.mark.parametrize(
    "text",
    ["with steppe background", "against a mountain backdrop", "rides back home", "the backyard", "comes back"],
)
def test_background_and_backdrop_are_not_back_views(text: str) -> None:
    assert find_phrases(text, BACK_VIEW_PHRASES) == []


@pytest.mark.parametrize(
    "text", ["seen from behind", "a rear view", "with his back to the camera", "walking away from the camera"]
)
def test_back_views_are_found(text: str) -> None:
    assert find_phrases(text, BACK_VIEW_PHRASES)


def test_frame_one_must_be_a_front_facing_reference_with_key_elements() -> None:
    draft = good_draft()
    draft.scenes[0] = scene("the steppe at sunset seen from behind aldar_kose_man", "POV shot")
    broken = check_plan(draft, facts(), 6)
    messages = " ".join(str(v) for v in broken if v.rule == "reference")
    assert "back view" in messages and "front-facing" in messages and "POV" in messages and "brown horse" in messages
    fixed = enforce_rules(draft, facts(), 6)
    first = fixed.scenes[0]
    assert has_phrase(first.description, "facing the camera") and has_phrase(first.description, "brown horse")
    assert not find_phrases(first.description, BACK_VIEW_PHRASES)
    assert canonical_shot(first.camera) == "medium shot"
    assert any(w.startswith("frame 1:") for w in fixed.warnings)


def test_frame_one_must_show_the_main_character() -> None:
    draft = good_draft()
    draft.scenes[0] = scene("a brown horse grazing on the steppe, facing the camera", "medium shot")
    assert "reference" in rules_broken(draft)
    assert enforce_rules(draft, facts(), 6).scenes[0].description.startswith("aldar_kose_man")


def test_frame_count() -> None:
    draft = good_draft()
    assert "count" in rules_broken(draft, 8)
    with pytest.raises(FailedPrecondition, match="6 frames; exactly 8"):
        enforce_rules(draft, facts(), 8)
    short = PlanDraft(draft.scenes[:3])
    with pytest.raises(FailedPrecondition, match="3 frames"):
        enforce_rules(short, facts(), None)
    long = PlanDraft([*copy.deepcopy(draft.scenes), *copy.deepcopy(draft.scenes)])
    for index, extra in enumerate(long.scenes[6:]):
        extra.description = f"aldar_kose_man resting in the yurt, moment {index}"
        extra.setting = "yurt"
    trimmed = enforce_rules(long, facts(), None)
    assert len(trimmed.scenes) == 10 and trimmed.scenes[0] == draft.scenes[0]
    assert any("12 frames" in warning for warning in trimmed.warnings)


def test_clothing_and_appearance_are_stripped_from_every_field() -> None:
    draft = good_draft()
    draft.scenes[1].description = "aldar_kose_man in a colorful chapan riding the brown horse across the vast steppe"
    draft.scenes[2].description = "aldar_kose_man's determined face, long beard blowing in the wind"
    draft.scenes[3].mood = "hopeful, wearing his best hat"
    assert "banned" in rules_broken(draft)
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes[1].description == "aldar_kose_man riding the brown horse across the vast steppe"
    for item in fixed.scenes:
        assert banned_words(f"{item.description} {item.mood}", ["aldar_kose_man"]) == []
    assert sum("removed clothing/appearance" in w for w in fixed.warnings) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a tall, handsome merchant sells a pot", "a merchant sells a pot"),
        ("tall grass sways in the wind", "tall grass sways in the wind"),
        ("the red-haired girl dances", "the girl dances"),
        ("Mira, wearing a red cloak and leather boots, walks", "Mira walks"),
        ("his eyes widen in surprise", "his eyes widen in surprise"),
        ("a girl with blue eyes looks at the sea", "a girl looks at the sea"),
        ("he was tall and kind", "he was kind"),
        ("a knight in shining armor rides", "a knight rides"),
    ],
)
def test_stripping_keeps_the_sentence(text: str, expected: str) -> None:
    assert strip_banned(text, ["mira"]) == expected


def test_descriptors_stay_the_same() -> None:
    draft = good_draft()
    draft.scenes[1].description = "aldar_kose_man riding the white horse across the vast steppe"
    draft.scenes[4].description = "aldar_kose_man and the horse arriving at the yurt"
    broken = [str(v) for v in check_plan(draft, facts(), 6) if v.rule == "descriptor"]
    assert len(broken) == 2 and all("brown horse" in message for message in broken)
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes[1].description == "aldar_kose_man riding the brown horse across the vast steppe"
    assert fixed.scenes[4].description == "aldar_kose_man and the brown horse arriving at the yurt"


def test_a_descriptor_the_plan_uses_the_same_way_every_time_is_kept_when_the_story_gives_none() -> None:
    story = "Aldar Kose rides his horse across the steppe to his yurt at sunset."
    draft = good_draft()  # "brown horse" in frames 1, 2 and 5, the same way each time
    assert check_plan(draft, facts(story), 6) == []
    fixed = enforce_rules(draft, facts(story), 6)
    assert fixed.scenes == draft.scenes and fixed.warnings == []


def test_a_descriptor_the_plan_mostly_uses_is_the_one_unified_to_and_the_warning_names_only_frames_changed() -> None:
    story = "Aldar Kose rides his horse across the steppe to his yurt at sunset."
    draft = good_draft()
    draft.scenes[4].description = "aldar_kose_man and the horse arriving at the yurt"
    fixed = enforce_rules(draft, facts(story), 6)
    assert fixed.scenes[4].description == "aldar_kose_man and the brown horse arriving at the yurt"
    assert fixed.scenes[1].description == draft.scenes[1].description
    assert fixed.warnings == ["frame 5: called the brown horse by other descriptors; unified to 'brown horse'"]


def test_descriptors_a_plan_invents_are_held_too() -> None:
    draft = good_draft()
    draft.scenes[2].description = "aldar_kose_man's determined face, a small fire beside him"
    draft.scenes[3].description = "aldar_kose_man's view of the fire and the yurt on the horizon"
    assert "descriptor" in rules_broken(draft)
    fixed = enforce_rules(draft, facts(), 6)
    assert has_phrase(fixed.scenes[3].description, "small fire")


def test_names_become_trigger_tokens_without_a_warning() -> None:
    draft = good_draft()
    draft.scenes[2].description = "Aldar Kose's determined face in the wind"
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes[2].description == "aldar_kose_man's determined face in the wind"
    assert fixed.warnings == []


def test_setting_changes_only_where_the_story_moves() -> None:
    draft = good_draft()
    draft.scenes[2].setting = "dense jungle"
    assert "setting" in rules_broken(draft)
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes[2].setting == "steppe"
    assert any("dense jungle" in warning for warning in fixed.warnings)
    moving = good_draft()
    moving.scenes[5].setting = "lake"
    moving.scenes[5].description = "aldar_kose_man rides on to the lake"  # the frame itself moves there
    assert "setting" not in rules_broken(moving)


def test_every_frame_names_its_setting() -> None:
    draft = good_draft()
    draft.scenes[3].setting = ""
    assert "fields" in rules_broken(draft)
    assert enforce_rules(draft, facts(), 6).scenes[3].setting == "steppe"


def test_repeated_neighbours_and_too_few_shot_types() -> None:
    draft = good_draft()
    draft.scenes[2] = copy.deepcopy(draft.scenes[1])
    assert "repetition" in rules_broken(draft)
    fixed = enforce_rules(draft, facts(), 6)
    assert canonical_shot(fixed.scenes[2].camera) != canonical_shot(fixed.scenes[1].camera)

    same = good_draft()
    for item in same.scenes:
        item.camera = "medium shot"
    same.scenes[1].camera = "wide shot"
    assert "variety" in rules_broken(same)
    varied = enforce_rules(same, facts(), 6)
    assert len({canonical_shot(item.camera) for item in varied.scenes}) >= 3
    assert canonical_shot(varied.scenes[0].camera) == "medium shot"


def test_frames_list_the_characters_they_show() -> None:
    draft = good_draft()
    draft.scenes[3].characters = []
    draft.scenes[4].characters = ["someone_else"]
    assert "characters" in rules_broken(draft)
    fixed = enforce_rules(draft, facts(), 6)
    assert fixed.scenes[3].characters == ["aldar_kose_man"]
    assert fixed.scenes[4].characters == ["aldar_kose_man"]


def test_an_empty_description_cannot_be_fixed() -> None:
    draft = good_draft()
    draft.scenes[3].description = "   "
    with pytest.raises(FailedPrecondition, match="frame 4: the description is empty"):
        enforce_rules(draft, facts(), 6)


@pytest.mark.parametrize(
    ("camera", "shot"),
    [
        ("Wide establishing shot", "wide shot"),
        ("extreme close-up of the hands", "extreme close-up"),
        ("medium close up", "medium close-up"),
        ("POV", "POV shot"),
        ("over the shoulder", "over-the-shoulder shot"),
        ("Low angle, heroic", "low-angle shot"),
        ("dramatic", "dramatic"),
    ],
)
def test_shot_names(camera: str, shot: str) -> None:
    assert canonical_shot(camera) == shot
