"""The plan while it is being made and checked: plain, editable scenes, turned into the contract's Plan at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SceneDraft:
    """One frame of a plan before its prompt is written."""

    description: str
    camera: str
    mood: str
    setting: str
    lighting: str
    characters: list[str] = field(default_factory=list)  # trigger tokens of the registered characters in the frame
    duration_seconds: float = 0.0  # how long the animatic holds the frame; 0: the default


@dataclass
class PlanDraft:
    """A plan as a backend wrote it: scenes in frame order, plus what the backend wants the user to know."""

    scenes: list[SceneDraft]
    warnings: list[str] = field(default_factory=list)
