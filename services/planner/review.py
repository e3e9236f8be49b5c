"""A plan written elsewhere (a caller's, perhaps edited by hand), checked without planning again.

The caller approved these words, so nothing they wrote is changed: broken rules and prompts longer than CLIP reads
come back as the plan's warnings, and only the prompts left empty are written (from their scenes, as a planned
storyboard's are). What cannot be drawn at all (no scenes, a scene without a description, a trigger token no
registered character has) is refused, naming the field.
"""

from __future__ import annotations

from services.planner.characters import Character, CharacterRegistry
from services.planner.drafts import PlanDraft, SceneDraft
from services.planner.prompts import PromptBuilder
from services.planner.rules import check_plan
from services.planner.story import StoryFacts, analyse_story
from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument, NotFound
from storyboard_common.validation import check_plan_scenes


def review_plan(given: common_pb2.Plan, registry: CharacterRegistry, prompts: PromptBuilder) -> common_pb2.Plan:
    """``given`` with its frames numbered, its empty prompts written and every problem found in its warnings."""
    check_plan_scenes(given)
    cast = _cast(given, registry)
    draft = PlanDraft([_draft(scene) for scene in given.scenes])
    told = "\n".join(scene.description for scene in given.scenes)
    story = given.story.strip() or told
    facts = _facts(story, told, registry, cast)
    warnings = [*given.warnings, *(str(violation) for violation in check_plan(draft, facts, None))]
    by_token = {character.trigger_token: character for character in cast}
    scenes = []
    for frame, (scene, scene_draft) in enumerate(zip(given.scenes, draft.scenes, strict=True), start=1):
        written = prompts.build(scene_draft, [by_token[token] for token in scene_draft.characters])
        prompt = scene.prompt.strip()
        if not prompt:
            prompt = written.prompt
            warnings += [f"frame {frame}: {written.warning}"] if written.warning else []
        else:
            warnings += _prompt_warnings(frame, prompt, written.prompt, prompts)
        reviewed = common_pb2.Scene()
        reviewed.CopyFrom(scene)
        reviewed.frame, reviewed.prompt = frame, prompt
        reviewed.prompt_tokens = prompts.counter.count(prompt)
        scenes.append(reviewed)
    return common_pb2.Plan(
        story=story,
        scenes=scenes,
        negative_prompt=given.negative_prompt.strip() or prompts.negative_prompt,
        warnings=list(dict.fromkeys(warnings)),
        planner=given.planner or "given",
        characters=[character.to_proto() for character in cast],
    )


def _prompt_warnings(frame: int, prompt: str, written: str, prompts: PromptBuilder) -> list[str]:
    """What to tell of a prompt the caller gave: that it is not the scene's (a description edited since the prompt was
    written keeps the old picture), and that CLIP does not read all of it."""
    warnings = []
    if prompt != written:
        warnings.append(
            f"frame {frame}: its prompt is rendered as given, which is not what the planner writes from the scene; "
            "empty it to have the prompt written from the description"
        )
    if (tokens := prompts.counter.count(prompt)) > prompts.window:
        warnings.append(
            f"frame {frame}: its prompt is {tokens} CLIP tokens; SDXL reads the first {prompts.window}, so its end "
            "is not drawn"
        )
    return warnings


def _facts(story: str, told: str, registry: CharacterRegistry, cast: list[Character]) -> StoryFacts:
    """What the rules check the scenes against: the story's facts, or, for a story with nothing to read (the scenes
    are what will be drawn), the scenes' own."""
    try:
        return analyse_story(story, registry.mentioned_in(story), cast)
    except InvalidArgument:
        return analyse_story(told, registry.mentioned_in(told), cast)


def _cast(plan: common_pb2.Plan, registry: CharacterRegistry) -> list[Character]:
    """The registered characters the scenes name by trigger token, in order of first appearance."""
    cast: list[Character] = []
    for index, scene in enumerate(plan.scenes):
        for position, token in enumerate(scene.trigger_tokens):
            character = registry.find(token)
            if character is None or character.trigger_token != token:
                known = ", ".join(c.trigger_token for c in registry) or "none; no character registry is configured"
                raise NotFound(
                    f"plan.scenes[{index}].trigger_tokens[{position}]: no character has the trigger token {token!r}; "
                    f"registered: {known}"
                )
            if character not in cast:
                cast.append(character)
    return cast


def _draft(scene: common_pb2.Scene) -> SceneDraft:
    return SceneDraft(
        description=scene.description.strip(),
        camera=scene.camera.strip(),
        mood=scene.mood.strip(),
        setting=scene.setting.strip(),
        lighting=scene.lighting.strip(),
        characters=list(dict.fromkeys(scene.trigger_tokens)),
    )
