"""Drawing one storyboard sketch panel with Pillow: the scene framed as the shot asks, in the scene's light, with the
frame number, the shot, a SKETCH stamp and the caption.

Everything is a pure function of the panel plan, the size and the seed (a ``random.Random`` seeded with the frame's
seed places the shapes), so the same frame always gives the same bytes.
"""

from __future__ import annotations

import functools
import random
import textwrap
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from services.renderer.sketch_canvas import (
    CLOTH,
    GROUNDS,
    INK,
    PAPER,
    SKIES,
    SKIN,
    STAMP,
    WHITE,
    Canvas,
    Palette,
    character_cloth,
    glow,
    mix,
    rgba,
    vertical_gradient,
    vignette,
)
from services.renderer.sketch_figures import draw_bust, draw_face, draw_hand, draw_horse, draw_person, draw_rider
from services.renderer.sketch_scene import Light, PanelPlan, Place, Shot
from services.renderer.sketch_scenery import draw_backdrop, draw_door, draw_fire, draw_yurt

MAX_CAPTION_LINES = 3


# --- shots ------------------------------------------------------------------------------------------------------------


def shot_wide(canvas: Canvas) -> None:
    """A small figure in a large scene: a horizon far away, the figure on a third."""
    draw_figure_in_scene(canvas, horizon=canvas.vary(0.52, 0.62), size=0.16, yurt_size=0.22)


def shot_full(canvas: Canvas) -> None:
    """The whole figure, head to feet, filling most of the frame's height; the place around it."""
    draw_figure_in_scene(canvas, horizon=canvas.vary(0.45, 0.52), size=0.5, yurt_size=0.3)


def draw_figure_in_scene(canvas: Canvas, *, horizon: float, size: float, yurt_size: float) -> None:
    """The backdrop, then (as the scene says) a yurt with a track to it, the figure or rider, a fire, a crowd.
    ``size`` is the figure's standing height as a fraction of the frame's; the feet stand lower as it grows."""
    horizon_y = draw_backdrop(canvas, horizon)
    plan, u = canvas.plan, canvas.unit
    third = 1 / 3 if canvas.facing > 0 else 2 / 3
    figure_x = canvas.x(third)
    height = canvas.height * size
    if plan.place is Place.INTERIOR:
        draw_person(
            canvas, figure_x, canvas.y(0.9), max(height, canvas.height * 0.42), canvas.facing, canvas.palette.cloth
        )
        return
    if plan.yurt:
        yurt_x = canvas.x(1 - third + canvas.vary(-0.06, 0.06))
        draw_path(canvas, horizon_y, yurt_x)
        draw_yurt(
            canvas, yurt_x, horizon_y + u * 0.05, u * yurt_size, door_glow=plan.light in (Light.NIGHT, Light.SUNSET)
        )
    room_below = canvas.height - horizon_y
    feet = horizon_y + room_below * (canvas.vary(0.45, 0.6) if size < 0.3 else 0.85)
    if plan.horse:
        draw_rider(canvas, figure_x, feet, height * (0.75 if size >= 0.3 else 1.0), canvas.facing, canvas.palette.cloth)
    else:
        draw_person(canvas, figure_x, feet, height * 1.2, canvas.facing, canvas.palette.cloth)
    if plan.fire:
        draw_fire(canvas, figure_x + canvas.facing * height * 0.8, feet, height * 0.3)
    if plan.crowd:
        for k in range(4):
            cx = figure_x + canvas.facing * height * (1.2 + k * 0.45)
            cloth = canvas.palette.others[k % len(canvas.palette.others)]
            draw_person(canvas, cx, feet - height * 0.1 * (k % 2), height * 1.05, -canvas.facing, cloth)


def draw_path(canvas: Canvas, horizon: float, toward: float) -> None:
    """A track leading from the viewer to ``toward`` on the horizon: depth for free."""
    color = mix(canvas.palette.lit(canvas.palette.ground.near), WHITE, 0.2)
    near = canvas.x(0.5)
    canvas.draw.polygon(
        [
            (toward - canvas.unit * 0.01, horizon + canvas.unit * 0.05),
            (toward + canvas.unit * 0.01, horizon + canvas.unit * 0.05),
            (near + canvas.unit * 0.16, canvas.height),
            (near - canvas.unit * 0.1, canvas.height),
        ],
        fill=rgba(color, 150),
    )


def shot_medium(canvas: Canvas) -> None:
    """Waist-up: the figure fills the lower frame, the background soft behind it."""
    draw_backdrop(canvas, canvas.vary(0.55, 0.68), blur=canvas.unit / 160)
    plan = canvas.plan
    if plan.yurt and plan.place is not Place.INTERIOR:
        draw_yurt(
            canvas,
            canvas.x(0.5 - canvas.facing * 0.3),
            canvas.y(0.7),
            canvas.unit * 0.45,
            door_glow=plan.light in (Light.NIGHT, Light.SUNSET),
        )
    cx = canvas.x(0.5 + canvas.facing * canvas.vary(0.1, 0.16))
    head_r = canvas.unit * 0.12
    draw_bust(canvas, cx, canvas.y(0.36), head_r, canvas.facing * 0.6, canvas.palette.cloth)
    if plan.horse:
        draw_horse_neck(canvas, cx + canvas.facing * head_r * 2.6)


def draw_horse_neck(canvas: Canvas, x: float) -> None:
    """The horse's neck and head rising into the bottom of a medium shot, in front of its rider."""
    d, bottom = canvas.facing, canvas.height
    k = canvas.unit * 0.42
    coat = canvas.palette.lit((120, 76, 44))
    dark = mix(coat, INK, 0.55)

    def at(ax: float, ay: float) -> tuple[float, float]:
        return (x + d * ax * k, bottom - ay * k)

    canvas.shape(
        [
            at(-0.45, -0.05),
            at(-0.05, 0.85),
            at(0.25, 1.08),
            at(0.45, 1.05),
            at(0.95, 0.62),
            at(0.9, 0.47),
            at(0.6, 0.5),
            at(0.5, 0.3),
            at(0.55, -0.05),
        ],
        coat,
    )
    canvas.shape([at(0.2, 1.05), at(0.22, 1.25), at(0.32, 1.06)], coat)  # ear
    canvas.ellipse((*at(0.42, 0.9), *at(0.5, 0.84)), INK, outline=False)  # eye
    canvas.ellipse((*at(0.84, 0.6), *at(0.9, 0.55)), dark, outline=False)  # nostril
    for i in range(6):  # mane along the crest
        t = i / 5
        base = (-0.05 + t * 0.25, 0.85 + t * 0.22)
        canvas.stroke([at(base[0] - 0.05 - t * 0.3, base[1] - 0.95 + t * 0.9), at(*base)], 2.2, dark)
    canvas.stroke([at(0.5, 0.7), at(0.05, 0.2), at(-0.1, -0.05)], 1.4, (60, 36, 20))  # rein


def shot_close_up(canvas: Canvas) -> None:
    """A face filling the panel, lit from the side the light comes from; or a hand at work if the scene is one."""
    sky = canvas.palette.sky
    if canvas.plan.hand and not canvas.plan.face:
        close_up_hand(canvas)
        return
    draw_backdrop(canvas, canvas.vary(0.6, 0.7), blur=canvas.unit / 45)  # the place, far out of focus
    for _ in range(6):  # out-of-focus lights behind
        r = canvas.unit * canvas.vary(0.04, 0.1)
        bx, by = canvas.vary(0, canvas.width), canvas.vary(0, canvas.height * 0.7)
        canvas.draw.ellipse((bx - r, by - r, bx + r, by + r), fill=rgba(sky.light, 60))
    cx = canvas.x(0.5 + canvas.facing * 0.06)
    ry = canvas.height * 0.4
    rx = min(ry * 0.8, canvas.width * 0.36)
    cy = canvas.y(0.48)
    cloth = canvas.palette.lit(canvas.palette.cloth)
    canvas.shape(
        [
            (cx - rx * 2.4, canvas.height * 1.02),
            (cx - rx * 1.0, cy + ry * 1.05),
            (cx + rx * 1.0, cy + ry * 1.05),
            (cx + rx * 2.4, canvas.height * 1.02),
        ],
        cloth,
    )  # shoulders, cut by the frame
    neck = canvas.palette.lit(mix(canvas.palette.skin, INK, 0.2))
    canvas.shape(
        [
            (cx - rx * 0.45, cy + ry * 0.6),
            (cx + rx * 0.45, cy + ry * 0.6),
            (cx + rx * 0.5, cy + ry * 1.15),
            (cx - rx * 0.5, cy + ry * 1.15),
        ],
        neck,
    )
    draw_face(canvas, cx, cy, rx, ry, canvas.facing * 0.5)
    glow(canvas, (cx + canvas.facing * rx * 1.4, cy - ry * 0.3), rx * 1.1, sky.light, 0.35)  # rim light


def close_up_hand(canvas: Canvas) -> None:
    """A hand at a door (or reaching for something) filling the panel."""
    palette = canvas.palette
    felt = palette.lit((226, 212, 186))
    canvas.image.paste(vertical_gradient((canvas.width, canvas.height), felt, mix(felt, INK, 0.25)), (0, 0))
    for i in range(-6, 14):  # the yurt's lattice showing through its felt wall
        x0 = canvas.x(i * 0.1)
        canvas.stroke([(x0, 0), (x0 + canvas.height * 0.8, canvas.height)], 0.8, INK, 50)
        canvas.stroke([(x0 + canvas.height * 0.8, 0), (x0, canvas.height)], 0.8, INK, 50)
    if canvas.plan.door or canvas.plan.yurt:
        left = canvas.x(0.5 - 0.25 * canvas.facing) - canvas.unit * 0.35
        edge = draw_door(canvas, (left, canvas.y(0.06), left + canvas.unit * 0.7, canvas.height * 1.05), 0.3)
        draw_hand(canvas, edge - canvas.unit * 0.02, canvas.y(0.58), canvas.unit * 0.13, 0.35)
    else:
        draw_hand(canvas, canvas.x(0.5), canvas.y(0.55), canvas.unit * 0.16, canvas.facing * 0.4)


def shot_pov(canvas: Canvas) -> None:
    """What the character sees: the scene ahead, and the edges of the character's own view (hands, the horse)."""
    horizon = draw_backdrop(canvas, canvas.vary(0.45, 0.55))
    plan, u = canvas.plan, canvas.unit
    if plan.yurt and plan.place is not Place.INTERIOR:
        target = canvas.x(canvas.vary(0.4, 0.6))
        draw_path(canvas, horizon, target)
        draw_yurt(canvas, target, horizon + u * 0.03, u * 0.16, door_glow=plan.light in (Light.NIGHT, Light.SUNSET))
    elif plan.door:
        draw_door(canvas, (canvas.x(0.35), canvas.y(0.2), canvas.x(0.65), canvas.y(0.85)), 0.3)
    elif plan.crowd:
        for k in range(3):
            cloth = canvas.palette.others[k]
            draw_person(canvas, canvas.x(0.3 + k * 0.2), horizon + u * 0.2, u * 0.35, -1 if k else 1, cloth)
    if plan.horse:
        draw_pov_horse(canvas)
    else:
        draw_hand(canvas, canvas.x(0.5) - u * 0.42, canvas.height * 0.9, u * 0.1, 0.35)
        draw_hand(canvas, canvas.x(0.5) + u * 0.42, canvas.height * 0.9, u * 0.1, -0.35)
    vignette(canvas, 0.75)


def draw_pov_horse(canvas: Canvas) -> None:
    """From the saddle: the horse's neck, mane and ears at the bottom, reins running to the rider's fists."""
    u, w, h = canvas.unit, canvas.width, canvas.height
    coat = canvas.palette.lit((120, 76, 44))
    mane = mix(coat, INK, 0.6)
    cx, top = w / 2, h - u * 0.3
    canvas.shape([(cx - u * 0.34, h * 1.02), (cx - u * 0.1, top), (cx + u * 0.1, top), (cx + u * 0.34, h * 1.02)], coat)
    for side in (-1, 1):
        canvas.shape(
            [
                (cx + side * u * 0.1, top + u * 0.02),
                (cx + side * u * 0.13, top - u * 0.11),
                (cx + side * u * 0.04, top + u * 0.01),
            ],
            coat,
        )
    canvas.shape(
        [
            (cx - u * 0.05, h * 1.02),
            (cx - u * 0.03, top + u * 0.02),
            (cx + u * 0.03, top + u * 0.02),
            (cx + u * 0.05, h * 1.02),
        ],
        mane,
        outline=False,
    )
    for side in (-1, 1):
        canvas.stroke([(cx + side * u * 0.1, top + u * 0.06), (cx + side * u * 0.28, h * 0.9)], 1.3, (60, 36, 20))
    draw_hand(canvas, cx - u * 0.3, h * 0.93, u * 0.07, 0.9, fist=True)
    draw_hand(canvas, cx + u * 0.3, h * 0.93, u * 0.07, -0.9, fist=True)


def shot_over_the_shoulder(canvas: Canvas) -> None:
    """Past the back of one character's head and shoulder to what, or whom, they face."""
    draw_backdrop(canvas, canvas.vary(0.55, 0.65), blur=canvas.unit / 200)
    plan, u, side = canvas.plan, canvas.unit, canvas.facing
    far_x = canvas.x(0.5 + side * 0.15)
    if plan.yurt and plan.place is not Place.INTERIOR and not plan.crowd:
        draw_yurt(canvas, far_x, canvas.y(0.72), u * 0.4, door_glow=plan.light in (Light.NIGHT, Light.SUNSET))
    elif plan.horse and not plan.crowd:
        draw_horse(canvas, far_x, canvas.y(0.86), u * 0.42, -side)
    else:
        other = CLOTH[(CLOTH.index(canvas.palette.cloth) + 2) % len(CLOTH)]
        draw_bust(canvas, far_x, canvas.y(0.38), u * 0.09, -side * 0.6, other)
    # The near character, from behind: shoulder and back of the head, dark, cut by the frame's edge.
    near_x = canvas.x(0.5 - side * 0.36)
    dark = mix(canvas.palette.lit(canvas.palette.cloth), INK, 0.72)
    hair = mix(canvas.palette.lit((60, 40, 30)), INK, 0.6)
    r = u * 0.24
    head_y = canvas.y(0.62)
    canvas.shape(
        [
            (near_x - side * r * 3.2, canvas.height * 1.02),
            (near_x - side * r * 2.2, head_y + r * 1.05),
            (near_x + side * r * 1.4, head_y + r * 1.15),
            (near_x + side * r * 2.6, canvas.height * 1.02),
        ],
        dark,
    )
    canvas.shape(
        [
            (near_x - r * 0.45, head_y + r * 0.5),
            (near_x + r * 0.45, head_y + r * 0.5),
            (near_x + r * 0.5, head_y + r * 1.2),
            (near_x - r * 0.5, head_y + r * 1.2),
        ],
        mix(canvas.palette.lit(canvas.palette.skin), INK, 0.6),
    )  # neck
    ear_x = near_x + side * r * 0.84
    canvas.ellipse(
        (ear_x - r * 0.16, head_y - r * 0.1, ear_x + r * 0.16, head_y + r * 0.32),
        mix(canvas.palette.lit(canvas.palette.skin), INK, 0.45),
    )
    canvas.ellipse((near_x - r * 0.85, head_y - r, near_x + r * 0.85, head_y + r * 0.85), hair)
    glow(canvas, (near_x + side * r * 0.9, head_y - r * 0.4), r * 0.55, canvas.palette.sky.light, 0.3)  # rim light


SHOTS: dict[Shot, Callable[[Canvas], None]] = {
    Shot.WIDE: shot_wide,
    Shot.FULL: shot_full,
    Shot.MEDIUM: shot_medium,
    Shot.CLOSE_UP: shot_close_up,
    Shot.POV: shot_pov,
    Shot.OVER_THE_SHOULDER: shot_over_the_shoulder,
}


# --- text -----------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's embedded font, so every machine draws the same letters without font files."""
    return ImageFont.load_default(size=size)


def printable(text: str) -> str:
    """``text`` in the letters the embedded font has: accents folded away, anything else shown as '?'."""
    folded = unicodedata.normalize("NFKD", text)
    out = []
    for char in folded:
        if unicodedata.combining(char):
            continue
        out.append(char if 32 <= ord(char) < 127 else ("-" if char in "\u2013\u2014" else "?"))
    return " ".join("".join(out).split())


def wrap(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most ``max_lines``, the last one ending in '...' if cut."""
    average = max(1.0, face.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    lines = textwrap.wrap(text, width=max(8, int(width / average)), break_long_words=True) or [""]
    while any(face.getlength(line) > width for line in lines) and lines:
        chars = max(8, int(max(len(line) for line in lines) * 0.92))
        lines = textwrap.wrap(text, width=chars, break_long_words=True)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and face.getlength(last + "...") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."  # the text goes on
    return lines


@dataclass(frozen=True)
class Caption:
    lines: list[str]
    size: int
    band: int  # height of the caption band


def layout_caption(text: str, width: int, height: int) -> Caption:
    size = max(11, min(40, round(min(width, height) / 30)))
    face = font(size)
    lines = wrap(printable(text), face, width - size * 1.6, MAX_CAPTION_LINES)
    line_height = round(size * 1.25)
    band = line_height * max(2, len(lines)) + size
    return Caption(lines, size, band)


def draw_caption(image: Image.Image, caption: Caption) -> None:
    draw = ImageDraw.Draw(image)
    top = image.height - caption.band
    draw.rectangle((0, top, image.width, image.height), fill=PAPER)
    draw.line((0, top, image.width, top), fill=INK, width=max(1, round(min(image.size) / 150)))
    face = font(caption.size)
    line_height = round(caption.size * 1.25)
    y = top + caption.size * 0.5
    for line in caption.lines:
        draw.text((caption.size * 0.8, y), line, font=face, fill=INK)
        y += line_height


def fit(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """``text``, cut with '...' if it is wider than ``width`` pixels."""
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def draw_labels(image: Image.Image, frame: int, camera_label: str, seed: int, scene_height: int) -> None:
    """The SKETCH stamp top right, frame number and shot top left, the seed small at the bottom of the scene."""
    draw = ImageDraw.Draw(image, "RGBA")
    size = max(10, min(34, round(min(image.size) / 26)))
    face = font(size)
    pad = round(size * 0.45)
    margin = round(size * 0.6)
    right = image.width - margin
    stamp_width = face.getlength("SKETCH") + size * 0.1
    stamp_box = (right - stamp_width - pad * 2, margin, right, margin + size + pad * 2)
    draw.rectangle(stamp_box, fill=(*STAMP, 255), outline=(*WHITE, 255), width=max(1, size // 10))
    bold = max(0, size // 18)
    draw.text((stamp_box[0] + pad, margin + pad), "SKETCH", font=face, fill=WHITE, stroke_width=bold, stroke_fill=WHITE)
    room = stamp_box[0] - margin * 2 - pad * 2  # the tag stops short of the stamp
    tag = fit(f"FRAME {frame}  \u00b7  {printable(camera_label)}", face, room)
    box = (margin, margin, margin + face.getlength(tag) + pad * 2, margin + size + pad * 2)
    draw.rectangle(box, fill=(*PAPER, 235), outline=INK, width=max(1, size // 12))
    draw.text((margin + pad, margin + pad), tag, font=face, fill=INK)
    small = font(max(9, round(size * 0.65)))
    seed_text = f"seed {seed}"
    seed_width = small.getlength(seed_text)
    sy = scene_height - margin - small.size
    draw.rectangle((right - seed_width - pad * 2, sy - pad // 2, right, sy + small.size + pad // 2), fill=(*PAPER, 170))
    draw.text((right - seed_width - pad, sy), seed_text, font=small, fill=INK)


# --- the panel --------------------------------------------------------------------------------------------------------


def panel_palette(plan: PanelPlan, rng: random.Random) -> Palette:
    """The panel's colours: its light's sky, its place's ground, and its character's clothes, which are theirs in
    every frame (a seeded pick where the frame names no character)."""
    cloth = character_cloth(plan.character) if plan.character else rng.choice(CLOTH)
    return Palette(SKIES[plan.light], GROUNDS[plan.place], cloth, SKIN)


def draw_panel(plan: PanelPlan, *, frame: int, seed: int, width: int, height: int) -> Image.Image:
    """One storyboard sketch panel, ``width`` x ``height``, for ``plan``; the same arguments give the same pixels."""
    rng = random.Random(seed)
    caption = layout_caption(plan.caption, width, height)
    scene_height = height - caption.band
    palette = panel_palette(plan, rng)
    scene = Image.new("RGB", (width, scene_height), palette.sky.bottom)
    canvas = Canvas(scene, width, scene_height, plan, palette, rng, facing=1 if rng.random() < 0.5 else -1)
    SHOTS[plan.shot](canvas)
    panel = Image.new("RGB", (width, height), PAPER)
    panel.paste(scene, (0, 0))
    draw_caption(panel, caption)
    draw_labels(panel, frame, plan.camera_label, seed, scene_height)
    border = max(2, round(min(width, height) / 128))
    ImageDraw.Draw(panel).rectangle((0, 0, width - 1, height - 1), outline=INK, width=border)
    return panel
