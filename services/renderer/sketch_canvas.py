"""The drawing surface of a sketch panel: colours, palettes by light and place, and the primitives every part of a
panel is drawn with (gradients, glows, outlined shapes)."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw

from services.renderer.sketch_scene import Light, PanelPlan, Place

RGB = tuple[int, int, int]
INK: RGB = (34, 30, 38)
PAPER: RGB = (246, 241, 228)
STAMP: RGB = (190, 36, 36)
WHITE: RGB = (255, 255, 255)


# --- colour -------------------------------------------------------------------------------------------------------


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """``a`` moved a fraction ``t`` of the way to ``b``."""
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def rgba(color: RGB, alpha: int) -> tuple[int, int, int, int]:
    return (*color, alpha)


@dataclass(frozen=True)
class Sky:
    top: RGB
    bottom: RGB
    light: RGB  # the sun, moon or flame
    tint: RGB  # what the light does to everything it falls on
    tint_amount: float
    backlit: bool  # figures read as silhouettes against the light


SKIES: dict[Light, Sky] = {
    Light.DAY: Sky((96, 158, 222), (196, 224, 244), (255, 248, 214), (255, 255, 240), 0.0, False),
    Light.GOLDEN: Sky((236, 164, 92), (255, 222, 150), (255, 236, 170), (255, 178, 84), 0.28, False),
    Light.SUNSET: Sky((98, 66, 132), (250, 132, 70), (255, 196, 96), (236, 104, 60), 0.38, True),
    Light.DAWN: Sky((132, 146, 206), (252, 196, 176), (255, 236, 206), (236, 170, 186), 0.22, False),
    Light.NIGHT: Sky((10, 16, 44), (40, 56, 100), (236, 236, 212), (22, 30, 66), 0.78, True),
    Light.OVERCAST: Sky((128, 134, 146), (184, 188, 194), (214, 216, 220), (120, 126, 138), 0.3, False),
    Light.CANDLE: Sky((44, 26, 18), (96, 56, 30), (255, 200, 110), (150, 80, 30), 0.36, False),
}


@dataclass(frozen=True)
class Ground:
    far: RGB
    near: RGB
    feature: RGB  # hills, trees, houses, rocks


GROUNDS: dict[Place, Ground] = {
    Place.STEPPE: Ground((196, 184, 110), (150, 140, 72), (164, 160, 96)),
    Place.DESERT: Ground((232, 196, 132), (206, 160, 96), (220, 178, 112)),
    Place.FOREST: Ground((96, 132, 76), (58, 92, 50), (44, 84, 52)),
    Place.SNOW: Ground((234, 240, 246), (206, 216, 228), (140, 150, 170)),
    Place.SEA: Ground((54, 110, 160), (226, 206, 160), (40, 92, 140)),
    Place.MOUNTAINS: Ground((150, 148, 132), (116, 112, 96), (120, 122, 136)),
    Place.VILLAGE: Ground((196, 170, 128), (164, 136, 96), (178, 140, 100)),
    Place.INTERIOR: Ground((120, 80, 50), (96, 62, 38), (170, 120, 80)),
}
CLOTH: tuple[RGB, ...] = ((52, 84, 140), (140, 52, 48), (70, 110, 80), (120, 84, 46), (92, 64, 120))
SKIN: RGB = (222, 176, 138)


def character_cloth(character: str) -> RGB:
    """The colour ``character`` (a trigger token) wears in every panel it is in, whatever the frame's seed: the same
    character looks the same from frame to frame, as the storyboard promises."""
    return CLOTH[zlib.crc32(character.encode()) % len(CLOTH)]


@dataclass(frozen=True)
class Palette:
    sky: Sky
    ground: Ground
    cloth: RGB
    skin: RGB

    @property
    def others(self) -> tuple[RGB, ...]:
        """Clothes for everyone else in a panel: never the character's colour, so that no one is taken for them."""
        return tuple(color for color in CLOTH if color != self.cloth)

    def lit(self, color: RGB) -> RGB:
        """``color`` as the scene's light colours it."""
        return mix(color, self.sky.tint, self.sky.tint_amount)

    def figure(self, color: RGB) -> RGB:
        """A figure's colour: nearly ink against a low sun or at night, else lit like the rest."""
        return mix(self.lit(color), INK, 0.72) if self.sky.backlit else self.lit(color)


# --- the canvas -----------------------------------------------------------------------------------------------------


@dataclass
class Canvas:
    """The scene part of a panel and what every drawing step needs: pen width, palette, seeded randomness."""

    image: Image.Image
    width: int  # of the scene area, which starts at (0, 0)
    height: int
    plan: PanelPlan
    palette: Palette
    rng: random.Random
    facing: int  # +1: the character looks right; -1: left

    def __post_init__(self) -> None:
        self.draw = ImageDraw.Draw(self.image, "RGBA")
        self.line = max(1, round(min(self.width, self.height) / 190))
        self.unit = min(self.width, self.height)

    def x(self, fraction: float) -> float:
        return fraction * self.width

    def y(self, fraction: float) -> float:
        return fraction * self.height

    def vary(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def shape(self, points: list[tuple[float, float]], fill: RGB, *, outline: bool = True) -> None:
        self.draw.polygon(points, fill=fill, outline=INK if outline else None, width=self.line if outline else 0)

    def ellipse(self, box: tuple[float, float, float, float], fill: RGB | None, *, outline: bool = True) -> None:
        x0, y0, x1, y1 = box
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self.draw.ellipse(box, fill=fill, outline=INK if outline else None, width=self.line if outline else 0)

    def stroke(self, points: list[tuple[float, float]], width: float = 1.0, color: RGB = INK, alpha: int = 255) -> None:
        self.draw.line(points, fill=rgba(color, alpha), width=max(1, round(self.line * width)), joint="curve")


def vertical_gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    """An image fading from ``top`` to ``bottom``; built from Pillow's gradient, so it costs no per-row drawing."""
    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def glow(canvas: Canvas, center: tuple[float, float], radius: float, color: RGB, strength: float) -> None:
    """A soft round light: Pillow's radial gradient scaled to ``radius`` and laid over the scene in ``color``."""
    size = max(2, round(radius * 2))
    falloff = Image.radial_gradient("L").resize((size, size), Image.Resampling.BILINEAR)
    mask = falloff.point(lambda v: max(0, round((255 - min(255, v * 1.4)) * strength)))
    left, top = round(center[0] - radius), round(center[1] - radius)
    canvas.image.paste(Image.new("RGB", (size, size), color), (left, top), mask)


def vignette(canvas: Canvas, strength: float, color: RGB = INK) -> None:
    """Dark edges, as if seen from inside the character's eyes."""
    size = (canvas.width, canvas.height)
    falloff = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    mask = falloff.point(lambda v: max(0, min(255, round((v - 120) * 2.2 * strength))))
    canvas.image.paste(Image.new("RGB", size, color), (0, 0), mask)
