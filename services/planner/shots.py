"""Shot types: naming a camera description by its canonical shot type, and choosing a different one."""

from __future__ import annotations

from services.planner.lexicon import SHOT_TYPES
from services.planner.text import has_phrase

_PHRASES: list[tuple[str, str]] = sorted(
    ((phrase, shot) for shot, phrases in SHOT_TYPES.items() for phrase in phrases),
    key=lambda pair: len(pair[0]),
    reverse=True,
)

# What a repeated shot turns into, in order of preference: neighbours in scale, so the frame still reads the same.
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "medium shot": ("full shot", "medium close-up", "medium wide shot"),
    "full shot": ("medium shot", "medium wide shot", "low-angle shot"),
    "medium wide shot": ("full shot", "medium shot", "wide shot"),
    "wide shot": ("high-angle shot", "medium wide shot", "full shot"),
    "extreme wide shot": ("wide shot", "high-angle shot", "medium wide shot"),
    "close-up": ("medium close-up", "extreme close-up", "medium shot"),
    "medium close-up": ("close-up", "medium shot", "full shot"),
    "extreme close-up": ("close-up", "medium close-up", "medium shot"),
    "low-angle shot": ("medium shot", "full shot", "high-angle shot"),
    "high-angle shot": ("wide shot", "medium wide shot", "low-angle shot"),
    "tracking shot": ("full shot", "wide shot", "medium shot"),
    "POV shot": ("over-the-shoulder shot", "medium shot", "wide shot"),
    "over-the-shoulder shot": ("medium shot", "POV shot", "close-up"),
    "two-shot": ("medium shot", "full shot", "close-up"),
    "insert shot": ("close-up", "medium shot", "full shot"),
    "aerial shot": ("wide shot", "high-angle shot", "medium wide shot"),
    "dutch angle": ("medium shot", "full shot", "close-up"),
}
# Shots that fit any frame, used to add variety where a plan has too little.
VARIETY_ORDER = ("close-up", "wide shot", "medium shot", "low-angle shot", "full shot", "high-angle shot")


def canonical_shot(camera: str) -> str:
    """The shot type a camera description names ("Wide establishing shot" -> "wide shot"); else the text itself."""
    for phrase, shot in _PHRASES:
        if has_phrase(camera, phrase):
            return shot
    return " ".join(camera.lower().split())


def alternative_shot(camera: str, avoid: set[str]) -> str:
    """A shot type close to ``camera`` that is none of ``avoid``."""
    shot = canonical_shot(camera)
    for candidate in (*ALTERNATIVES.get(shot, ()), *VARIETY_ORDER):
        if candidate not in avoid and candidate != shot:
            return candidate
    return "medium shot"
