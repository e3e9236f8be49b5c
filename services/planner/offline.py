"""The offline planner: a deterministic storyboard from the story's own words, with no model and no network.

Frame 1 is a front-facing reference shot of the main character with the story's key elements. Every beat of the
story then gets its main shot, in story order, and the frames left over become coverage a storyboard artist would
add: an establishing wide where the story reaches a new place, the character's point of view of where they are
going, an arrival, a close-up of the face, a detail of an object, an over-the-shoulder view of another character.

A storyboard tells the whole story: when there are more beats than frames, coverage goes first, then frame 1 also
tells the first beat, and only then do neighbouring beats share a frame (see ``condense``), the ending last.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from services.planner.condense import Fitted, fit_beats
from services.planner.drafts import PlanDraft, SceneDraft
from services.planner.lexicon import (
    DEFAULT_INDOOR_LIGHTING,
    DEFAULT_OUTDOOR_LIGHTING,
    DESCRIPTOR_ADJECTIVES,
    EXPRESSIONS,
    STOPWORDS,
)
from services.planner.places import Place
from services.planner.shots import VARIETY_ORDER, alternative_shot, canonical_shot
from services.planner.story import Beat, StoryFacts
from services.planner.text import has_phrase, tidy, words
from storyboard_common.validation import MAX_FRAMES, MIN_FRAMES

# Coverage kinds in the order extra frames are given out, and the order they take within one beat.
_PRIORITY = ("establishing", "arrival", "pov", "reaction", "insert", "ots", "tracking", "low_angle", "high_angle")
_ORDER_IN_BEAT = ("establishing", "main", "pov", "tracking", "insert", "ots", "reaction", "low_angle", "high_angle")
_ARRIVAL_LAST = ("arrival",)
_SHORT_ACTION_WORDS = 9
MIN_SHOT_TYPES = 3


@dataclass(frozen=True)
class _Shot:
    beat: int
    kind: str
    source: int = -1  # for an arrival: the beat that set out (its destination is where the shot arrives)


def choose_frame_count(facts: StoryFacts) -> int:
    """How many frames a story needs when the caller does not say: more beats and places, more frames."""
    places = len({beat.setting.head for beat in facts.beats})
    wanted = len(facts.beats) + 3 + (1 if places > 1 else 0)
    return max(MIN_FRAMES, min(MAX_FRAMES, wanted))


class OfflinePlanner:
    """Plans from the story's words alone; the same story always gives the same plan."""

    name = "offline"

    def draft(self, facts: StoryFacts, num_frames: int | None) -> PlanDraft:
        """A plan of ``num_frames`` frames (or a count chosen from the story) that shows every beat, in order."""
        count = num_frames or choose_frame_count(facts)
        beats = list(facts.beats)
        warnings = list(facts.warnings)
        slots = count - 1
        opening: Beat | None = None  # a beat frame 1 tells, when the frames after it cannot hold them all
        if len(beats) > slots and facts.cast.main_ref and beats[0].subject_is_main:
            opening, beats = beats[0], beats[1:]
        if len(beats) > slots:
            fitted = fit_beats(beats, slots)
            beats = fitted.beats
            warnings.append(_condensed_warning(len(facts.beats), count, fitted))
        shots = _shot_list(beats, slots, opening)
        scenes = [_reference_scene(facts, opening or beats[0], opening is not None)]
        scenes.extend(_scene(facts, beats, shot) for shot in shots)
        _vary_cameras(scenes)
        _ensure_variety(scenes)
        return PlanDraft(scenes, warnings)


def _condensed_warning(total: int, count: int, fitted: Fitted) -> str:
    told = f"the story has {total} beats for {count} frames: {fitted.combined} frame(s) show two or three of them"
    if fitted.dropped:
        told += f" and {fitted.dropped} beat(s) are left out"
    advice = "shorten the story to give each its own frame" if count == MAX_FRAMES else "ask for more frames"
    return f"{told} ({advice})"


def _shot_list(beats: list[Beat], slots: int, opening: Beat | None = None) -> list[_Shot]:
    """Every beat's main shot, then the best coverage shots while frames are left, in story order."""
    shots = [_Shot(index, "main") for index in range(len(beats))]
    candidates = _coverage(beats, opening)
    shots.extend(candidates[: max(0, slots - len(shots))])
    while len(shots) < slots:  # a one-beat story asking for ten frames: more angles on the last beat
        shots.append(_Shot(len(beats) - 1, ("low_angle", "high_angle", "reaction")[len(shots) % 3]))

    def order(shot: _Shot) -> tuple[int, int]:
        if shot.kind in _ARRIVAL_LAST:
            return shot.beat, len(_ORDER_IN_BEAT)
        return shot.beat, _ORDER_IN_BEAT.index(shot.kind)

    return sorted(shots, key=order)


def _coverage(beats: list[Beat], opening: Beat | None = None) -> list[_Shot]:
    """Every extra shot the beats could use, best first."""
    wanted: dict[str, list[int]] = {kind: [] for kind in _PRIORITY}
    for index, beat in enumerate(beats):
        previous = beats[index - 1] if index else opening
        if previous is None or beat.setting.head != previous.setting.head:
            wanted["establishing"].append(index)
        if beat.destination is not None and beat.moving and beat.subject:
            last = _last_beat_on_the_way(beats, index)
            if last is not None:
                wanted["arrival"].append(last * 1000 + index)  # shown after the last beat still on the way
        if beat.destination is not None or _targets(beat):
            wanted["pov"].append(index)
        wanted["reaction"].append(index)
        if beat.objects:
            wanted["insert"].append(index)
        if beat.others:
            wanted["ots"].append(index)
        if beat.moving:
            wanted["tracking"].append(index)
        wanted["low_angle"].append(index)
        wanted["high_angle"].append(index)
    return [
        _Shot(index // 1000, kind, index % 1000) if kind == "arrival" else _Shot(index, kind)
        for kind in _PRIORITY
        for index in wanted[kind]
    ]


def _targets(beat: Beat) -> list[str]:
    """What the main character can look at in a beat: the others and objects that are not doing the action."""
    doers = set(words(beat.subject))
    return [thing for thing in (*beat.others, *beat.objects) if thing.split()[-1].lower() not in doers]


def _last_beat_on_the_way(beats: list[Beat], start: int) -> int | None:
    """The last beat before the story reaches ``beats[start]``'s destination; None when the story shows the
    arrival itself (a later beat names that place)."""
    destination = beats[start].destination
    assert destination is not None
    last = start
    while (
        last + 1 < len(beats) and beats[last + 1].setting.head != destination.head and not beats[last + 1].place_named
    ):
        last += 1
    following = beats[last + 1] if last + 1 < len(beats) else None
    if following is not None and following.place_named and following.setting.head == destination.head:
        return None
    return last


def _mention(descriptor: str) -> str:
    """How a description names a thing: "the brown horse"; trigger tokens and names stay as they are."""
    if "_" in descriptor or descriptor[:1].isupper():
        return descriptor
    return f"the {descriptor}"


def _with(elements: list[str]) -> str:
    if not elements:
        return ""
    return "with " + " and ".join(_mention(element) for element in elements)


def _reference_scene(facts: StoryFacts, first: Beat, tells_beat: bool = False) -> SceneDraft:
    """Frame 1: the main character facing the camera with the key elements (doing the first beat, when the
    frames after it cannot hold every beat)."""
    main = facts.cast.main_phrase
    if main and tells_beat:
        missing = [element for element in facts.key_elements if not has_phrase(first.action, element.split()[-1])]
        description = f"{_main_description(first, first.action)} {_with(missing)}, facing the camera"
        camera = "medium shot"
    elif main:
        description = f"{main} standing {_with(facts.key_elements)} {first.setting.located()}, facing the camera"
        camera = "medium shot"
    else:
        description = f"the {first.setting.phrase} {_with(facts.key_elements)}, establishing view"
        camera = "wide shot"
    return SceneDraft(
        description=tidy(description),
        camera=camera,
        mood=first.mood,
        setting=first.setting.phrase,
        lighting=first.lighting,
        characters=_characters(facts, first, reference=True),
    )


def _characters(facts: StoryFacts, beat: Beat, reference: bool = False) -> list[str]:
    tokens = list(beat.characters)
    if reference:
        tokens = [token for token in facts.cast.trigger_tokens if token in tokens or token in facts.key_elements]
    main = facts.cast.main_character
    if main is not None and main.trigger_token not in tokens:
        tokens.insert(0, main.trigger_token)
    return tokens


def _scene(facts: StoryFacts, beats: list[Beat], shot: _Shot) -> SceneDraft:
    beat = beats[shot.beat]
    setting = beat.setting
    lighting = beat.lighting
    if shot.kind == "arrival":
        beat = beats[shot.source]
        setting = beat.destination or beat.setting
        lighting = _lighting_at(beat.lighting, setting)
    description, camera = _describe(facts, beat, shot.kind)
    return SceneDraft(
        description=tidy(description),
        camera=camera,
        mood=beat.mood,
        setting=setting.phrase,
        lighting=lighting,
        characters=_characters(facts, beat),
    )


def _lighting_at(lighting: str, setting: Place) -> str:
    """The light of a shot at ``setting``: the story's time of day, or the default for indoors or outdoors."""
    if lighting in (DEFAULT_INDOOR_LIGHTING, DEFAULT_OUTDOOR_LIGHTING):
        return DEFAULT_INDOOR_LIGHTING if setting.indoor else DEFAULT_OUTDOOR_LIGHTING
    return lighting


def _describe(facts: StoryFacts, beat: Beat, kind: str) -> tuple[str, str]:
    """The description and camera of one shot of ``beat``."""
    main = facts.cast.main_phrase
    action = _with_main(beat.action, main)
    target = beat.destination.phrase if beat.destination is not None else ([*_targets(beat), ""])[0]
    if kind == "establishing":
        if beat.setting.head in ("campfire", "fireplace", "well", "fountain"):
            around = f", {main} beside it" if main else ""
            return f"wide view around the {beat.setting.phrase}{around}", "wide shot"
        if beat.setting.indoor:
            inside = f", {main} small in the frame" if main else ""
            return f"the whole {beat.setting.phrase} interior{inside}", "wide shot"
        small = f", {main} small in the distance" if main else ""
        return f"the {beat.setting.phrase} seen from afar{small}", "wide shot"
    if kind == "arrival" and beat.destination is not None:
        traveller = beat.subject or main
        companions = _with([other for other in beat.others if other.split()[-1].lower() not in words(traveller)][:1])
        return f"{traveller} arriving at the {beat.destination.phrase} {companions}", "medium wide shot"
    if kind == "pov" and target:
        where = "on the horizon" if beat.destination is not None and not beat.setting.indoor else "just ahead"
        viewer = f"{facts.cast.main_possessive} point of view: " if main else "point of view: "
        return f"{viewer}{_mention(target)} {where}", "POV shot"
    if kind == "reaction" and main:
        expression = EXPRESSIONS.get(beat.mood, "thoughtful expression")
        return f"{facts.cast.main_possessive} face, {expression}, {_short(action, main)}", "close-up"
    if kind == "insert" and beat.objects:
        owner = f"{facts.cast.main_possessive} hands with " if main else ""
        return f"{owner}{_mention(beat.objects[0])}, {_short(action, main)}", "extreme close-up"
    if kind == "ots" and beat.others and main:
        return f"over the shoulder of {main}, looking at {_mention(beat.others[0])}", "over-the-shoulder shot"
    if kind == "tracking":
        return f"{action}, moving through the {beat.setting.phrase}", "tracking shot"
    if kind == "high_angle":
        return f"{action}, seen from above", "high-angle shot"
    if kind == "low_angle":
        return f"{action}, seen from below", "low-angle shot"
    return _main_description(beat, action), _main_camera(beat)


def _with_main(action: str, main: str) -> str:
    """The action, with the main character present even when someone else does it."""
    if not main or has_phrase(action, main.split()[-1]):
        return action
    return f"{action}, {main} watching"


def _short(action: str, main: str) -> str:
    """The action in a few words, without its subject when that is the main character: a close-up's caption."""
    text = action
    group = main and re.match(rf"{re.escape(main)}(?:,| and )", action, re.IGNORECASE)
    if main and text.lower().startswith(main.lower() + " ") and not group:
        text = text[len(main) :]
    elif main and not group:
        text = f"as {text}"  # someone else acts: the close-up shows the main character's reaction
    kept = text.split(",")[0].split()[:_SHORT_ACTION_WORDS]
    while len(kept) > 1 and (kept[-1].lower() in STOPWORDS or kept[-1].lower() in DESCRIPTOR_ADJECTIVES):
        kept.pop()  # never end on "a" or "magical"
    return " ".join(kept)


def _main_description(beat: Beat, action: str) -> str:
    """The action where it happens: the setting is added unless the action already names it."""
    if beat.destination is not None and has_phrase(action, beat.destination.head):
        return action  # "escapes into the forest": the place is already said
    if beat.setting.head == "way" and beat.destination is None and _names_way_target(beat, action):
        return action
    setting_words = [word for word in words(beat.setting.phrase) if word not in STOPWORDS and len(word) > 2]
    if any(has_phrase(action, word) for word in setting_words if word not in DESCRIPTOR_ADJECTIVES):
        return action
    return f"{action} {beat.setting.located()}"


def _names_way_target(beat: Beat, action: str) -> bool:
    target = beat.setting.phrase.removeprefix("way to the ")
    return bool(target) and has_phrase(action, target.split()[-1])


def _main_camera(beat: Beat) -> str:
    if beat.moving:
        return "full shot"
    if beat.others:
        return "medium shot"
    return "medium wide shot"


def _ensure_variety(scenes: list[SceneDraft]) -> None:
    """At least three shot types: a frame of the most common type (never frame 1) becomes a close-up, a wide
    shot or a low angle, whichever its neighbours do not use."""
    shots = [canonical_shot(scene.camera) for scene in scenes]
    for index in range(len(scenes) - 1, 0, -1):
        if len(set(shots)) >= MIN_SHOT_TYPES:
            return
        if Counter(shots)[shots[index]] < 2:
            continue
        neighbours = {shots[index - 1], shots[index + 1] if index + 1 < len(shots) else ""}
        choice = next((shot for shot in VARIETY_ORDER if shot not in shots and shot not in neighbours), None)
        if choice is not None:
            scenes[index].camera = shots[index] = choice


def _vary_cameras(scenes: list[SceneDraft]) -> None:
    """No two neighbouring frames share a shot type, and frame 1 keeps its reference shot."""
    for index in range(1, len(scenes)):
        previous = canonical_shot(scenes[index - 1].camera)
        if canonical_shot(scenes[index].camera) == previous:
            following = canonical_shot(scenes[index + 1].camera) if index + 1 < len(scenes) else ""
            scenes[index].camera = alternative_shot(scenes[index].camera, {previous, following, "POV shot"})
