"""Frames a model did not give: when its draft still has fewer scenes than the storyboard needs after every feedback
round, the offline planner's scenes fill the gap, taken from the part of the story the model's scenes do not tell,
rather than failing the storyboard.
"""

from __future__ import annotations

from services.planner.drafts import PlanDraft, SceneDraft
from services.planner.offline import OfflinePlanner
from services.planner.story import StoryFacts
from services.planner.text import similarity
from storyboard_common.validation import MIN_FRAMES


def fill_missing_scenes(draft: PlanDraft, facts: StoryFacts, num_frames: int | None) -> PlanDraft:
    """``draft`` with the frames it lacks (``num_frames``, else at least MIN_FRAMES) filled in story order from the
    offline plan's scenes that the draft's scenes are least like; a warning names the frames filled."""
    wanted = num_frames or MIN_FRAMES
    if len(draft.scenes) >= wanted:
        return draft
    offline = OfflinePlanner().draft(facts, wanted).scenes
    # Each of the model's scenes stands where the offline scene it is most like stands in the story. The story the
    # model did not tell is first what comes after its last scene, then the gaps its scenes are least like.
    places = _places_in_story(draft.scenes, offline)
    after = list(range(places[-1] + 1, len(offline)))
    gaps = sorted(
        (index for index in range(places[-1]) if index not in places),
        key=lambda index: max(similarity(offline[index].description, s.description) for s in draft.scenes),
    )
    untold = [*after, *gaps][: wanted - len(draft.scenes)]
    ordered = sorted(
        [(place, 0, scene) for place, scene in zip(places, draft.scenes, strict=True)]
        + [(index, 1, offline[index]) for index in untold],
        key=lambda entry: entry[:2],
    )
    scenes = [scene for _place, _kind, scene in ordered]
    filled = [number for number, (_place, kind, _scene) in enumerate(ordered, start=1) if kind == 1]
    warning = (
        f"the model gave {len(draft.scenes)} of {wanted} frames; frames {', '.join(map(str, filled))} are the offline "
        "planner's, from the part of the story its scenes do not tell"
    )
    return PlanDraft(scenes, [*draft.warnings, warning])


def _places_in_story(scenes: list[SceneDraft], offline: list[SceneDraft]) -> list[int]:
    """For each scene, the index of the offline scene it is most like, never before the previous scene's (the
    model's order is kept); the first is the reference frame, as the offline plan's first is."""
    places: list[int] = [0]
    for scene in scenes[1:]:
        best = max(range(len(offline)), key=lambda index: similarity(offline[index].description, scene.description))
        places.append(max(best, places[-1]))
    return places
