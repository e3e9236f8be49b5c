"""Prompt refinement with exact CLIP token counting: the tokenizer SDXL uses, built offline from open_clip's
vocabulary; prompts kept within 77 tokens by dropping the lowest-priority tags first, never the trigger or action."""

from __future__ import annotations

from services.planner.characters import Character
from services.planner.clip_tokens import CLIP_WINDOW, bundled_vocab_path, shared_counter
from services.planner.drafts import SceneDraft
from services.planner.prompts import DEFAULT_QUALITY_TAGS, PromptBuilder, lead_with_triggers
from services.planner.text import has_phrase

ALDAR = Character("Aldar Kose", "aldar_kose_man", "aldar_kose", descriptors=("kazakh folk trickster",))
MIRA = Character("Mira", "mira_girl")


def scene(description: str, **fields: str) -> SceneDraft:
    return SceneDraft(
        description=description,
        camera=fields.get("camera", "wide shot"),
        mood=fields.get("mood", "adventurous"),
        setting=fields.get("setting", "vast steppe"),
        lighting=fields.get("lighting", "golden hour lighting"),
    )


def test_counts_match_the_clip_tokenizer() -> None:
    # Ids taken once from open_clip's own SimpleTokenizer (the same BPE vocabulary), BOS and EOS included.
    counter = shared_counter()
    spec_prompt = (
        "aldar_kose_man riding horse across vast steppe, wide establishing shot, golden hour lighting, "
        "high quality, detailed, 3D animation, professional render"
    )
    ids = counter.ids(spec_prompt)
    assert len(ids) == 35
    assert ids[:12] == [49406, 4539, 625, 318, 1313, 611, 318, 786, 6765, 4558, 2500, 16414]
    assert ids[-1] == 49407
    assert counter.ids("a photo") == [49406, 320, 1125, 49407]
    assert bundled_vocab_path() is not None


def test_a_short_prompt_keeps_every_part_in_order() -> None:
    builder = PromptBuilder(shared_counter())
    built = builder.build(scene("aldar_kose_man riding the brown horse"), [ALDAR])
    assert built.prompt == (
        "aldar_kose_man riding the brown horse, vast steppe, wide shot, golden hour lighting, adventurous mood, "
        "kazakh folk trickster, " + ", ".join(DEFAULT_QUALITY_TAGS)
    )
    assert built.warning == ""


def test_triggers_come_first_even_when_the_description_names_them_later() -> None:
    builder = PromptBuilder(shared_counter())
    built = builder.build(scene("the steppe seen from afar, mira_girl small in the distance"), [MIRA, ALDAR])
    assert built.prompt.startswith("aldar_kose_man, mira_girl small in the distance, the steppe seen from afar")
    assert built.prompt.count("mira_girl") == 1


def test_a_clause_that_starts_with_a_trigger_is_moved_to_the_front() -> None:
    action = "the busy bazaar seen from afar, aldar_kose_man small in the distance"
    assert lead_with_triggers(action, [ALDAR]) == "aldar_kose_man small in the distance, the busy bazaar seen from afar"


def test_a_later_mention_of_a_fronted_trigger_is_by_name() -> None:
    assert lead_with_triggers("the merchant greets aldar_kose_man at the gate", [ALDAR]) == (
        "aldar_kose_man, the merchant greets Aldar Kose at the gate"
    )
    assert lead_with_triggers("aldar_kose_man runs, aldar_kose_man laughs", [ALDAR]) == (
        "aldar_kose_man runs, Aldar Kose laughs"
    )


def test_a_possessive_mention_is_by_name_too() -> None:
    assert lead_with_triggers("the merchant grabs aldar_kose_man's magical pot", [ALDAR]) == (
        "aldar_kose_man, the merchant grabs Aldar Kose's magical pot"
    )


def test_two_characters_each_lead_once() -> None:
    action = "the yurt at dusk, mira_girl waves at aldar_kose_man, aldar_kose_man smiles at mira_girl"
    assert lead_with_triggers(action, [ALDAR, MIRA]) == (
        "mira_girl waves at Aldar Kose, aldar_kose_man smiles at Mira, the yurt at dusk"
    )
    assert lead_with_triggers("the merchant bows to mira_girl", [ALDAR, MIRA]) == (
        "aldar_kose_man, mira_girl, the merchant bows to Mira"
    )


def test_an_action_that_starts_with_its_trigger_is_untouched() -> None:
    for action in ["aldar_kose_man riding the brown horse, 1,000 coins in his bag", "aldar_kose_man's face, sly"]:
        assert lead_with_triggers(action, [ALDAR]) == action
        assert PromptBuilder(shared_counter()).build(scene(action), [ALDAR]).prompt.startswith(action)


def test_what_the_action_already_says_is_not_repeated() -> None:
    builder = PromptBuilder(shared_counter())
    built = builder.build(scene("aldar_kose_man riding across the vast steppe"), [ALDAR])
    assert built.prompt.count("vast steppe") == 1


def test_lowest_priority_tags_are_dropped_first() -> None:
    counter = shared_counter()
    builder = PromptBuilder(counter)
    action = (
        "aldar_kose_man leads the brown horse along the winding river past the old wooden mill while the "
        "villagers wave from the golden fields and laughing children chase the noisy geese across the muddy yard "
        "while an old shepherd plays his flute"
    )
    built = builder.build(scene(action, setting="green river valley", lighting="soft warm evening light"), [ALDAR])
    assert counter.count(built.prompt) <= CLIP_WINDOW
    assert built.prompt.startswith(action)
    everything = [action, "green river valley", "wide shot", "soft warm evening light", "adventurous mood"]
    assert counter.count(", ".join([*everything, "kazakh folk trickster", *DEFAULT_QUALITY_TAGS])) > CLIP_WINDOW
    assert "professional render" not in built.prompt  # the last quality tag goes first
    assert "green river valley" in built.prompt  # the setting outranks every tag
    kept = [tag for tag in DEFAULT_QUALITY_TAGS if tag in built.prompt]
    assert kept == list(DEFAULT_QUALITY_TAGS[: len(kept)])


def test_an_action_too_long_for_the_window_is_shortened_but_keeps_its_trigger() -> None:
    counter = shared_counter()
    builder = PromptBuilder(counter)
    action = "aldar_kose_man " + ", ".join(f"then he does thing number {n} near the old well" for n in range(12))
    built = builder.build(scene(action), [ALDAR, MIRA])
    assert counter.count(built.prompt) <= CLIP_WINDOW
    assert has_phrase(built.prompt, "aldar_kose_man") and has_phrase(built.prompt, "mira_girl")
    assert built.warning


def test_a_shortened_action_still_leads_with_each_trigger_once() -> None:
    counter = shared_counter()
    builder = PromptBuilder(counter)
    deeds = " and then ".join(f"does thing number {n} near the old well with mira_girl" for n in range(12))
    action = f"the old well at noon, aldar_kose_man {deeds}, mira_girl waves"
    built = builder.build(scene(action), [ALDAR, MIRA])
    assert counter.count(built.prompt) <= CLIP_WINDOW and built.warning
    assert built.prompt.startswith("mira_girl, aldar_kose_man does thing number 0 near the old well with Mira")
    assert built.prompt.count("aldar_kose_man") == built.prompt.count("mira_girl") == 1


def test_triggers_crowding_the_window_are_kept_whole_and_once() -> None:
    counter = shared_counter()
    crowd = [Character(f"Guest {n}", f"guest_{n}_of_the_long_named_wedding_party") for n in range(6)]
    action = "the wedding feast, " + " and ".join(f"{c.trigger_token} dances" for c in crowd)
    built = PromptBuilder(counter).build(scene(action), crowd)
    assert built.prompt.startswith(", ".join(c.trigger_token for c in crowd))
    assert all(built.prompt.count(c.trigger_token) == 1 for c in crowd)


def test_the_negative_prompt_fits_the_window() -> None:
    counter = shared_counter()
    long_negative = ", ".join(f"ugly thing {n}" for n in range(60))
    builder = PromptBuilder(counter, negative_prompt=long_negative)
    assert counter.count(builder.negative_prompt) <= CLIP_WINDOW
    assert builder.negative_prompt.startswith("ugly thing 0, ugly thing 1")


def test_prompts_carry_no_weighting_syntax() -> None:
    builder = PromptBuilder(shared_counter())
    built = builder.build(scene("aldar_kose_man (smiling:1.5) [laughing] <lora:x:1>"), [ALDAR])
    assert not any(char in built.prompt for char in "()[]<>")
