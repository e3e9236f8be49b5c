"""The sketch backend on its own: reading scenes and prompts into panels, and the panels it draws."""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageStat

from services.renderer.backend import FrameSpec, RenderBackend, SceneHints
from services.renderer.sketch import SketchBackend, sketch_frame
from services.renderer.sketch_canvas import GROUNDS, SKIES, SKIN, STAMP, Palette, character_cloth
from services.renderer.sketch_panel import panel_palette, printable
from services.renderer.sketch_scene import Expression, Light, Place, Shot, caption_from_prompt, plan_panel


def frame(scene: SceneHints | None = None, prompt: str = "aldar_kose_man on the steppe", **fields) -> FrameSpec:  # type: ignore[no-untyped-def]
    values = dict(frame=1, prompt=prompt, seed=7, width=256, height=256, steps=2, guidance_scale=7.5, scene=scene)
    values.update(fields)
    return FrameSpec(**values)


# --- reading the scene ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("camera", "shot"),
    [
        ("wide shot", Shot.WIDE),
        ("Wide establishing shot", Shot.WIDE),
        ("medium shot", Shot.MEDIUM),
        ("close-up", Shot.CLOSE_UP),
        ("Extreme close-up", Shot.CLOSE_UP),
        ("POV shot", Shot.POV),
        ("over-the-shoulder shot", Shot.OVER_THE_SHOULDER),
        ("dutch angle", Shot.MEDIUM),  # unknown: a medium shot, the safest framing
    ],
)
def test_the_camera_decides_the_framing(camera, shot):
    plan = plan_panel(frame(SceneHints(description="aldar_kose_man waits", camera=camera)))
    assert plan.shot is shot
    assert plan.camera_label == camera.upper()


@pytest.mark.parametrize(
    ("lighting", "setting", "light", "place"),
    [
        ("golden hour", "vast steppe", Light.GOLDEN, Place.STEPPE),
        ("sunset", "steppe", Light.SUNSET, Place.STEPPE),
        ("warm orange sky", "", Light.SUNSET, Place.STEPPE),
        ("moonlit night", "village", Light.NIGHT, Place.VILLAGE),
        ("dawn", "snowy mountains", Light.DAWN, Place.SNOW),
        ("candle-lit", "inside the yurt", Light.CANDLE, Place.INTERIOR),
        ("candle light", "", Light.CANDLE, Place.INTERIOR),
        ("midday", "desert dunes", Light.DAY, Place.DESERT),
        ("", "pine forest", Light.DAY, Place.FOREST),
        ("overcast", "sea shore", Light.OVERCAST, Place.SEA),
    ],
)
def test_lighting_and_setting_choose_the_palette(lighting, setting, light, place):
    plan = plan_panel(frame(SceneHints(description="aldar_kose_man stands", lighting=lighting, setting=setting)))
    assert (plan.light, plan.place) == (light, place)


def test_words_match_whole_words_only():
    plan = plan_panel(frame(SceneHints(description="a thousand seasons on the mountain", setting="")))
    assert plan.place is Place.MOUNTAINS  # not DESERT for "thousand", not SEA for "seasons"
    assert not plan.horse  # "mountain" is not "mount"


def test_the_scene_names_what_the_panel_shows():
    plan = plan_panel(frame(SceneHints(description="aldar_kose_man riding his horse home to the yurt", mood="sly")))
    assert plan.horse and plan.yurt
    assert plan.expression is Expression.SLY
    assert plan.caption == "aldar_kose_man riding his horse home to the yurt"


def test_without_a_scene_the_prompt_is_read():
    prompt = (
        "aldar_kose_man riding horse across vast steppe, wide establishing shot, golden hour lighting, "
        "high quality, detailed, 3D animation, professional render"
    )
    plan = plan_panel(frame(None, prompt=prompt))
    assert (plan.shot, plan.light, plan.place, plan.horse) == (Shot.WIDE, Light.GOLDEN, Place.STEPPE, True)
    assert plan.caption == "aldar_kose_man riding horse across vast steppe, golden hour lighting"
    assert plan.camera_label == "WIDE SHOT"


def test_captions_from_prompts_drop_weights_and_style_tags():
    assert caption_from_prompt("(aldar_kose_man:1.2), smiling at the merchant, masterpiece, 8k") == (
        "aldar_kose_man, smiling at the merchant"
    )
    assert caption_from_prompt("high quality") == "high quality"  # nothing but tags: keep the prompt as given


def test_text_outside_the_embedded_font_is_folded_or_marked():
    assert printable("Café  Zoë — night") == "Cafe Zoe - night"
    assert printable("Алдар") == "?????"


# --- drawing ----------------------------------------------------------------------------------------------------------


def test_a_character_wears_the_same_colour_in_every_frame_whatever_the_seed():
    # The offline demo's frames once dressed Aldar in blue in one frame and brown in the next: the seed chose.
    scenes = [
        SceneHints(description="aldar_kose_man at the bazaar", camera="wide shot", characters=("aldar_kose_man",)),
        SceneHints(description="aldar_kose_man rides away", camera="close-up", characters=("aldar_kose_man",)),
    ]
    plans = [plan_panel(frame(scene)) for scene in scenes]
    assert {plan.character for plan in plans} == {"aldar_kose_man"}
    worn = {panel_palette(plan, random.Random(seed)).cloth for plan in plans for seed in range(12)}
    assert worn == {character_cloth("aldar_kose_man")}
    assert all(character_cloth("aldar_kose_man") not in panel_palette(plan, random.Random(1)).others for plan in plans)
    nameless = plan_panel(frame(SceneHints(description="a rider on the steppe")))
    assert len({panel_palette(nameless, random.Random(seed)).cloth for seed in range(12)}) > 1


def test_no_one_else_in_a_panel_wears_the_characters_colour():
    # A POV shot is the character's own view: the villagers in it must not look like them.
    cloth = character_cloth("aldar_kose_man")
    worn = Palette(SKIES[Light.DAY], GROUNDS[Place.STEPPE], cloth, SKIN).lit(cloth)
    scene = SceneHints("the merchant and the villagers", "POV shot", lighting="midday", characters=("aldar_kose_man",))
    for seed in range(1, 6):
        colours = {colour for _, colour in sketch_frame(frame(scene, seed=seed)).getcolors(1 << 20)}
        assert worn not in colours


def test_the_backend_implements_the_interface():
    assert isinstance(SketchBackend(), RenderBackend)


@pytest.mark.parametrize(("width", "height"), [(256, 256), (512, 256), (256, 512), (768, 432)])
def test_panels_have_the_requested_size(width, height):
    assert sketch_frame(frame(width=width, height=height)).size == (width, height)


def test_the_same_frame_gives_the_same_pixels_and_the_seed_changes_them():
    scene = SceneHints(description="aldar_kose_man at the yurt", camera="wide shot", lighting="sunset")
    first, again = sketch_frame(frame(scene)), sketch_frame(frame(scene))
    assert first.tobytes() == again.tobytes()
    assert sketch_frame(frame(scene, seed=8)).tobytes() != first.tobytes()


@pytest.mark.parametrize("camera", ["wide shot", "medium shot", "close-up", "POV shot", "over-the-shoulder"])
def test_every_panel_carries_the_sketch_stamp(camera):
    panel = sketch_frame(frame(SceneHints(description="aldar_kose_man", camera=camera), width=512, height=288))
    corner = panel.crop((panel.width * 3 // 4, 0, panel.width, panel.height // 5))
    data = corner.tobytes()
    stamp_pixels = sum(1 for i in range(0, len(data), 3) if tuple(data[i : i + 3]) == STAMP)
    assert stamp_pixels > 200


def _sky(scene: SceneHints) -> tuple[float, ...]:
    panel = sketch_frame(frame(scene, width=512, height=512))
    return tuple(ImageStat.Stat(panel.crop((0, 80, 512, 200))).mean)


def test_night_is_dark_and_sunset_is_warm():
    day = _sky(SceneHints(description="the steppe", camera="wide shot", lighting="midday"))
    night = _sky(SceneHints(description="the steppe", camera="wide shot", lighting="night"))
    sunset = _sky(SceneHints(description="the steppe", camera="wide shot", lighting="sunset"))
    assert sum(night) < sum(day) / 2
    assert sunset[0] > sunset[2] and day[2] > day[0]  # sunset skies are red over blue, day skies blue over red


def test_the_caption_band_is_paper_under_the_scene():
    panel = sketch_frame(frame(SceneHints(description="a caption", camera="wide shot", lighting="night")))
    band = panel.crop((4, panel.height - 20, panel.width - 4, panel.height - 4))
    assert ImageStat.Stat(band).mean[0] > 200  # light paper, even under a night sky


def test_render_reports_every_step_then_yields_each_frame():
    backend = SketchBackend()
    steps: list[tuple[int, int, int]] = []
    frames = [frame(steps=3), frame(frame=2, steps=2)]
    results = list(backend.render(frames, lambda *step: steps.append(step), lambda: False))
    assert steps == [(0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 2), (1, 2, 2)]
    assert [r.index for r in results] == [0, 1]
    assert all(isinstance(r.image, Image.Image) and r.timings.denoise_seconds >= 0 for r in results)


def test_render_stops_at_the_next_step_once_asked():
    backend = SketchBackend()
    steps: list[tuple[int, int, int]] = []
    results = list(backend.render([frame(steps=10)], lambda *step: steps.append(step), lambda: len(steps) >= 2))
    assert (len(steps), results, backend.frames_drawn) == (2, [], 0)


def test_warm_up_draws_a_panel_and_describe_names_the_sketch():
    backend = SketchBackend()
    backend.warm_up()
    described = backend.describe()
    assert (described.name, described.model, described.device) == ("sketch", "sketch", "cpu")
