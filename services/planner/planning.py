"""Planning a story end to end: read it, let a backend draft scenes, enforce the rules, write prompts.

``build_planner(settings)`` makes the planner a service (or a CLI) uses; ``plan_story(...)`` plans one story in a
single call, for the ``storyboard plan`` command and scripts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.planner.budget import CallBudget
from services.planner.characters import Character, CharacterRegistry
from services.planner.clip_tokens import shared_counter
from services.planner.drafts import PlanDraft
from services.planner.fill import fill_missing_scenes
from services.planner.lexicon import STOPWORDS
from services.planner.offline import OfflinePlanner
from services.planner.prompts import PromptBuilder
from services.planner.review import review_plan
from services.planner.rules import enforce_rules
from services.planner.settings import PlannerSettings
from services.planner.story import StoryFacts, analyse_story
from services.planner.text import words
from storyboard.v1 import common_pb2
from storyboard_common.validation import check_num_frames, check_range, check_seed, check_story

DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class StoryRequest:
    """What to plan: the story and the options that shape the plan (already validated)."""

    story: str
    num_frames: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    seed: int | None = None
    characters: tuple[str, ...] = ()


class PlanBackend(Protocol):
    """Something that drafts scenes for a story: the offline planner or a language model."""

    @property
    def name(self) -> str: ...

    @property
    def cacheable(self) -> bool:
        """Whether identical requests at temperature 0 may be answered from the plan cache."""
        ...

    def draft(self, facts: StoryFacts, request: StoryRequest, budget: CallBudget) -> PlanDraft: ...


class _OfflineBackend:
    """The offline planner as a backend: deterministic, so there is nothing to cache."""

    name = "offline"
    cacheable = False

    def __init__(self) -> None:
        self._planner = OfflinePlanner()

    def draft(self, facts: StoryFacts, request: StoryRequest, budget: CallBudget) -> PlanDraft:
        draft = self._planner.draft(facts, request.num_frames)
        draft.warnings += not_english_warning(request.story)
        return draft


# Below this share of English function words, a story in Latin letters is taken for another language.
_MIN_ENGLISH_FUNCTION_WORDS = 0.12


def not_english_warning(story: str) -> list[str]:
    """A warning when the story is not in English (another script, or Latin letters with hardly an English function
    word): the offline planner copies its words into the prompts, and SDXL's text encoders read English."""
    letters = [char for char in story if char.isalpha()]
    latin = sum(char.isascii() for char in letters)
    story_words = words(story)
    english = sum(word in STOPWORDS for word in story_words)
    if latin >= len(letters) / 2 and (
        len(story_words) < 6 or english >= _MIN_ENGLISH_FUNCTION_WORDS * len(story_words)
    ):
        return []
    return [
        "the story does not read as English: the offline planner copies its words into the prompts, and SDXL's text "
        "encoders read English; write it in English, or plan with an LLM (set OPENAI_API_KEY), which translates"
    ]


class _PlanCache:
    """A small LRU of finished plans, safe across threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._plans: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> common_pb2.Plan | None:
        with self._lock:
            data = self._plans.get(key)
            if data is None:
                return None
            self._plans.move_to_end(key)
        return common_pb2.Plan.FromString(data)

    def put(self, key: tuple[object, ...], plan: common_pb2.Plan) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._plans[key] = plan.SerializeToString()
            self._plans.move_to_end(key)
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)


class StoryPlanner:
    """Turns a story into a checked plan with prompts, whichever backend drafts it."""

    def __init__(
        self,
        backend: PlanBackend,
        registry: CharacterRegistry,
        prompts: PromptBuilder,
        cache_size: int = 256,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.prompts = prompts
        self._cache = _PlanCache(cache_size)

    def warm_up(self) -> None:
        """Load what the first plan would otherwise wait for: the CLIP tokenizer."""
        self.prompts.counter.count("warm up")
        _ = self.prompts.negative_prompt

    def plan(self, request: StoryRequest, budget: CallBudget | None = None) -> common_pb2.Plan:
        """The plan for ``request``; NotFound for an unknown character, FailedPrecondition for an unfixable plan."""
        budget = budget or CallBudget()
        requested = self.registry.resolve(request.characters)
        key = self._cache_key(request)
        if key is not None and (cached := self._cache.get(key)) is not None:
            return cached
        facts = analyse_story(request.story, self.registry.mentioned_in(request.story), requested)
        draft = self.backend.draft(facts, request, budget)
        draft = fill_missing_scenes(draft, facts, request.num_frames)
        draft = enforce_rules(draft, facts, request.num_frames)
        plan = self._finish(request, facts, draft)
        if key is not None:
            self._cache.put(key, plan)
        return plan

    def review(self, plan: common_pb2.Plan) -> common_pb2.Plan:
        """``plan``, written elsewhere, checked without planning again (``review.review_plan``)."""
        return review_plan(plan, self.registry, self.prompts)

    def _cache_key(self, request: StoryRequest) -> tuple[object, ...] | None:
        if not self.backend.cacheable or request.temperature != 0:
            return None
        characters = tuple(sorted(name.lower() for name in request.characters))
        return (self.backend.name, request.story, request.num_frames, request.seed, characters)

    def _finish(self, request: StoryRequest, facts: StoryFacts, draft: PlanDraft) -> common_pb2.Plan:
        by_token = {character.trigger_token: character for character in facts.cast.characters}
        warnings = list(draft.warnings)
        scenes = []
        for frame, scene in enumerate(draft.scenes, start=1):
            shown: list[Character] = [by_token[token] for token in scene.characters if token in by_token]
            built = self.prompts.build(scene, shown)
            if built.warning:
                warnings.append(f"frame {frame}: {built.warning}")
            scenes.append(
                common_pb2.Scene(
                    frame=frame,
                    description=scene.description,
                    camera=scene.camera,
                    mood=scene.mood,
                    setting=scene.setting,
                    lighting=scene.lighting,
                    prompt=built.prompt,
                    prompt_tokens=self.prompts.counter.count(built.prompt),
                    trigger_tokens=[character.trigger_token for character in shown],
                    duration_seconds=scene.duration_seconds,
                )
            )
        return common_pb2.Plan(
            story=request.story,
            scenes=scenes,
            negative_prompt=self.prompts.negative_prompt,
            warnings=list(dict.fromkeys(warnings)),
            planner=self.backend.name,
            characters=[character.to_proto() for character in facts.cast.characters],
        )


def build_planner(settings: PlannerSettings) -> StoryPlanner:
    """The planner ``settings`` describe: backend, character registry, prompt style and plan cache."""
    registry = CharacterRegistry.load(settings.characters_file) if settings.characters_file else CharacterRegistry()
    prompts = PromptBuilder(
        lambda: shared_counter(settings.clip_vocab_file),  # loaded by the warm-up, not while the server is built
        quality_tags=[tag for tag in settings.quality_tags.split(",") if tag.strip()],
        negative_prompt=settings.negative_prompt,
    )
    backend: PlanBackend
    if settings.backend == "openai":
        from services.planner.openai_backend import OpenAIPlanner  # the openai package is only needed here

        backend = OpenAIPlanner(settings)
    else:
        backend = _OfflineBackend()
    return StoryPlanner(backend, registry, prompts, cache_size=settings.cache_size)


def plan_story(
    story: str,
    num_frames: int | None = None,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    characters: Sequence[str] = (),
    settings: PlannerSettings | None = None,
    timeout_seconds: float | None = None,
) -> common_pb2.Plan:
    """Plan one story in-process (no server), validating the inputs as the service does.

    ``settings`` default to the environment's (``STORYBOARD_PLANNER_*``, ``OPENAI_API_KEY``): without a key this
    is the offline planner. Raises the same errors the service maps to status codes (InvalidArgument, NotFound,
    FailedPrecondition, ...).
    """
    request = StoryRequest(
        story=check_story(story, "story"),
        num_frames=None if num_frames is None else check_num_frames(num_frames, "num_frames"),
        temperature=DEFAULT_TEMPERATURE if temperature is None else check_range(temperature, 0, 1, "temperature"),
        seed=None if seed is None else check_seed(seed, "seed"),
        characters=tuple(characters),
    )
    planner = build_planner(settings or PlannerSettings())
    return planner.plan(request, CallBudget.seconds(timeout_seconds))
