"""Reading a frame's scene (or, without one, its prompt) into what a sketch panel shows: the shot, the light, the
place, the things in it, the character's expression and the caption.

Plain keyword rules, in a fixed order, so the same words always give the same panel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from services.renderer.backend import FrameSpec

T = TypeVar("T")


class Shot(Enum):
    """How the camera frames the scene."""

    WIDE = "wide shot"
    FULL = "full shot"
    MEDIUM = "medium shot"
    CLOSE_UP = "close-up"
    POV = "POV shot"
    OVER_THE_SHOULDER = "over-the-shoulder"


class Light(Enum):
    DAY = "day"
    GOLDEN = "golden hour"
    SUNSET = "sunset"
    DAWN = "dawn"
    NIGHT = "night"
    OVERCAST = "overcast"
    CANDLE = "candle-lit"


class Place(Enum):
    STEPPE = "steppe"
    DESERT = "desert"
    FOREST = "forest"
    SNOW = "snow"
    SEA = "sea"
    MOUNTAINS = "mountains"
    VILLAGE = "village"
    INTERIOR = "interior"


class Expression(Enum):
    CALM = "calm"
    HAPPY = "happy"
    DETERMINED = "determined"
    SAD = "sad"
    SURPRISED = "surprised"
    SLY = "sly"


# Order matters: the first rule that matches wins, so the more specific phrases come first. Words match whole
# (plurals too); a trailing "*" makes a stem that matches any ending ("mischiev*": mischievous, mischief...).
SHOT_WORDS: tuple[tuple[Shot, tuple[str, ...]], ...] = (
    (
        Shot.OVER_THE_SHOULDER,
        ("over the shoulder", "over-the-shoulder", "ots", "over his shoulder", "over her shoulder"),
    ),
    (Shot.POV, ("pov", "point of view", "point-of-view", "first person", "first-person", "through his eyes")),
    (Shot.CLOSE_UP, ("close-up", "close up", "closeup", "extreme close*", "macro", "detail shot", "insert shot")),
    (Shot.FULL, ("full shot", "full-body", "full body", "medium wide", "medium-wide", "medium long", "tracking")),
    (Shot.MEDIUM, ("medium", "mid shot", "mid-shot", "waist-up", "waist up", "cowboy shot", "two shot", "two-shot")),
    (Shot.WIDE, ("wide", "establishing", "long shot", "aerial", "panoram*", "bird's eye", "landscape")),
)
LIGHT_WORDS: tuple[tuple[Light, tuple[str, ...]], ...] = (
    (Light.CANDLE, ("candle*", "lantern", "lamplight", "oil lamp", "hearth", "firelit", "fire-lit", "torchlight")),
    (Light.NIGHT, ("night*", "moon*", "midnight", "starlit", "starry", "star", "darkness")),
    (Light.SUNSET, ("sunset", "dusk", "twilight", "sundown", "evening", "orange sky", "red sky")),
    (Light.GOLDEN, ("golden hour", "golden light", "golden", "late afternoon", "warm light", "warm glow")),
    (Light.DAWN, ("dawn", "sunrise", "daybreak", "first light", "morning")),
    (Light.OVERCAST, ("overcast", "storm*", "rain*", "cloudy", "fog*", "mist*", "grey sky", "gray sky", "gloom*")),
    (Light.DAY, ("midday", "noon", "daylight", "sunny", "sunlit", "bright", "blue sky", "afternoon", "day")),
)
PLACE_WORDS: tuple[tuple[Place, tuple[str, ...]], ...] = (
    (Place.INTERIOR, ("interior", "inside", "indoors", "room", "hall", "chamber", "kitchen", "tent")),
    (Place.SEA, ("sea", "ocean", "shore", "beach", "coast*", "wave", "lake", "river*", "stream")),
    (Place.SNOW, ("snow*", "winter", "frozen", "ice", "icy", "blizzard")),
    (Place.DESERT, ("desert", "dune", "sand", "sandy")),
    (Place.MOUNTAINS, ("mountain*", "peak", "cliff", "canyon", "gorge", "rocky")),
    (Place.FOREST, ("forest", "wood", "woods", "tree", "grove", "jungle", "orchard")),
    (Place.VILLAGE, ("village*", "market*", "bazaar", "town", "city", "street", "house", "aul", "square")),
    (Place.STEPPE, ("steppe", "plain", "grassland", "meadow", "field", "prairie", "hill", "pasture")),
)
EXPRESSION_WORDS: tuple[tuple[Expression, tuple[str, ...]], ...] = (
    (Expression.SLY, ("sly", "cunning", "mischiev*", "trick*", "smirk*", "clever", "wink*", "playful", "scheming")),
    (Expression.SURPRISED, ("surprise*", "shock*", "amazed", "astonish*", "startled", "wonder*", "awe")),
    (Expression.SAD, ("sad*", "tired", "weary", "sorrow*", "lonely", "melanchol*", "defeated", "grief")),
    (
        Expression.HAPPY,
        ("happy", "joy*", "satisf*", "smil*", "laugh*", "cheer*", "content", "triumph*", "welcom*", "delight*"),
    ),
    (
        Expression.DETERMINED,
        ("determin*", "focus*", "serious", "tense", "resolute", "brave", "adventur*", "dramatic", "bold"),
    ),
)
# Prompt fragments that are style or quality tags, not part of what the frame shows; left out of captions.
STYLE_TAGS = (
    "high quality",
    "best quality",
    "masterpiece",
    "detailed",
    "highly detailed",
    "3d animation",
    "professional render",
    "8k",
    "4k",
    "hdr",
    "sharp focus",
    "cinematic",
    "trending on artstation",
    "octane render",
    "unreal engine",
    "photorealistic",
    "illustration",
    "digital art",
)


@dataclass(frozen=True)
class PanelPlan:
    """What one sketch panel shows."""

    shot: Shot
    camera_label: str
    light: Light
    place: Place
    expression: Expression
    caption: str
    horse: bool = False
    yurt: bool = False
    fire: bool = False
    door: bool = False
    hand: bool = False
    face: bool = False
    crowd: bool = False
    character: str = ""  # who the panel's figure is (a trigger token); empty when the frame does not say


def _has(text: str, word: str) -> bool:
    """Whether ``text`` holds ``word`` as a whole word (or plural), or as a stem when ``word`` ends in "*"."""
    if word.endswith("*"):
        pattern = r"(?<![a-z])" + re.escape(word[:-1])
    else:
        pattern = r"(?<![a-z])" + re.escape(word) + r"(?:s|es)?(?![a-z])"
    return re.search(pattern, text) is not None


def _first_match(rules: tuple[tuple[T, tuple[str, ...]], ...], texts: list[str]) -> T | None:
    """The first rule matching the first text that matches any rule: earlier texts are the more explicit fields."""
    for text in texts:
        for value, words in rules:
            if any(_has(text, word) for word in words):
                return value
    return None


def caption_from_prompt(prompt: str) -> str:
    """The prompt without style tags, camera words and weights: what the frame shows, in the prompt's words."""
    chunks = [chunk.strip() for chunk in re.split(r"[,;\n]", prompt)]
    kept = []
    for chunk in chunks:
        cleaned = re.sub(r"[()\[\]]|:\d+(\.\d+)?", "", chunk).strip()
        lowered = cleaned.lower()
        if not cleaned or any(lowered == tag or lowered.endswith(" " + tag) for tag in STYLE_TAGS):
            continue
        if _first_match(SHOT_WORDS, [lowered]) is not None and len(lowered.split()) <= 4:
            continue  # "wide establishing shot" says how, not what
        kept.append(cleaned)
    return ", ".join(kept) or prompt.strip()


def plan_panel(spec: FrameSpec) -> PanelPlan:
    """The panel plan for one frame: the scene's own fields first, the prompt when they say nothing."""
    scene = spec.scene
    prompt = spec.prompt.lower()
    if scene is not None:
        camera_texts = [scene.camera.lower(), scene.description.lower(), prompt]
        light_texts = [scene.lighting.lower(), scene.setting.lower(), scene.description.lower(), prompt]
        place_texts = [scene.setting.lower(), scene.description.lower(), prompt]
        mood_texts = [scene.mood.lower(), scene.description.lower(), prompt]
        caption = scene.description.strip() or caption_from_prompt(spec.prompt)
        camera_label = scene.camera.strip()
    else:
        camera_texts = light_texts = place_texts = mood_texts = [prompt]
        caption = caption_from_prompt(spec.prompt)
        camera_label = ""
    shot = _first_match(SHOT_WORDS, camera_texts) or Shot.MEDIUM
    light = _first_match(LIGHT_WORDS, light_texts)
    # The scene's own words about the place come first; then candle light means indoors; then the prompt.
    place = _first_match(PLACE_WORDS, place_texts[:-1])
    if place is None:
        place = Place.INTERIOR if light is Light.CANDLE else _first_match(PLACE_WORDS, place_texts[-1:])
    everything = " ".join(dict.fromkeys(t for t in (*place_texts, *light_texts) if t))
    return PanelPlan(
        shot=shot,
        camera_label=(camera_label or shot.value).upper(),
        light=light or (Light.CANDLE if place is Place.INTERIOR else Light.DAY),
        place=place or Place.STEPPE,
        expression=_first_match(EXPRESSION_WORDS, mood_texts) or Expression.CALM,
        caption=caption,
        horse=_any(everything, ("horse*", "horseback", "riding", "rider", "ride", "rode", "dismount*", "saddle*")),
        yurt=_has(everything, "yurt"),
        fire=_any(everything, ("campfire", "bonfire", "fire", "fireside", "hearth", "flame")),
        door=_any(everything, ("door*", "entrance", "threshold", "gate")),
        hand=_any(everything, ("hand", "finger", "palm")),
        face=_any(everything, ("face", "expression", "eye", "smile", "gaze", "grin", "portrait")),
        crowd=_any(everything, ("villager", "crowd", "people", "merchant", "guest", "children", "audience")),
        character=scene.characters[0] if scene is not None and scene.characters else "",
    )


def _any(text: str, words: tuple[str, ...]) -> bool:
    return any(_has(text, word) for word in words)
