"""SDXL prompts from scenes, each kept inside CLIP's 77-token window by dropping the least important tags first.

A prompt is: trigger tokens (always first) + action (the description) + setting + camera + lighting + mood + character
descriptors + quality tags. The trigger tokens and the action are never cut; when the window is tight, quality tags
go first (last one first), then descriptors, mood, lighting, camera and setting.

Each trigger token appears once, at the start of a clause that leads the prompt (``lead_with_triggers``): a clause of
the action that starts with it is moved to the front, and any other mention of the character uses its name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.planner.characters import Character
from services.planner.clip_tokens import CLIP_WINDOW, ClipTokenCounter
from services.planner.drafts import SceneDraft
from services.planner.text import clean_story_text, content_words, phrase_pattern, replace_phrase, tidy

DEFAULT_QUALITY_TAGS = ("high quality", "detailed", "3D animation", "professional render")
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, distorted, deformed, bad anatomy, extra limbs, extra fingers, disfigured face, "
    "duplicate character, text, watermark, signature, cropped, out of frame"
)
# Commas between digits ("1,000 coins") do not separate clauses.
_CLAUSE_BREAK = re.compile(r"\s*(?:(?<!\d),|,(?!\d))\s*")


@dataclass(frozen=True)
class _Part:
    text: str
    priority: int  # higher survives longer; None-droppable parts have the highest
    order: int  # position in the prompt


@dataclass(frozen=True)
class BuiltPrompt:
    """A scene's prompt, and a warning when even the action had to be shortened to fit."""

    prompt: str
    warning: str = ""


class PromptBuilder:
    """Writes each frame's SDXL prompt and the shared negative prompt within the CLIP window."""

    def __init__(
        self,
        counter: ClipTokenCounter | Callable[[], ClipTokenCounter],
        quality_tags: Sequence[str] = DEFAULT_QUALITY_TAGS,
        negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
        window: int = CLIP_WINDOW,
    ) -> None:
        """``counter`` may be a function that builds one, so that loading the tokenizer waits for the warm-up."""
        self._counter = counter if isinstance(counter, ClipTokenCounter) else None
        self._load_counter = counter if not isinstance(counter, ClipTokenCounter) else None
        self._lock = threading.Lock()
        self.quality_tags = tuple(tag.strip() for tag in quality_tags if tag.strip())
        self.window = window
        self._negative_parts = [part.strip() for part in negative_prompt.split(",") if part.strip()]
        self._negative: str | None = None

    @property
    def counter(self) -> ClipTokenCounter:
        """The CLIP token counter, built on first use."""
        with self._lock:
            if self._counter is None:
                assert self._load_counter is not None
                self._counter = self._load_counter()
            return self._counter

    @property
    def negative_prompt(self) -> str:
        """The negative prompt, trimmed from its end to fit the window."""
        if self._negative is None:
            self._negative = self._fit_list(list(self._negative_parts))
        return self._negative

    def build(self, scene: SceneDraft, characters: Sequence[Character]) -> BuiltPrompt:
        """The prompt for ``scene``; ``characters`` are the registered characters it shows."""
        action = _clean(scene.description)
        core, warning = self._fit_core(lead_with_triggers(action, characters), characters)
        parts = [_Part(core, 100, 0)]
        parts += self._optional_parts(scene, characters, action)
        while self.counter.count(_join(parts)) > self.window:
            droppable = [part for part in parts if part.priority < 100]
            if not droppable:
                break  # cannot happen: the core alone fits (see _fit_core)
            parts.remove(min(droppable, key=lambda part: (part.priority, -part.order)))
        return BuiltPrompt(_join(parts), warning)

    def _optional_parts(self, scene: SceneDraft, characters: Sequence[Character], action: str) -> list[_Part]:
        said = content_words(action)
        candidates = [
            (scene.setting, 60, 1),
            (scene.camera, 50, 2),
            (scene.lighting, 40, 3),
            (f"{scene.mood} mood" if scene.mood else "", 30, 4),
        ]
        descriptors = [d for character in characters for d in character.descriptors]
        candidates += [(descriptor, 20, 5 + index) for index, descriptor in enumerate(descriptors)]
        base = 5 + len(descriptors)
        candidates += [(tag, 10 - index, base + index) for index, tag in enumerate(self.quality_tags)]
        parts = []
        for text, priority, order in candidates:
            text = _clean(text)
            words = content_words(text)
            if text and not (words and words <= said):  # the action already says it
                parts.append(_Part(text, priority, order))
        return parts

    def _fit_core(self, core: str, characters: Sequence[Character]) -> tuple[str, str]:
        """The trigger tokens and action, shortened only if they alone overflow the window (never the triggers)."""
        if self._fits(core):
            return core, ""
        clauses = [clause for clause in _CLAUSE_BREAK.split(core) if clause]
        while len(clauses) > 1 and not self._fits(_relead(", ".join(clauses), characters)):
            clauses.pop()
        words = ", ".join(clauses).split()
        while len(words) > 1 and not self._fits(_relead(" ".join(words), characters)):
            words.pop()
        text = _relead(" ".join(words), characters)
        if not self._fits(text):  # an overlong word, or triggers crowding the window
            text = self._cut_after_triggers(text, characters)
        return tidy(text), "the description was too long for CLIP's 77-token window and was shortened"

    def _cut_after_triggers(self, text: str, characters: Sequence[Character]) -> str:
        """The bare trigger tokens, then as much of the rest of ``text`` as fits, naming the characters it mentions
        (cut from its end, ``text`` itself could lose a trigger, or keep half of one)."""
        triggers = [character.trigger_token for character in characters]
        rest = name_characters(", ".join(c for c in _CLAUSE_BREAK.split(text) if c not in triggers), characters)
        while rest and not self._fits(", ".join([*triggers, rest])):
            rest = tidy(rest[: len(rest) - max(1, len(rest) // 10)])
        return ", ".join([*triggers, rest] if rest else triggers)

    def _fits(self, text: str) -> bool:
        return self.counter.count(text) <= self.window

    def _fit_list(self, items: list[str]) -> str:
        while items and self.counter.count(", ".join(items)) > self.window:
            items.pop()
        return ", ".join(items)


def _clean(text: str) -> str:
    return tidy(re.sub(r"[.;:!?]+(?=\s|$)", ",", clean_story_text(text)))


def _join(parts: list[_Part]) -> str:
    return ", ".join(part.text for part in sorted(parts, key=lambda part: part.order))


def lead_with_triggers(action: str, characters: Sequence[Character]) -> str:
    """``action`` led by the trigger token of every character in ``characters``, each token once.

    The LoRAs learned their trigger at the start of a caption, so each token starts a clause at the front: the first
    clause of the action that starts with it is moved there (the action's first clause already is), and a token no
    clause starts with is put there bare. Every other mention of the character then uses its name, so that no token
    is repeated ("aldar_kose_man, the merchant greets Aldar Kose", "Aldar Kose's hands")."""
    clauses = [clause for clause in _CLAUSE_BREAK.split(action) if clause]
    leads = _clauses_led_by_triggers(clauses, characters)
    bare = [c.trigger_token for c in characters if c.trigger_token not in leads.values()]
    fronted = [_keep_lead_name_rest(clauses[index], leads[index], characters) for index in sorted(leads)]
    rest = [name_characters(clause, characters) for index, clause in enumerate(clauses) if index not in leads]
    return ", ".join([*bare, *fronted, *rest])


def _relead(shortened: str, characters: Sequence[Character]) -> str:
    """A shortened core led by its triggers again: a trigger whose clause was cut off goes back to the front."""
    return lead_with_triggers(tidy(shortened), characters)


def name_characters(text: str, characters: Sequence[Character]) -> str:
    """``text`` with every trigger token of ``characters`` replaced by the character's name ("aldar_kose_man's" ->
    "Aldar Kose's")."""
    for character in characters:
        text = replace_phrase(text, character.trigger_token, character.name)
    return text


def _clauses_led_by_triggers(clauses: Sequence[str], characters: Sequence[Character]) -> dict[int, str]:
    """Index -> trigger token: for each token, the first clause that starts with it and with no other token."""
    leads: dict[int, str] = {}
    for token in (character.trigger_token for character in characters):
        found = (i for i, clause in enumerate(clauses) if i not in leads and _lead_length(clause, token))
        if (index := next(found, None)) is not None:
            leads[index] = token
    return leads


def _lead_length(clause: str, token: str) -> int:
    """How many characters of ``clause`` its leading ``token`` takes (any case); 0 when it does not start with it."""
    match = phrase_pattern(token).match(clause)
    return match.end() if match else 0


def _keep_lead_name_rest(clause: str, token: str, characters: Sequence[Character]) -> str:
    """A clause that starts with ``token``: that token stays, every mention of a character after it is by name."""
    end = _lead_length(clause, token)
    return clause[:end] + name_characters(clause[end:], characters)
