"""The people and horses of a sketch panel: standing figures, riders, busts, faces with expressions, hands."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from services.renderer.sketch_canvas import INK, RGB, Canvas, mix
from services.renderer.sketch_scene import Expression

# --- people and horses ----------------------------------------------------------------------------------------------


def draw_person(canvas: Canvas, x: float, feet: float, height: float, facing: int, cloth: RGB) -> None:
    """A standing figure, ``height`` tall, feet at (x, feet)."""
    palette = canvas.palette
    body, skin = palette.figure(cloth), palette.figure(palette.skin)
    h = height
    r = h * 0.08
    shoulder, hem = feet - h * 0.8, feet - h * 0.36
    for dx in (-0.06, 0.06):  # legs
        canvas.stroke([(x + dx * h, hem), (x + dx * h * 1.3, feet)], h / canvas.line * 0.07, mix(body, INK, 0.4))
    canvas.shape([(x - h * 0.11, shoulder), (x + h * 0.11, shoulder), (x + h * 0.16, hem), (x - h * 0.16, hem)], body)
    canvas.stroke(
        [(x + facing * h * 0.1, shoulder + h * 0.03), (x + facing * h * 0.22, shoulder + h * 0.3)],
        h / canvas.line * 0.05,
        body,
    )
    canvas.stroke(
        [(x - facing * h * 0.1, shoulder + h * 0.03), (x - facing * h * 0.16, shoulder + h * 0.34)],
        h / canvas.line * 0.05,
        body,
    )
    canvas.ellipse((x - r, shoulder - r * 2.3, x + r, shoulder - r * 0.3), skin)
    canvas.draw.chord((x - r, shoulder - r * 2.3, x + r, shoulder - r * 0.3), 180, 360, fill=mix(body, INK, 0.5))


Point = tuple[float, float]
# A part of a figure: ("ellipse", box), ("polygon", points) or ("capsule", (a, b, width)).
Part = tuple[str, object]


def figure_shape(canvas: Canvas, parts: list[Part], fill: RGB) -> None:
    """Parts drawn as one shape with one outline: every part in ink, a little larger, then every part in ``fill``."""
    pad = canvas.line
    for color, extra in ((INK, pad), (fill, 0.0)):
        for kind, geometry in parts:
            if kind == "ellipse":
                x0, y0, x1, y1 = geometry  # type: ignore[misc]
                box = (min(x0, x1) - extra, min(y0, y1) - extra, max(x0, x1) + extra, max(y0, y1) + extra)
                canvas.draw.ellipse(box, fill=color)
            elif kind == "polygon":
                canvas.draw.polygon(geometry, fill=color, outline=color, width=round(extra * 2))  # type: ignore[arg-type]
            else:
                a, b, width = geometry  # type: ignore[misc]
                w = width + extra * 2
                canvas.draw.line([a, b], fill=color, width=max(1, round(w)))
                for px, py in (a, b):
                    canvas.draw.ellipse((px - w / 2, py - w / 2, px + w / 2, py + w / 2), fill=color)


def draw_horse(canvas: Canvas, x: float, ground: float, length: float, facing: int) -> Point:
    """A horse seen from the side, ``length`` long, hooves on ``ground``; returns where a rider sits."""
    coat = canvas.palette.figure((120, 76, 44))
    far_side, mane = mix(coat, INK, 0.3), mix(coat, INK, 0.6)

    def at(ax: float, ay: float) -> Point:
        return (x + facing * ax * length, ground - ay * length)

    def leg(ax: float) -> list[Part]:
        knee = at(ax + 0.02, 0.28)
        return [
            ("capsule", (at(ax, 0.56), knee, length * 0.085)),
            ("capsule", (knee, at(ax + 0.01, 0.03), length * 0.05)),
        ]

    figure_shape(canvas, [*leg(0.36), *leg(-0.38)], far_side)  # the legs on the far side, in shadow
    figure_shape(canvas, [("capsule", (at(-0.42, 0.72), at(-0.52, 0.4), length * 0.06))], mane)  # tail
    figure_shape(
        canvas,
        [
            *leg(0.26),
            *leg(-0.3),
            ("ellipse", (*at(-0.42, 0.77), *at(0.42, 0.47))),
            ("ellipse", (*at(0.15, 0.79), *at(0.45, 0.48))),  # chest
            ("ellipse", (*at(-0.45, 0.8), *at(-0.15, 0.5))),  # rump
            ("polygon", [at(0.2, 0.74), at(0.42, 1.02), at(0.55, 1.0), at(0.47, 0.55)]),  # neck
            ("polygon", [at(0.42, 1.05), at(0.55, 1.08), at(0.8, 0.84), at(0.78, 0.78), at(0.7, 0.76), at(0.5, 0.88)]),
            ("polygon", [at(0.46, 1.04), at(0.49, 1.16), at(0.54, 1.06)]),  # ear
        ],
        coat,
    )
    canvas.draw.polygon([at(0.21, 0.77), at(0.42, 1.05), at(0.47, 1.04), at(0.3, 0.74)], fill=mane)  # mane
    eye = at(0.56, 0.95)
    r = max(1.0, length * 0.015)
    canvas.draw.ellipse((eye[0] - r, eye[1] - r, eye[0] + r, eye[1] + r), fill=INK)
    return at(-0.04, 0.78)


def draw_rider(canvas: Canvas, x: float, ground: float, height: float, facing: int, cloth: RGB) -> None:
    """A figure on horseback; ``height`` is the figure's standing height, which sets the horse's size."""
    length = height * 1.05
    seat_x, seat_y = draw_horse(canvas, x, ground, length, facing)
    palette = canvas.palette
    body, skin = palette.figure(cloth), palette.figure(palette.skin)
    h, d = height, facing

    def at(ax: float, ay: float) -> Point:
        return (seat_x + d * ax * h, seat_y - ay * h)

    knee, hands = at(0.12, -0.1), at(0.3, 0.14)
    figure_shape(
        canvas,
        [
            ("capsule", (at(0, 0.02), knee, h * 0.09)),
            ("capsule", (knee, at(0.08, -0.3), h * 0.075)),
            ("polygon", [at(-0.1, 0.4), at(0.12, 0.41), at(0.13, 0.0), at(-0.12, 0.0)]),
        ],
        body,
    )
    elbow = at(0.16, 0.2)
    figure_shape(canvas, [("capsule", (at(0.06, 0.36), elbow, h * 0.06)), ("capsule", (elbow, hands, h * 0.055))], body)
    canvas.stroke([hands, (x + d * 0.72 * length, ground - 0.82 * length)], 0.6, (60, 36, 20))  # reins
    r = h * 0.08
    head = at(0.02, 0.49)
    canvas.ellipse((head[0] - r, head[1] - r, head[0] + r, head[1] + r), skin)
    canvas.draw.chord((head[0] - r, head[1] - r, head[0] + r, head[1] + r), 180, 360, fill=mix(body, INK, 0.5))


def draw_face(canvas: Canvas, cx: float, cy: float, rx: float, ry: float, look: float) -> None:
    """A face: head, ears, hair, eyes looking ``look`` (-1 left .. 1 right), brows and mouth from the expression."""
    palette, expression = canvas.palette, canvas.plan.expression
    skin = palette.lit(palette.skin)
    hair = mix(palette.lit((60, 40, 30)), INK, 0.3)
    lw = max(1.0, rx / canvas.line * 0.035)
    for side in (-1, 1):  # ears
        ex = cx + side * rx * 0.98
        canvas.ellipse((ex - rx * 0.13, cy - ry * 0.12, ex + rx * 0.13, cy + ry * 0.2), skin)
    canvas.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), skin)
    shade_face(canvas, cx, cy, rx, ry)
    draw_hair(canvas, cx, cy, rx, ry, hair)
    eye_y = cy - ry * 0.08
    shift = look * rx * 0.16
    for side in (-1, 1):
        ex = cx + side * rx * 0.38 + shift
        ew, eh = rx * 0.17, ry * (0.05 if expression is Expression.SLY else 0.085)
        canvas.ellipse((ex - ew, eye_y - eh, ex + ew, eye_y + eh), (250, 248, 240))
        pr = min(ew, eh) * 0.85
        px = ex + look * ew * 0.4
        canvas.ellipse((px - pr, eye_y - pr, px + pr, eye_y + pr), INK, outline=False)
        draw_brow(canvas, ex, eye_y - ry * 0.2, rx * 0.22, side, expression, lw)
    nose_x = cx + shift * 1.2
    canvas.stroke(
        [(nose_x, eye_y + ry * 0.05), (nose_x + look * rx * 0.1, cy + ry * 0.3), (nose_x, cy + ry * 0.33)], lw * 0.8
    )
    draw_mouth(canvas, cx + shift, cy + ry * 0.55, rx * 0.32, ry, expression, lw)


def draw_hair(canvas: Canvas, cx: float, cy: float, rx: float, ry: float, color: RGB) -> None:
    """Hair over the top of the head down to the temples, with an uneven hairline."""
    crown = [
        (cx + rx * 1.02 * math.cos(math.radians(a)), cy + ry * 1.03 * math.sin(math.radians(a)))
        for a in range(195, 346, 10)
    ]
    (left_x, left_y), (right_x, right_y) = crown[0], crown[-1]
    hairline = []
    for i in range(11):
        t = i / 10
        rise = 0.3 * math.sin(math.pi * t) - (0.06 if i % 2 else 0.0)  # higher at the forehead than the temples
        hairline.append((right_x + (left_x - right_x) * t, right_y + (left_y - right_y) * t - ry * rise))
    canvas.shape(crown + hairline, color)


def shade_face(canvas: Canvas, cx: float, cy: float, rx: float, ry: float) -> None:
    """A crescent of shadow on the side away from the light, cut through masks so it stays on the face."""
    box = (round(cx - rx), round(cy - ry), round(cx + rx), round(cy + ry))
    w, h = box[2] - box[0], box[3] - box[1]
    if w < 4 or h < 4:
        return
    mask = Image.new("L", (w, h), 0)
    mask_draw = ImageDraw.Draw(mask)
    mask_draw.ellipse((0, 0, w - 1, h - 1), fill=120 if canvas.palette.sky.backlit else 80)
    shift = w * 0.3 * canvas.facing  # the lit part is toward where the character looks
    mask_draw.ellipse((shift - w * 0.05, -h * 0.1, w + shift + w * 0.05, h * 1.02), fill=0)
    canvas.image.paste(Image.new("RGB", (w, h), INK), box[:2], mask)


def draw_brow(canvas: Canvas, ex: float, by: float, half: float, side: int, expression: Expression, lw: float) -> None:
    tilt = {Expression.DETERMINED: 0.35, Expression.SAD: -0.35, Expression.SURPRISED: -0.1, Expression.SLY: 0.2}
    slope = tilt.get(expression, 0.0) * half
    lift = half * (0.35 if expression is Expression.SURPRISED else 0.0)
    if expression is Expression.SLY and side > 0:
        slope, lift = -slope, half * 0.3  # one brow raised
    inner, outer = ex - side * half, ex + side * half
    canvas.stroke([(inner, by + slope - lift), (outer, by - slope - lift)], lw * 1.4)


def draw_mouth(canvas: Canvas, mx: float, my: float, half: float, ry: float, expression: Expression, lw: float) -> None:
    box = (mx - half, my - ry * 0.12, mx + half, my + ry * 0.12)
    if expression is Expression.HAPPY:
        canvas.draw.arc(box, 15, 165, fill=INK, width=round(lw * 1.2))
    elif expression is Expression.SAD:
        canvas.draw.arc((box[0], my, box[2], my + ry * 0.22), 200, 340, fill=INK, width=round(lw * 1.2))
    elif expression is Expression.SURPRISED:
        canvas.ellipse((mx - half * 0.3, my - ry * 0.06, mx + half * 0.3, my + ry * 0.1), (90, 40, 40))
    elif expression is Expression.SLY:
        canvas.stroke([(mx - half, my), (mx + half * 0.3, my + ry * 0.02), (mx + half, my - ry * 0.07)], lw * 1.2)
    elif expression is Expression.DETERMINED:
        canvas.stroke([(mx - half * 0.8, my + ry * 0.02), (mx + half * 0.8, my + ry * 0.02)], lw * 1.3)
    else:
        canvas.draw.arc(box, 40, 140, fill=INK, width=round(lw))


def draw_bust(canvas: Canvas, cx: float, head_cy: float, head_r: float, look: float, cloth: RGB) -> None:
    """A figure from the waist up: neck, sloping shoulders and arms running out of the frame, the face above."""
    palette = canvas.palette
    body = palette.lit(cloth)
    sleeve = mix(body, INK, 0.18)
    r = head_r
    neck_y = head_cy + r * 0.95
    bottom = canvas.height * 1.02
    canvas.shape(
        [
            (cx - r * 0.36, head_cy),
            (cx + r * 0.36, head_cy),
            (cx + r * 0.4, neck_y + r * 0.4),
            (cx - r * 0.4, neck_y + r * 0.4),
        ],
        palette.lit(mix(palette.skin, INK, 0.2)),
    )
    for side in (-1, 1):  # arms hang from the shoulders, a little away from the body
        canvas.shape(
            [
                (cx + side * r * 1.5, neck_y + r * 0.35),
                (cx + side * r * 2.35, neck_y + r * 0.75),
                (cx + side * r * 2.75, bottom),
                (cx + side * r * 1.75, bottom),
                (cx + side * r * 1.55, neck_y + r * 1.6),
            ],
            sleeve,
        )
    torso = [(cx - r * 0.5, neck_y + r * 0.05), (cx + r * 0.5, neck_y + r * 0.05)]
    torso += [
        (cx + r * (0.5 + 1.4 * math.sin(t / 6 * math.pi / 2)), neck_y + r * (0.05 + 0.55 * t / 6)) for t in range(7)
    ]
    torso += [
        (cx + r * 1.8, neck_y + r * 1.3),
        (cx + r * 1.75, bottom),
        (cx - r * 1.75, bottom),
        (cx - r * 1.8, neck_y + r * 1.3),
    ]
    torso += [
        (cx - r * (0.5 + 1.4 * math.sin(t / 6 * math.pi / 2)), neck_y + r * (0.05 + 0.55 * t / 6))
        for t in range(6, -1, -1)
    ]
    canvas.shape(torso, body)
    collar = mix(body, INK, 0.4)
    canvas.stroke([(cx - r * 0.5, neck_y + r * 0.05), (cx + r * 0.15, neck_y + r * 1.5)], 1.4, collar)  # robe's fold
    canvas.stroke([(cx + r * 0.15, neck_y + r * 1.5), (cx + r * 0.1, bottom)], 1.0, collar)
    belt = neck_y + r * 2.9
    if belt < canvas.height:
        canvas.shape(
            [
                (cx - r * 1.76, belt),
                (cx + r * 1.76, belt),
                (cx + r * 1.75, belt + r * 0.3),
                (cx - r * 1.75, belt + r * 0.3),
            ],
            mix(palette.lit((140, 100, 50)), INK, 0.2),
        )
    draw_face(canvas, cx, head_cy, r * 0.82, r, look)


def capsules(canvas: Canvas, parts: list[tuple[tuple[float, float], tuple[float, float], float]], fill: RGB) -> None:
    """Rounded strokes (fingers, palms, wrists) drawn as one shape: every ink outline first, then every fill."""
    for color, extra in ((INK, canvas.line * 2), (fill, 0)):
        for a, b, width in parts:
            w = width + extra
            canvas.draw.line([a, b], fill=color, width=max(1, round(w)))
            for px, py in (a, b):
                canvas.draw.ellipse((px - w / 2, py - w / 2, px + w / 2, py + w / 2), fill=color)


def draw_hand(canvas: Canvas, x: float, y: float, size: float, angle: float, *, fist: bool = False) -> None:
    """A hand with its forearm coming from out of frame below, pointing ``angle`` radians (0 = up, + = right)."""
    skin = canvas.palette.lit(canvas.palette.skin)
    sleeve = mix(canvas.palette.lit(canvas.palette.cloth), INK, 0.1)
    ux, uy = math.sin(angle), -math.cos(angle)  # along the arm, toward the fingers
    px, py = -uy, ux  # across it

    def at(along: float, across: float) -> tuple[float, float]:
        return (x + (ux * along + px * across) * size, y + (uy * along + py * across) * size)

    canvas.shape([at(-4.0, -0.55), at(-0.8, -0.5), at(-0.8, 0.5), at(-4.0, 0.55)], sleeve)
    parts = [(at(-0.85, 0), at(-0.35, 0), size * 0.62), (at(-0.2, 0), at(0.2, 0), size * 0.9)]
    if fist:
        parts += [(at(0.35, -0.3), at(0.35, 0.3), size * 0.36), (at(0.0, 0.42), at(0.3, 0.25), size * 0.24)]
    else:
        for across, length in ((-0.3, 0.55), (-0.1, 0.7), (0.1, 0.66), (0.3, 0.5)):
            parts.append((at(0.45, across), at(0.45 + length, across * 1.2), size * 0.2))
        parts.append((at(-0.1, 0.45), at(0.35, 0.75), size * 0.22))  # thumb
    capsules(canvas, parts, skin)
    if fist:
        for across in (-0.2, 0.0, 0.2):
            canvas.stroke([at(0.25, across), at(0.48, across)], 0.6)
