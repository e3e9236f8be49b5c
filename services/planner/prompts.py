"""SDXL prompts from scenes, each kept inside CLIP's 77-token window by dropping the least important tags first.

A prompt is: trigger tokens (always first) + action (the description) + setting + camera + lighting + mood + character
descriptors + quality tags. The trigger tokens and the action are never cut; when the window is tight, quality tags
go first (last one first), then descriptors, mood, lighting, camera and setting.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.planner.characters import Character
from services.planner.clip_tokens import CLIP_WINDOW, ClipTokenCounter
from services.planner.drafts import SceneDraft
from services.planner.text import clean_story_text, content_words, has_phrase, tidy

DEFAULT_QUALITY_TAGS = ("high quality", "detailed", "3D animation", "professional render")
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, distorted, deformed, bad anatomy, extra limbs, extra fingers, disfigured face, "
    "duplicate character, text, watermark, signature, cropped, out of frame"
)


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
        # The LoRAs learned their trigger at the start of a caption: every prompt starts with its triggers.
        leading = [c.trigger_token for c in characters if not action.startswith(c.trigger_token)]
        core = ", ".join([*leading, action]) if leading else action
        core, warning = self._fit_core(core, [c.trigger_token for c in characters])
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

    def _fit_core(self, core: str, triggers: Sequence[str]) -> tuple[str, str]:
        """The trigger tokens and action, shortened only if they alone overflow the window (never the triggers)."""
        if self.counter.count(core) <= self.window:
            return core, ""
        clauses = [clause.strip() for clause in core.split(",") if clause.strip()]
        while len(clauses) > 1 and self.counter.count(", ".join(clauses)) > self.window:
            clauses.pop()
        text = ", ".join(clauses)
        words = text.split()
        while len(words) > 1 and self.counter.count(" ".join(words)) > self.window:
            words.pop()
        text = " ".join(words)
        missing = [trigger for trigger in triggers if not has_phrase(text, trigger)]
        if missing:
            text = ", ".join([*missing, text])
        while self.counter.count(text) > self.window:  # an overlong word, or triggers crowding the window
            text = text[: max(len(", ".join(triggers)), len(text) - max(1, len(text) // 10))]
        return tidy(text), "the description was too long for CLIP's 77-token window and was shortened"

    def _fit_list(self, items: list[str]) -> str:
        while items and self.counter.count(", ".join(items)) > self.window:
            items.pop()
        return ", ".join(items)


def _clean(text: str) -> str:
    return tidy(re.sub(r"[.;:!?]+(?=\s|$)", ",", clean_story_text(text)))


def _join(parts: list[_Part]) -> str:
    return ", ".join(part.text for part in sorted(parts, key=lambda part: part.order))
