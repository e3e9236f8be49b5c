"""The places of a sketch panel: sky, sun and moon, land by kind of place, yurts, fires, rooms and doors."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFilter

from services.renderer.sketch_canvas import INK, RGB, WHITE, Canvas, glow, mix, rgba, vertical_gradient
from services.renderer.sketch_scene import Light, Place

# --- the backdrop: sky, light, land -----------------------------------------------------------------------------


def draw_sky(canvas: Canvas, horizon: float) -> None:
    sky = canvas.palette.sky
    size = (canvas.width, max(1, round(horizon)))
    canvas.image.paste(vertical_gradient(size, sky.top, sky.bottom), (0, 0))
    light = canvas.plan.light
    if light is Light.NIGHT:
        draw_stars_and_moon(canvas, horizon)
    elif light is Light.OVERCAST:
        draw_clouds(canvas, horizon, (150, 154, 162), count=7, alpha=200)
    else:
        draw_sun(canvas, horizon)
        draw_clouds(canvas, horizon, mix(sky.bottom, WHITE, 0.6), count=3, alpha=120)


def draw_sun(canvas: Canvas, horizon: float) -> None:
    sky = canvas.palette.sky
    side = canvas.vary(0.15, 0.35) if canvas.rng.random() < 0.5 else canvas.vary(0.65, 0.85)
    heights = {Light.DAY: 0.22, Light.GOLDEN: 0.7, Light.SUNSET: 1.0, Light.DAWN: 0.9}
    radii = {Light.DAY: 0.05, Light.GOLDEN: 0.07, Light.SUNSET: 0.1, Light.DAWN: 0.06}
    cy = horizon * heights.get(canvas.plan.light, 0.3)
    r = canvas.unit * radii.get(canvas.plan.light, 0.05)
    cx = canvas.x(side)
    glow(canvas, (cx, cy), r * 4.5, sky.light, 0.55)
    canvas.ellipse((cx - r, cy - r, cx + r, cy + r), sky.light, outline=False)


def draw_stars_and_moon(canvas: Canvas, horizon: float) -> None:
    for _ in range(round(30 + canvas.width * canvas.height / 9000)):
        sx, sy = canvas.vary(0, canvas.width), canvas.vary(0, horizon * 0.92)
        r = canvas.line * canvas.vary(0.35, 0.9)
        canvas.ellipse((sx - r, sy - r, sx + r, sy + r), (236, 236, 220), outline=False)
    cx, cy = canvas.x(canvas.vary(0.55, 0.8)), horizon * canvas.vary(0.3, 0.45)
    r = canvas.unit * 0.055
    glow(canvas, (cx, cy), r * 4, (120, 140, 190), 0.45)
    # A crescent: the moon's disc less a disc shifted to one side, cut as a mask so the sky shows through.
    size = max(2, round(r * 2))
    mask = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask)
    mask_draw.ellipse((0, 0, size - 1, size - 1), fill=255)
    mask_draw.ellipse((size * 0.3, -size * 0.12, size * 1.3, size * 0.88), fill=0)
    canvas.image.paste(Image.new("RGB", (size, size), canvas.palette.sky.light), (round(cx - r), round(cy - r)), mask)


def draw_clouds(canvas: Canvas, horizon: float, color: RGB, *, count: int, alpha: int) -> None:
    for _ in range(count):
        cx, cy = canvas.vary(-0.1, 1.1) * canvas.width, horizon * canvas.vary(0.1, 0.6)
        w, h = canvas.unit * canvas.vary(0.12, 0.3), canvas.unit * canvas.vary(0.025, 0.05)
        for k in range(3):
            dx, dy = (k - 1) * w * 0.35, -h * 0.5 * (k == 1)
            canvas.draw.ellipse((cx + dx - w / 2, cy + dy - h, cx + dx + w / 2, cy + dy + h), fill=rgba(color, alpha))


def ridge(canvas: Canvas, base: float, amplitude: float, peaks: int, color: RGB, *, jagged: bool) -> None:
    """A line of hills (smooth) or mountains (jagged) standing on ``base``."""
    points = [(-canvas.width * 0.05, base)]
    steps = peaks * (2 if jagged else 8)
    phase = canvas.vary(0, math.tau)
    for i in range(steps + 1):
        t = i / steps
        if jagged:
            lift = amplitude * (canvas.vary(0.45, 1.0) if i % 2 else canvas.vary(0.0, 0.35))
        else:
            lift = amplitude * (0.55 + 0.45 * math.sin(t * peaks * math.pi + phase))
        points.append((t * canvas.width * 1.1 - canvas.width * 0.05, base - lift))
    points.append((canvas.width * 1.05, base))
    canvas.shape(points, color)


def draw_land(canvas: Canvas, horizon: float) -> None:
    """Ground from the horizon down, and what stands on the horizon for this kind of place."""
    palette, place = canvas.palette, canvas.plan.place
    ground = palette.ground
    size = (canvas.width, max(1, canvas.height - round(horizon)))
    if place is Place.SEA:
        draw_sea(canvas, horizon)
    else:
        land = vertical_gradient(size, palette.lit(ground.far), palette.lit(ground.near))
        canvas.image.paste(land, (0, round(horizon)))
    feature = palette.lit(ground.feature)
    u = canvas.unit
    if place is Place.MOUNTAINS or place is Place.SNOW:
        ridge(canvas, horizon, u * 0.3, 3, mix(feature, palette.sky.top, 0.35), jagged=True)
        ridge(canvas, horizon, u * 0.18, 4, feature, jagged=True)
        if place is Place.SNOW:
            ridge(canvas, horizon + 1, u * 0.04, 3, palette.lit(ground.far), jagged=False)
    elif place is Place.FOREST:
        draw_treeline(canvas, horizon, feature)
        for side in (0, 1):  # a big tree close by on each side gives the forest depth
            x = canvas.x(canvas.vary(-0.04, 0.06) if side == 0 else canvas.vary(0.9, 1.02))
            draw_tree(canvas, x, canvas.height * 0.98, canvas.height * canvas.vary(0.7, 0.95), mix(feature, INK, 0.2))
    elif place is Place.DESERT:
        ridge(canvas, horizon, u * 0.05, 2, palette.lit(ground.far), jagged=False)
        draw_dune_lines(canvas, horizon)
    elif place is Place.VILLAGE:
        ridge(canvas, horizon, u * 0.03, 2, mix(feature, palette.sky.bottom, 0.4), jagged=False)
        draw_houses(canvas, horizon)
    elif place is Place.STEPPE:
        ridge(canvas, horizon, u * 0.045, 2, mix(feature, palette.sky.bottom, 0.35), jagged=False)
        draw_grass(canvas, horizon)


def draw_sea(canvas: Canvas, horizon: float) -> None:
    palette = canvas.palette
    shore = horizon + (canvas.height - horizon) * 0.55
    water = vertical_gradient(
        (canvas.width, max(1, round(shore - horizon))),
        palette.lit(palette.ground.far),
        palette.lit(mix(palette.ground.far, WHITE, 0.25)),
    )
    canvas.image.paste(water, (0, round(horizon)))
    sand = vertical_gradient(
        (canvas.width, max(1, canvas.height - round(shore))),
        palette.lit(palette.ground.near),
        palette.lit(mix(palette.ground.near, INK, 0.15)),
    )
    canvas.image.paste(sand, (0, round(shore)))
    glint = mix(palette.sky.light, WHITE, 0.3)
    for _ in range(18):
        wy = canvas.vary(horizon + 2, shore - 2)
        wx = canvas.vary(0, canvas.width)
        half = canvas.unit * 0.03 * (wy - horizon) / max(1.0, shore - horizon) + canvas.line
        canvas.stroke([(wx - half, wy), (wx, wy - canvas.line), (wx + half, wy)], 0.8, glint, 170)
    canvas.stroke([(0, shore), (canvas.width, shore)], 1.0)


def draw_treeline(canvas: Canvas, horizon: float, color: RGB) -> None:
    x = -canvas.unit * 0.02
    while x < canvas.width:
        h = canvas.unit * canvas.vary(0.08, 0.17)
        w = h * 0.45
        canvas.shape([(x, horizon + 2), (x + w / 2, horizon - h), (x + w, horizon + 2)], color)
        x += w * canvas.vary(0.45, 0.8)


def draw_tree(canvas: Canvas, x: float, base: float, height: float, color: RGB) -> None:
    """A fir tree close to the camera: a trunk and three tiers of branches."""
    trunk = height * 0.05
    canvas.shape(
        [(x - trunk, base), (x - trunk, base - height * 0.3), (x + trunk, base - height * 0.3), (x + trunk, base)],
        mix(canvas.palette.lit((90, 60, 40)), INK, 0.2),
    )
    for tier in range(3):
        bottom = base - height * (0.22 + tier * 0.24)
        half = height * (0.26 - tier * 0.06)
        canvas.shape([(x - half, bottom), (x, bottom - height * 0.36), (x + half, bottom)], color)


def draw_dune_lines(canvas: Canvas, horizon: float) -> None:
    for k in range(4):
        y0 = horizon + (canvas.height - horizon) * (0.2 + 0.2 * k)
        points = [(t / 12 * canvas.width, y0 + math.sin(t / 2 + k) * canvas.unit * 0.015) for t in range(13)]
        canvas.stroke(points, 0.7, mix(canvas.palette.ground.near, INK, 0.3), 110)


def draw_grass(canvas: Canvas, horizon: float) -> None:
    color = mix(canvas.palette.lit(canvas.palette.ground.near), INK, 0.35)
    for _ in range(40):
        gx, gy = canvas.vary(0, canvas.width), canvas.vary(horizon + canvas.line * 4, canvas.height)
        h = canvas.unit * 0.025 * (gy - horizon) / max(1.0, canvas.height - horizon)
        canvas.stroke([(gx - h * 0.3, gy - h), (gx, gy), (gx + h * 0.35, gy - h * 0.9)], 0.6, color, 150)


def draw_houses(canvas: Canvas, horizon: float) -> None:
    palette = canvas.palette
    x = canvas.x(canvas.vary(0.0, 0.1))
    while x < canvas.width * 0.95:
        w, h = canvas.unit * canvas.vary(0.08, 0.13), canvas.unit * canvas.vary(0.05, 0.08)
        wall = palette.lit(mix(palette.ground.feature, WHITE, canvas.vary(0.1, 0.4)))
        canvas.shape([(x, horizon), (x, horizon - h), (x + w, horizon - h), (x + w, horizon)], wall)
        canvas.shape(
            [(x - w * 0.08, horizon - h), (x + w / 2, horizon - h * 1.6), (x + w * 1.08, horizon - h)],
            palette.lit((130, 70, 50)),
        )
        canvas.shape(
            [
                (x + w * 0.4, horizon),
                (x + w * 0.4, horizon - h * 0.55),
                (x + w * 0.6, horizon - h * 0.55),
                (x + w * 0.6, horizon),
            ],
            mix(wall, INK, 0.5),
        )
        x += w * canvas.vary(1.3, 2.2)


def draw_yurt(canvas: Canvas, cx: float, ground: float, width: float, *, door_glow: bool = False) -> None:
    """A yurt: a felt wall with its lattice, a dome roof and a door."""
    palette = canvas.palette
    felt = palette.lit((236, 226, 206))
    wall_h, roof_h = width * 0.32, width * 0.3
    left, right = cx - width / 2, cx + width / 2
    top = ground - wall_h
    canvas.draw.ellipse((left, ground - width * 0.06, right, ground + width * 0.06), fill=rgba(INK, 60))  # shadow
    canvas.shape([(left, ground), (left, top), (right, top), (right, ground)], felt)
    roof = [(left - width * 0.03, top)]
    for i in range(1, 12):
        t = i / 12
        roof.append((left + t * width, top - roof_h * math.sin(t * math.pi) ** 0.7))
    roof.append((right + width * 0.03, top))
    canvas.shape(roof, mix(felt, WHITE, 0.2))
    band = mix(palette.lit((160, 50, 40)), INK, 0.1)
    canvas.stroke([(left, top + wall_h * 0.15), (right, top + wall_h * 0.15)], 1.6, band)
    for i in range(1, 6):  # the lattice wall showing through the felt
        lx = left + i * width / 6
        canvas.stroke([(lx, top + wall_h * 0.3), (lx + width / 12, ground)], 0.5, INK, 90)
    door_w = width * 0.18
    door_color = (255, 196, 110) if door_glow else mix(palette.lit((150, 70, 40)), INK, 0.2)
    if door_glow:
        glow(canvas, (cx, ground - wall_h * 0.4), width * 0.4, (255, 190, 100), 0.6)
    canvas.shape(
        [
            (cx - door_w / 2, ground),
            (cx - door_w / 2, top + wall_h * 0.3),
            (cx + door_w / 2, top + wall_h * 0.3),
            (cx + door_w / 2, ground),
        ],
        door_color,
    )


def draw_fire(canvas: Canvas, cx: float, ground: float, size: float) -> None:
    glow(canvas, (cx, ground - size * 0.5), size * 4, (255, 170, 70), 0.55)
    for k, color in enumerate(((230, 90, 30), (255, 170, 50), (255, 236, 150))):
        s = size * (1 - k * 0.28)
        canvas.shape(
            [
                (cx - s / 2, ground),
                (cx - s * 0.2, ground - s * 0.7),
                (cx, ground - s * 1.3),
                (cx + s * 0.25, ground - s * 0.6),
                (cx + s / 2, ground),
            ],
            color,
            outline=k == 0,
        )
    canvas.stroke([(cx - size * 0.7, ground + size * 0.1), (cx + size * 0.7, ground - size * 0.05)], 1.4, (90, 56, 30))


def draw_interior(canvas: Canvas, floor: float) -> None:
    """Inside: a wall (a yurt's lattice and roof poles when the scene is in a yurt), a floor, and the light source."""
    palette = canvas.palette
    wall_top, wall_bottom = palette.lit((150, 104, 70)), palette.lit((190, 140, 96))
    canvas.image.paste(vertical_gradient((canvas.width, max(1, round(floor))), wall_top, wall_bottom), (0, 0))
    floor_size = (canvas.width, max(1, canvas.height - round(floor)))
    canvas.image.paste(
        vertical_gradient(floor_size, palette.lit((120, 70, 44)), palette.lit((84, 46, 30))), (0, round(floor))
    )
    if canvas.plan.yurt:
        apex = (canvas.x(0.5), -canvas.height * 0.35)
        for i in range(-8, 9):  # roof poles fanning out from the crown
            canvas.stroke([apex, (canvas.x(0.5 + i * 0.09), floor * 0.42)], 0.9, (110, 66, 36), 200)
        for i in range(-14, 15):  # the lattice wall
            x0 = canvas.x(i * 0.07)
            canvas.stroke([(x0, floor * 0.42), (x0 + floor * 0.58, floor)], 0.6, (110, 66, 36), 150)
            canvas.stroke([(x0, floor), (x0 + floor * 0.58, floor * 0.42)], 0.6, (110, 66, 36), 150)
        canvas.stroke([(0, floor * 0.42), (canvas.width, floor * 0.42)], 1.4, (110, 66, 36))
        rug = palette.lit((150, 44, 40))
        canvas.draw.ellipse(
            (canvas.x(0.15), floor + (canvas.height - floor) * 0.25, canvas.x(0.85), canvas.height * 1.05),
            fill=rgba(rug, 210),
        )
    else:
        wx = canvas.x(canvas.vary(0.15, 0.7))
        window = (wx, canvas.y(0.15), wx + canvas.unit * 0.2, canvas.y(0.15) + canvas.unit * 0.24)
        sky = canvas.palette.sky
        canvas.draw.rectangle(
            window, fill=mix(sky.top, INK, 0.5) if sky.backlit else sky.bottom, outline=INK, width=canvas.line * 2
        )
        canvas.stroke([((window[0] + window[2]) / 2, window[1]), ((window[0] + window[2]) / 2, window[3])], 1.5)
    canvas.stroke([(0, floor), (canvas.width, floor)], 1.2)
    if canvas.plan.light is Light.CANDLE:
        draw_candle(canvas, canvas.x(0.5 - canvas.facing * canvas.vary(0.25, 0.35)), floor + canvas.unit * 0.02)


def draw_candle(canvas: Canvas, cx: float, base: float) -> None:
    u = canvas.unit
    glow(canvas, (cx, base - u * 0.12), u * 0.55, (255, 190, 100), 0.7)
    canvas.shape(
        [
            (cx - u * 0.02, base),
            (cx - u * 0.02, base - u * 0.1),
            (cx + u * 0.02, base - u * 0.1),
            (cx + u * 0.02, base),
        ],
        (240, 228, 200),
    )
    canvas.shape(
        [(cx - u * 0.012, base - u * 0.1), (cx, base - u * 0.15), (cx + u * 0.012, base - u * 0.1)], (255, 210, 90)
    )


def draw_backdrop(canvas: Canvas, horizon_fraction: float, *, blur: float = 0.0) -> float:
    """Sky and land (or the inside of a room) with the horizon at ``horizon_fraction``; returns the horizon's y."""
    horizon = canvas.y(horizon_fraction)
    if canvas.plan.place is Place.INTERIOR:
        draw_interior(canvas, horizon)
    else:
        draw_sky(canvas, horizon)
        draw_land(canvas, horizon)
    if blur:
        # Depth of field: the background of a closer shot is out of focus.
        blurred = canvas.image.crop((0, 0, canvas.width, canvas.height)).filter(ImageFilter.BoxBlur(blur))
        canvas.image.paste(blurred, (0, 0))
    return horizon


def draw_door(canvas: Canvas, box: tuple[float, float, float, float], open_fraction: float) -> float:
    """A carved wooden door ajar by ``open_fraction``, warm light spilling through; returns the door's edge x."""
    x0, y0, x1, y1 = box
    edge = x0 + (x1 - x0) * open_fraction
    canvas.draw.rectangle((x0, y0, x1, y1), fill=(255, 210, 130))
    glow(canvas, (x0 + (edge - x0) / 2, (y0 + y1) / 2), (x1 - x0) * 0.9, (255, 200, 120), 0.55)
    wood = canvas.palette.lit((150, 86, 44))
    canvas.shape([(edge, y0), (x1, y0), (x1, y1), (edge, y1)], wood)
    carving = mix(wood, INK, 0.45)
    mx, my, half = (edge + x1) / 2, (y0 + y1) / 2, (x1 - edge) * 0.3
    for scale in (1.0, 0.6):
        s = half * scale
        canvas.stroke(
            [(mx, my - s * 1.6), (mx + s, my), (mx, my + s * 1.6), (mx - s, my), (mx, my - s * 1.6)], 1.2, carving
        )
    canvas.draw.rectangle((x0, y0, x1, y1), outline=INK, width=canvas.line * 3)
    return edge
