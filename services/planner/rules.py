"""The storyboard rules, checked on every plan whichever backend wrote it, and the deterministic fixes for them.

The rules (issue 3, made precise):

- **count**: 6-10 frames; exactly the requested number when one was requested.
- **reference**: frame 1 is a front-facing reference shot of the main character that shows the story's key
  elements. "Front-facing" and "back view" are matched as whole phrases: "background" or "backdrop" is no back view.
- **setting**: every frame names its setting; a frame's setting differs from the previous frame's only where the
  story moves (the new place is one the story names, or the frame's action moves there).
- **descriptor**: a recurring character or object keeps exactly one descriptor ("brown horse" never becomes
  "horse" or "white horse"); registered characters are always named by their trigger token.
- **banned**: no clothing, outfit, costume or physical-appearance words in any field.
- **repetition**: no two neighbouring frames with the same shot type and near-identical descriptions.
- **variety**: at least three distinct shot types in a plan of six or more frames.
- **characters**: every frame lists the registered characters it shows, and shows at least one when the story
  has any.

``check_plan`` lists violations (their messages double as feedback to a model); ``enforce_rules`` fixes what it can,
reports each fix in ``warnings``, and raises FailedPrecondition for what it cannot: never a silently wrong plan.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass

from services.planner.banned import banned_words, strip_banned
from services.planner.drafts import PlanDraft, SceneDraft
from services.planner.lexicon import (
    BACK_VIEW_PHRASES,
    DESCRIPTOR_ADJECTIVES,
    FRONT_FACING_PHRASES,
    GENERIC_NOUNS,
    LIGHTING,
    MOVEMENT_VERBS,
    NON_REFERENCE_SHOTS,
    PLACES,
    STOPWORDS,
)
from services.planner.shots import VARIETY_ORDER, alternative_shot, canonical_shot
from services.planner.story import Entity, StoryFacts
from services.planner.text import (
    content_words,
    find_phrases,
    has_phrase,
    is_word,
    join_tokens,
    remove_phrase,
    replace_phrase,
    similarity,
    tidy,
    tokenize,
    words,
)
from services.planner.verbs import is_verb_form
from storyboard_common.errors import FailedPrecondition
from storyboard_common.validation import MAX_FRAMES, MIN_FRAMES

NEAR_IDENTICAL = 0.8  # content-word overlap above which two descriptions say the same thing
MIN_SHOT_TYPES = 3
_FIELDS = ("description", "camera", "mood", "setting", "lighting")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, which frame (1-based; None for the whole plan) and what is wrong."""

    rule: str
    frame: int | None
    message: str

    def __str__(self) -> str:
        where = f"frame {self.frame}: " if self.frame else ""
        return f"{where}{self.message}"


# ---------------------------------------------------------------------------------------------------------------
# Checking


def check_plan(draft: PlanDraft, facts: StoryFacts, num_frames: int | None) -> list[Violation]:
    """Every rule ``draft`` breaks, in a stable order."""
    scenes = draft.scenes
    found: list[Violation] = []
    found += _check_count(scenes, num_frames)
    found += _check_fields(scenes)
    found += _check_banned(scenes, facts)
    if scenes:
        found += _check_reference(scenes[0], facts)
    found += _check_settings(scenes, facts)
    found += _check_descriptors(scenes, facts)
    found += _check_characters(scenes, facts)
    found += _check_repetition(scenes)
    found += _check_variety(scenes)
    return found


def _check_count(scenes: list[SceneDraft], num_frames: int | None) -> list[Violation]:
    count = len(scenes)
    if num_frames is not None and count != num_frames:
        return [Violation("count", None, f"the plan has {count} frames; exactly {num_frames} were requested")]
    if not MIN_FRAMES <= count <= MAX_FRAMES:
        return [Violation("count", None, f"the plan has {count} frames; it needs {MIN_FRAMES} to {MAX_FRAMES}")]
    return []


def _check_fields(scenes: list[SceneDraft]) -> list[Violation]:
    return [
        Violation("fields", index, f"the {name} is empty")
        for index, scene in enumerate(scenes, start=1)
        for name in _FIELDS
        if not getattr(scene, name).strip()
    ]


def _check_banned(scenes: list[SceneDraft], facts: StoryFacts) -> list[Violation]:
    refs = facts.cast.person_refs()
    found = []
    for index, scene in enumerate(scenes, start=1):
        offending = [word for name in _FIELDS for word in banned_words(getattr(scene, name), refs)]
        if offending:
            listed = ", ".join(dict.fromkeys(offending))
            found.append(
                Violation("banned", index, f"uses clothing or appearance words ({listed}); describe action instead")
            )
    return found


def _main_head(facts: StoryFacts) -> str:
    return facts.cast.main_ref.split()[-1] if facts.cast.main_ref else ""


def _element_head(element: str) -> str:
    return element.split()[-1]


def _check_reference(first: SceneDraft, facts: StoryFacts) -> list[Violation]:
    main = facts.cast.main_ref
    if not main:
        return []
    text = f"{first.description} {first.camera}"
    found = []
    if not has_phrase(first.description, _main_head(facts)):
        found.append(Violation("reference", 1, f"frame 1 must show the main character ({main})"))
    if backs := find_phrases(text, BACK_VIEW_PHRASES):
        found.append(Violation("reference", 1, f"frame 1 must not be a back view ({', '.join(backs)})"))
    if not find_phrases(text, FRONT_FACING_PHRASES):
        found.append(Violation("reference", 1, "frame 1 must be front-facing (say 'facing the camera')"))
    shot = canonical_shot(first.camera)
    if shot in NON_REFERENCE_SHOTS:
        found.append(Violation("reference", 1, f"frame 1 must be a reference shot of {main}, not a {shot}"))
    missing = [element for element in facts.key_elements if not has_phrase(first.description, _element_head(element))]
    if missing:
        found.append(Violation("reference", 1, f"frame 1 must show the story's key elements ({', '.join(missing)})"))
    return found


def _same_place(first: str, second: str) -> bool:
    a = content_words(first) - DESCRIPTOR_ADJECTIVES
    b = content_words(second) - DESCRIPTOR_ADJECTIVES
    return not a or not b or bool(a & b) or first.strip().lower() == second.strip().lower()


def _moves(description: str) -> bool:
    return any(word in MOVEMENT_VERBS for word in words(description))


def _check_settings(scenes: list[SceneDraft], facts: StoryFacts) -> list[Violation]:
    found = []
    for index in range(1, len(scenes)):
        before, now = scenes[index - 1], scenes[index]
        if not now.setting.strip() or not before.setting.strip() or _same_place(before.setting, now.setting):
            continue
        if facts.story_mentions_place(now.setting) or _moves(now.description):
            continue
        found.append(
            Violation(
                "setting",
                index + 1,
                f"moves from '{before.setting}' to '{now.setting}', but the story does not go there",
            )
        )
    return found


def tracked_entities(scenes: list[SceneDraft], facts: StoryFacts) -> dict[str, Entity]:
    """The characters and objects whose descriptor must not change: the story's, and any a plan describes twice."""
    tracked = {head: entity for head, entity in facts.entities.items() if head not in facts.cast.person_refs()}
    main_words = facts.cast.main_ref.split()
    if main_words and facts.cast.main_character is None:
        tracked[main_words[-1].lower()] = facts.entities.get(
            main_words[-1].lower(), Entity(main_words[-1], tuple(main_words[:-1]), "person")
        )
    uses: dict[str, list[tuple[str, ...]]] = {}
    for scene in scenes:
        tokens = tokenize(scene.description)
        for index, token in enumerate(tokens):
            head = token.lower().removesuffix("'s")
            if _could_be_object(head) and head not in tracked:
                uses.setdefault(head, []).append(_adjectives_before(tokens, index))
    for head, runs in uses.items():
        described = [run for run in runs if run]
        if len(runs) >= 2 and described and len(set(runs)) > 1:
            tracked[head] = Entity(head, described[0], "object")
    return tracked


def _could_be_object(word: str) -> bool:
    return (
        is_word(word)
        and word.isalpha()
        and len(word) > 2
        and word not in STOPWORDS
        and word not in DESCRIPTOR_ADJECTIVES
        and word not in GENERIC_NOUNS
        and word not in PLACES
        and word not in LIGHTING
        and word not in ("hour", "shot", "view", "angle", "distance", "frame")
        and not is_verb_form(word)
    )


def _adjectives_before(tokens: list[str], index: int) -> tuple[str, ...]:
    run: list[str] = []
    cursor = index - 1
    while cursor >= 0 and tokens[cursor].lower() in DESCRIPTOR_ADJECTIVES:
        run.insert(0, tokens[cursor].lower())
        cursor -= 1
    return tuple(run)


def _canonical_adjectives(entity: Entity) -> tuple[str, ...]:
    return tuple(word.lower() for word in entity.modifiers if word.lower() in DESCRIPTOR_ADJECTIVES)


def _descriptor_breaks(scenes: list[SceneDraft], facts: StoryFacts) -> list[tuple[int, Entity, str]]:
    """(frame, entity, the wording used) for every mention that does not use the entity's one descriptor."""
    breaks = []
    for head, tracked in tracked_entities(scenes, facts).items():
        entity = _described_as_the_plan_does(tracked, scenes)
        wanted = _canonical_adjectives(entity)
        full = [word.lower() for word in entity.modifiers]
        for index, scene in enumerate(scenes, start=1):
            tokens = tokenize(scene.description)
            for position, token in enumerate(tokens):
                if token.lower().removesuffix("'s") != head.lower():
                    continue
                before = [word.lower() for word in tokens[max(0, position - len(full)) : position]]
                if full and before == full:
                    continue  # the whole descriptor, e.g. "lonely lighthouse keeper"
                used = _adjectives_before(tokens, position)
                if used != wanted:
                    breaks.append((index, entity, " ".join((*used, head))))
    return breaks


def _described_as_the_plan_does(entity: Entity, scenes: list[SceneDraft]) -> Entity:
    """An entity the story gives no descriptor keeps the one the plan gives it most ("brown horse" in every frame is
    consistent, not a break); one the story describes keeps the story's."""
    if _canonical_adjectives(entity):
        return entity
    runs = Counter(
        _adjectives_before(tokens, position)
        for tokens in (tokenize(scene.description) for scene in scenes)
        for position, token in enumerate(tokens)
        if token.lower().removesuffix("'s") == entity.head.lower()
    )
    described = [(count, run) for run, count in runs.items() if run]
    if not described:
        return entity
    _count, run = max(described)
    return dataclasses.replace(entity, modifiers=run)


def _check_descriptors(scenes: list[SceneDraft], facts: StoryFacts) -> list[Violation]:
    found = []
    for frame, entity, used in _descriptor_breaks(scenes, facts):
        wanted = " ".join((*_canonical_adjectives(entity), entity.head.lower()))
        found.append(Violation("descriptor", frame, f"calls the {wanted} '{used}'; use exactly '{wanted}' every time"))
    for index, scene in enumerate(scenes, start=1):
        for character in facts.cast.characters:
            named = [n for n in character.names if n != character.trigger_token and has_phrase(scene.description, n)]
            if named:
                found.append(
                    Violation("descriptor", index, f"names {named[0]!r}; refer to them as {character.trigger_token!r}")
                )
    return found


def _check_characters(scenes: list[SceneDraft], facts: StoryFacts) -> list[Violation]:
    cast_tokens = set(facts.cast.trigger_tokens)
    found = []
    for index, scene in enumerate(scenes, start=1):
        unknown = [token for token in scene.characters if token not in cast_tokens]
        if unknown:
            found.append(Violation("characters", index, f"lists unknown characters {unknown}"))
        unlisted = [t for t in cast_tokens if has_phrase(scene.description, t) and t not in scene.characters]
        if unlisted:
            found.append(Violation("characters", index, f"shows {unlisted} but does not list them"))
        if cast_tokens and not cast_tokens & set(scene.characters):
            found.append(
                Violation("characters", index, f"shows none of the story's characters ({facts.cast.main_ref})")
            )
    return found


def _check_repetition(scenes: list[SceneDraft]) -> list[Violation]:
    found = []
    for index in range(1, len(scenes)):
        before, now = scenes[index - 1], scenes[index]
        if canonical_shot(before.camera) == canonical_shot(now.camera) and (
            similarity(before.description, now.description) >= NEAR_IDENTICAL
        ):
            found.append(
                Violation("repetition", index + 1, f"repeats frame {index} (same {canonical_shot(now.camera)})")
            )
    return found


def _check_variety(scenes: list[SceneDraft]) -> list[Violation]:
    shots = {canonical_shot(scene.camera) for scene in scenes}
    if len(scenes) >= MIN_FRAMES and len(shots) < MIN_SHOT_TYPES:
        return [
            Violation("variety", None, f"uses {len(shots)} shot types; use at least {MIN_SHOT_TYPES} different ones")
        ]
    return []


# ---------------------------------------------------------------------------------------------------------------
# Fixing


def enforce_rules(draft: PlanDraft, facts: StoryFacts, num_frames: int | None) -> PlanDraft:
    """``draft`` with every fixable rule fixed and each fix reported in ``warnings``.

    Raises FailedPrecondition listing what is still wrong when a plan cannot be made valid (too few frames, an
    empty description).
    """
    fixed = PlanDraft([copy.copy(scene) for scene in draft.scenes], list(draft.warnings))
    for scene in fixed.scenes:
        scene.characters = list(scene.characters)
    for fix in (
        _fix_names,
        _fix_banned,
        _fix_count,
        _fix_fields,
        _fix_settings,
        _fix_reference,
        _fix_descriptors,
        _fix_characters,
        _fix_repetition,
        _fix_variety,
    ):
        fix(fixed, facts, num_frames)
    remaining = check_plan(fixed, facts, num_frames)
    if remaining:
        raise FailedPrecondition(
            "the plan breaks storyboard rules that cannot be fixed automatically: "
            + "; ".join(str(violation) for violation in remaining)
        )
    return fixed


def _fix_names(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    """Registered characters are named by their trigger token (a normalisation, not worth a warning)."""
    for scene in plan.scenes:
        for character in facts.cast.characters:
            for name in character.names:
                scene.description = replace_phrase(scene.description, name, character.trigger_token)


def _fix_banned(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    refs = facts.cast.person_refs()
    for index, scene in enumerate(plan.scenes, start=1):
        removed: list[str] = []
        for name in _FIELDS:
            value = getattr(scene, name)
            if found := banned_words(value, refs):
                removed += found
                setattr(scene, name, strip_banned(value, refs))
        if removed:
            listed = ", ".join(dict.fromkeys(removed))
            plan.warnings.append(f"frame {index}: removed clothing/appearance words ({listed})")


def _fix_count(plan: PlanDraft, _facts: StoryFacts, num_frames: int | None) -> None:
    wanted = num_frames if num_frames is not None else min(len(plan.scenes), MAX_FRAMES)
    if len(plan.scenes) <= wanted:
        return  # too few frames cannot be made up without inventing story: check_plan reports it
    total = len(plan.scenes)
    keep = sorted({0, *(round(i * (total - 1) / (wanted - 1)) for i in range(wanted))})[:wanted]
    plan.scenes = [plan.scenes[index] for index in keep]
    plan.warnings.append(
        f"the plan had {total} frames; kept {wanted} of them (frames {', '.join(str(i + 1) for i in keep)})"
    )


def _fix_fields(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    first_beat = facts.beats[0] if facts.beats else None
    defaults = {
        "camera": "medium shot",
        "mood": first_beat.mood if first_beat else "calm",
        "setting": first_beat.setting.phrase if first_beat else facts.places[0].phrase,
        "lighting": first_beat.lighting if first_beat else "natural daylight",
    }
    for index, scene in enumerate(plan.scenes, start=1):
        for name, default in defaults.items():
            if getattr(scene, name).strip():
                continue
            previous = getattr(plan.scenes[index - 2], name) if index > 1 else ""
            setattr(scene, name, previous or default)
            plan.warnings.append(f"frame {index}: the {name} was missing; used '{getattr(scene, name)}'")


def _fix_settings(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    for violation in _check_settings(plan.scenes, facts):
        index = (violation.frame or 1) - 1
        stray = plan.scenes[index].setting
        plan.scenes[index].setting = plan.scenes[index - 1].setting
        plan.warnings.append(
            f"frame {index + 1}: kept the setting '{plan.scenes[index].setting}'; the story never goes to '{stray}'"
        )


def _fix_reference(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    if not plan.scenes or not facts.cast.main_ref:
        return
    first = plan.scenes[0]
    before = (first.description, first.camera)
    for phrase in find_phrases(first.description, BACK_VIEW_PHRASES):
        first.description = remove_phrase(first.description, phrase)
    for phrase in find_phrases(first.camera, BACK_VIEW_PHRASES):
        first.camera = remove_phrase(first.camera, phrase) or "medium shot"
    if canonical_shot(first.camera) in NON_REFERENCE_SHOTS:
        first.camera = "medium shot"
    if not has_phrase(first.description, _main_head(facts)):
        first.description = f"{facts.cast.main_ref}, {first.description}"
    missing = [element for element in facts.key_elements if not has_phrase(first.description, _element_head(element))]
    if missing:
        first.description += ", with " + " and ".join(
            element if "_" in element or element[:1].isupper() else f"the {element}" for element in missing
        )
    if not find_phrases(f"{first.description} {first.camera}", FRONT_FACING_PHRASES):
        first.description += ", facing the camera"
    first.description = tidy(first.description)
    if (first.description, first.camera) != before:
        plan.warnings.append(
            f"frame 1: made it a front-facing reference shot of {facts.cast.main_ref} with the key elements"
        )


def _fix_descriptors(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    breaks = _descriptor_breaks(plan.scenes, facts)
    entities: dict[str, Entity] = {}
    for _frame, entity, _used in breaks:
        entities[entity.head.lower()] = entity
    changed: set[int] = set()
    for frame in sorted({frame for frame, _entity, _used in breaks}):
        scene = plan.scenes[frame - 1]
        unified = _apply_canonical(scene.description, entities)
        if unified != scene.description:
            scene.description = unified
            changed.add(frame)
    for head, entity in entities.items():
        frames = sorted({frame for frame, e, _used in breaks if e.head.lower() == head} & changed)
        if frames:  # a warning tells only of changes made
            wanted = entity.descriptor
            which = f"frame {frames[0]}" if len(frames) == 1 else f"frames {', '.join(map(str, frames))}"
            plan.warnings.append(f"{which}: called the {wanted} by other descriptors; unified to '{wanted}'")


def _apply_canonical(text: str, entities: dict[str, Entity]) -> str:
    """``text`` where each entity's head carries exactly its descriptor ("the white horse" -> "the brown horse")."""
    tokens = tokenize(text)
    out: list[str] = []
    for token in tokens:
        entity = entities.get(token.lower().removesuffix("'s"))
        if entity is not None:
            modifiers = [word.lower() for word in entity.modifiers]
            if [word.lower() for word in out[-len(modifiers) :]] != modifiers or not modifiers:
                while out and (out[-1].lower() in DESCRIPTOR_ADJECTIVES or out[-1].lower() in modifiers):
                    out.pop()  # a conflicting or partial description
                out.extend(entity.modifiers)
        out.append(token)
    return join_tokens(out)


def _fix_characters(plan: PlanDraft, facts: StoryFacts, _num_frames: int | None) -> None:
    cast_tokens = facts.cast.trigger_tokens
    for index, scene in enumerate(plan.scenes, start=1):
        listed = [token for token in scene.characters if token in cast_tokens]
        for token in cast_tokens:
            if token not in listed and has_phrase(scene.description, token):
                listed.append(token)
        if cast_tokens and not listed:
            listed = [cast_tokens[0]]
            plan.warnings.append(f"frame {index}: showed none of the story's characters; added {cast_tokens[0]}")
        scene.characters = listed


def _fix_repetition(plan: PlanDraft, _facts: StoryFacts, _num_frames: int | None) -> None:
    for violation in _check_repetition(plan.scenes):
        index = (violation.frame or 1) - 1
        avoid = {canonical_shot(plan.scenes[index - 1].camera)}
        if index + 1 < len(plan.scenes):
            avoid.add(canonical_shot(plan.scenes[index + 1].camera))
        plan.scenes[index].camera = alternative_shot(plan.scenes[index].camera, avoid)
        plan.warnings.append(
            f"frame {index + 1}: repeated frame {index}; changed its camera to {plan.scenes[index].camera}"
        )


def _fix_variety(plan: PlanDraft, _facts: StoryFacts, _num_frames: int | None) -> None:
    if not _check_variety(plan.scenes):
        return
    shots = [canonical_shot(scene.camera) for scene in plan.scenes]
    missing = [shot for shot in VARIETY_ORDER if shot not in shots]
    # Re-shoot frames whose shot type is the most common, from the end (frame 1 keeps its reference shot).
    for index in range(len(plan.scenes) - 1, 0, -1):
        if len(set(shots)) >= MIN_SHOT_TYPES or not missing:
            break
        if Counter(shots)[shots[index]] < 2:
            continue
        neighbours = {shots[index - 1], shots[index + 1] if index + 1 < len(shots) else ""}
        choice = next((shot for shot in missing if shot not in neighbours), None)
        if choice is None:
            continue
        plan.scenes[index].camera = choice
        shots[index] = choice
        missing.remove(choice)
        plan.warnings.append(f"frame {index + 1}: changed its camera to {choice} for shot variety")
