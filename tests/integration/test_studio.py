"""The studio in a real browser: Playwright drives Debian's chromium (installed by `make setup`, never downloaded)
headless against whole stacks in this process: write a story, approve and edit its plan, watch the frames arrive,
fix a panel, download; hostile text, API keys, a dropped connection, and the tiny SDXL + LoRA renderer with the tiny
CLIP validator.

Screenshots of the finished pages are kept in ``test-output/studio/`` (or ``$STORYBOARD_TEST_OUTPUT/studio``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pypdf import PdfReader

from gateway.auth import hash_key
from gateway.rest.studio import CONTENT_SECURITY_POLICY
from tests.support.stack import InProcessStack, in_process_stack
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("STORYBOARD_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("STORYBOARD_TEST_OUTPUT", ROOT / "test-output")) / "studio"
STORY = "Aldar Kose tricks a wealthy merchant by selling him a magical pot"
HOSTILE = "<img src=x onerror=alert(1)>"
RENDERING = 60_000  # ms a storyboard of sketches may take on a busy machine
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[InProcessStack]:
    with in_process_stack(tmp_path_factory.mktemp("outputs")) as running:
        yield running


class Studio:
    """One browser tab on a gateway's studio, failing the test on any script error or dialog."""

    def __init__(self, browser: Browser, base_url: str, viewport: dict[str, int] = DESKTOP) -> None:
        self.context = browser.new_context(viewport=viewport, accept_downloads=True, base_url=base_url)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        self.page.on("console", self._console)
        self.page.on("request", lambda request: self.requests.append((request.url, request.headers)))

    def _console(self, message) -> None:  # type: ignore[no-untyped-def]
        # Refusals (4xx) are answers the page shows; anything else logged as an error is a problem.
        if message.type == "error" and not re.search(r"status of 4\d\d", message.text):
            self.problems.append(f"console: {message.text}")

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems

    def plan(self, story: str) -> None:
        self.page.goto("/")
        self.page.get_by_label("Story").fill(story)
        self.page.get_by_role("button", name="Plan", exact=True).click()
        expect(self.page.locator(".card")).to_have_count(8, timeout=RENDERING)

    def render_and_finish(self, frames: int) -> str:
        self.page.get_by_role("button", name="Render", exact=True).click()
        expect(self.page.locator("main")).to_have_attribute("data-state", "completed", timeout=RENDERING)
        expect(self.page.locator(".panel .picture img")).to_have_count(frames)
        return self.storyboard_id()

    def storyboard_id(self) -> str:
        match = re.search(r"#/storyboards/([^/]+)$", self.page.url)
        assert match, self.page.url
        return match.group(1)

    def wait_until_completed_again(self, sequence_before: int, api: httpx.Client, storyboard_id: str) -> None:
        """A fix ran to its end: the storyboard completed again after ``sequence_before``, and the page has followed
        it to its last event."""
        deadline = time.monotonic() + RENDERING / 1000
        while time.monotonic() < deadline:
            storyboard = api.get(f"/v1/storyboards/{storyboard_id}").json()
            last = int(storyboard["last_event_sequence"])
            if last > sequence_before and storyboard["state"] == "STORYBOARD_STATE_COMPLETED":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"storyboard {storyboard_id} did not complete again: {storyboard['state']}")
        expect(self.page.locator("main")).to_have_attribute("data-last-event", str(last), timeout=RENDERING)
        expect(self.page.locator("main")).to_have_attribute("data-state", "completed")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def open_studio(browser) -> Iterator:  # type: ignore[no-untyped-def]
    opened: list[Studio] = []

    def open_(base_url: str, viewport: dict[str, int] = DESKTOP) -> Studio:
        opened.append(Studio(browser, base_url, viewport))
        return opened[-1]

    yield open_
    for studio in opened:
        studio.close()


def _api(port: int, key: str = "") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)


def _card_texts(page: Page, name: str) -> list[str]:
    return page.locator(f".card [name={name}]").evaluate_all("(inputs) => inputs.map((input) => input.value)")


# -- the whole flow ---------------------------------------------------------------------------------------------------


def test_write_plan_edit_render_fix_and_download_in_the_studio(stack, open_studio):
    studio = open_studio(f"http://127.0.0.1:{stack.http_port}")
    page = studio.page
    studio.plan(STORY)
    tokens = page.locator(".card .tokens").all_inner_texts()
    assert all(re.fullmatch(r"\d+ / 77 CLIP tokens", text) for text in tokens), tokens

    # Edit scene 2: its prompt, written by the planner, is written again from the new words, with a new count.
    prompt_before = _card_texts(page, "prompt")[1]
    page.locator("#scene-2-description").fill("The merchant counts his gold coins beside a well")
    expect(page.locator("#scene-2-prompt")).to_have_value(re.compile("counts his gold coins"), timeout=15_000)
    assert _card_texts(page, "prompt")[1] != prompt_before
    page.locator("#scene-2-camera").select_option("close-up")
    page.locator("#scene-2-duration_seconds").fill("3.5")
    # Move the first card after the second, delete the last one: seven cards, in the new order.
    page.get_by_role("button", name="Move frame 1 later").click()
    page.get_by_role("button", name="Delete frame 8").click()
    expect(page.locator(".card")).to_have_count(7)
    expect(page.locator("#scene-1-prompt")).to_have_value(re.compile("counts his gold coins"), timeout=15_000)
    approved = list(zip(_card_texts(page, "description"), _card_texts(page, "camera"), strict=True))
    durations = [float(seconds) for seconds in _card_texts(page, "duration_seconds")]
    assert durations == [3.5] + [2.0] * 6  # the edited card, moved first; the others at the default

    storyboard_id = studio.render_and_finish(frames=7)
    api = _api(stack.http_port)
    rendered = api.get(f"/v1/storyboards/{storyboard_id}").json()
    assert [(s["description"], s["camera"]) for s in rendered["plan"]["scenes"]] == approved  # exactly the cards
    assert [s.get("duration_seconds") or 2.0 for s in rendered["plan"]["scenes"]] == durations
    panel = page.locator("#panel-1")
    expect(panel.locator(".badge", has_text="sketch preview")).to_be_visible()
    expect(panel.locator(".badge", has_text="not validated")).to_be_visible()
    expect(panel.locator("img")).to_have_attribute("alt", "Frame 1: The merchant counts his gold coins beside a well")

    # Fix frame 3 with an edited prompt; the storyboard's files follow.
    sequence = int(rendered["last_event_sequence"])
    panel = page.locator("#panel-3")
    panel.get_by_label("Edit the prompt of frame 3").click()
    panel.get_by_label("Prompt of frame 3", exact=True).fill("Aldar Kose juggling three clay pots, wide shot")
    panel.get_by_role("button", name="Render with this prompt").click()
    studio.wait_until_completed_again(sequence, api, storyboard_id)
    expect(panel.locator(".caption")).to_contain_text("juggling three clay pots")
    expect(panel.get_by_label("Attempts of frame 3")).to_have_text("Attempts (2)")
    frames = api.get(f"/v1/storyboards/{storyboard_id}/frames.json").json()["frames"]
    assert frames[2]["kept_attempt"] == 2 and "juggling" in frames[2]["prompt"]

    # Choose the first attempt again as the kept one: nothing is rendered, the frame file is attempt 1's picture.
    sequence = int(api.get(f"/v1/storyboards/{storyboard_id}").json()["last_event_sequence"])
    panel.get_by_label("Attempts of frame 3").click()
    panel.get_by_role("button", name="Keep attempt 1 of frame 3").click()
    studio.wait_until_completed_again(sequence, api, storyboard_id)
    expect(panel.locator(".attempts li.kept")).to_contain_text("Attempt 1")
    expect(panel.locator(".caption")).to_contain_text(approved[2][0])  # the scene as it was when drawn
    frames = api.get(f"/v1/storyboards/{storyboard_id}/frames.json").json()["frames"]
    assert frames[2]["kept_attempt"] == 1 and len(frames[2]["attempts"]) == 2
    kept = api.get(f"/v1/storyboards/{storyboard_id}/frames/3").content
    assert kept == api.get(f"/v1/storyboards/{storyboard_id}/frames/3/attempts/1").content

    with page.expect_download() as download:
        page.get_by_role("button", name="PDF", exact=True).click()
    pdf = Path(download.value.path())
    assert download.value.suggested_filename == f"{storyboard_id}_storyboard.pdf"
    assert len(PdfReader(pdf).pages) >= 1
    assert pdf.read_bytes() == api.get(f"/v1/storyboards/{storyboard_id}/storyboard.pdf").content
    studio.screenshot("finished-storyboard-1280x800.png")

    # The animatic holds each frame for its card's seconds.
    with page.expect_download() as download:
        page.get_by_role("button", name="Animatic (MP4)", exact=True).click()
    with av.open(download.value.path()) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = sum(1 for _ in video.decode(stream))
        assert frames / float(stream.average_rate) == pytest.approx(sum(durations), abs=0.1)

    # The list shows it with its first frame; opening it shows the same storyboard.
    page.get_by_role("link", name="Storyboards", exact=True).click()
    entry = page.locator(f"a[href='#/storyboards/{storyboard_id}']")
    expect(entry.locator("img")).to_have_count(1)
    entry.click()
    expect(page.locator(".panel .picture img")).to_have_count(7)


def test_the_studio_page_is_served_with_a_strict_content_security_policy(stack):
    with _api(stack.http_port) as api:
        page, script = api.get("/"), api.get("/studio/js/main.js")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "<script>" not in page.text and " style=" not in page.text  # no inline script or style to allow
    assert script.headers["content-type"].startswith("text/javascript")


def test_a_phone_sized_window_shows_one_column_that_fits(stack, open_studio):
    studio = open_studio(f"http://127.0.0.1:{stack.http_port}", viewport=PHONE)
    studio.plan(STORY)
    page = studio.page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    boxes = [card.bounding_box() for card in page.locator(".card").all()[:2]]
    assert boxes[0]["x"] == boxes[1]["x"] and boxes[1]["y"] > boxes[0]["y"]  # one column
    studio.screenshot("plan-phone-390.png")


def test_the_form_is_operable_from_the_keyboard_and_shows_errors_next_to_their_fields(stack, open_studio):
    studio = open_studio(f"http://127.0.0.1:{stack.http_port}")
    page = studio.page
    page.goto("/")
    expect(page.get_by_label("Story")).to_be_focused()
    page.keyboard.type(STORY)
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_label("Steps", exact=True).fill("100000")
    page.get_by_label("Story").focus()
    page.keyboard.press("Tab")
    for _ in range(20):  # Tab on to the Plan button, and press it with the keyboard
        if page.evaluate("document.activeElement.id") == "plan-button":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#steps-error")).to_contain_text("between 1 and")  # the API's words
    expect(page.get_by_label("Steps", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".card")).to_have_count(0)


# -- hostile text, keys, dropped connections ---------------------------------------------------------------------------


def test_a_story_of_markup_shows_as_text_everywhere(stack, open_studio):
    studio = open_studio(f"http://127.0.0.1:{stack.http_port}")
    page = studio.page
    studio.plan(HOSTILE)
    hostile_scene = '<script>alert("scene")</script><img src=x onerror=alert("scene")>'
    page.locator("#scene-1-description").fill(hostile_scene)
    expect(page.locator("#scene-1-prompt")).to_have_value(re.compile("script"), timeout=15_000)
    studio.render_and_finish(frames=8)
    expect(page.locator("h1")).to_have_text(HOSTILE)
    expect(page.locator("#panel-1 .caption")).to_contain_text(hostile_scene)
    assert page.locator("main img[src='x'], main script").count() == 0
    page.get_by_role("link", name="Storyboards", exact=True).click()
    expect(page.locator(".storyboards .story").first).to_have_text(HOSTILE)
    assert page.locator("main img[src='x']").count() == 0
    # The Studio fixture fails the test had any alert() run.


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory) -> Iterator[tuple[InProcessStack, str, str]]:
    alice, bob = "sk-alice-studio-test", "sk-bob-studio-test"
    keys = f"alice:{hash_key(alice)},bob:{hash_key(bob)}"
    with in_process_stack(tmp_path_factory.mktemp("keyed"), gateway={"auth": "required", "api_keys": keys}) as running:
        yield running, alice, bob


def test_a_gateway_that_requires_keys_asks_once_and_keeps_the_key_out_of_urls(keyed_stack, open_studio):
    stack, alice, bob = keyed_stack
    studio = open_studio(f"http://127.0.0.1:{stack.http_port}")
    page = studio.page
    page.goto("/")
    expect(page.locator("#key-state")).to_contain_text("needs a valid API key")
    expect(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill(alice)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-state")).to_have_text("key set for this tab")
    keyed_from = len(studio.requests)
    assert page.evaluate("sessionStorage.getItem('storyboard.apiKey')") == alice
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    studio.plan(STORY)
    storyboard_id = studio.render_and_finish(frames=8)
    assert all(alice not in url for url, _headers in studio.requests)
    api_calls = [headers for url, headers in studio.requests[keyed_from:] if "/v1/" in url]
    assert api_calls and all(headers.get("authorization") == f"Bearer {alice}" for headers in api_calls)

    # Bob's storyboard is not reachable with Alice's key; with Bob's it is, and Alice's is not.
    with _api(stack.http_port, bob) as api:
        bobs = api.post("/v1/storyboards", json={"spec": {"story": STORY}}).json()["id"]
    page.goto(f"/#/storyboards/{bobs}")
    expect(page.locator("h1")).to_have_text("Storyboard not found")
    page.get_by_label("API key").fill(bob)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("main")).to_have_attribute("data-state", re.compile("."), timeout=RENDERING)
    page.goto(f"/#/storyboards/{storyboard_id}")
    expect(page.locator("h1")).to_have_text("Storyboard not found")


def test_a_dropped_event_stream_resumes_after_the_last_event_seen(tmp_path, open_studio):
    from tests.support.processes import ProcessGroup

    with ProcessGroup(tmp_path) as processes:
        renderer = processes.scripted_renderer("--delay", "0.5")
        one_frame_at_a_time = {"frames_in_flight": 1}
        with in_process_stack(tmp_path / "outputs", renderer.address, gateway=one_frame_at_a_time) as stack:
            proxy = TcpProxy(stack.http_port)
            try:
                studio = open_studio(f"http://127.0.0.1:{proxy.port}")
                page = studio.page
                studio.plan(STORY)
                page.get_by_role("button", name="Render", exact=True).click()
                expect(page.locator(".panel .picture img").first).to_be_visible(timeout=RENDERING)
                with _api(stack.http_port) as api:
                    storyboard = api.get(f"/v1/storyboards/{studio.storyboard_id()}").json()
                proxy.cut()
                assert storyboard["state"] != "STORYBOARD_STATE_COMPLETED"  # the cut came while it was at work
                expect(page.locator("main")).to_have_attribute("data-state", "completed", timeout=RENDERING)
                expect(page.locator(".panel .picture img")).to_have_count(8)
                page.goto("about:blank")  # nothing of the page is left to call the stack this test is about to stop
                # The cut itself is logged as failed loads; nothing else may be.
                studio.problems = [problem for problem in studio.problems if "net::ERR_" not in problem]
            finally:
                proxy.close()
    resumed = [
        int(headers["last-event-id"])
        for url, headers in studio.requests
        if url.endswith("/events") and headers.get("last-event-id", "0") != "0"
    ]
    assert resumed, "the studio never reconnected with Last-Event-ID"


# -- the tiny SDXL + LoRA renderer and the tiny CLIP validator --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_stack(tmp_path_factory) -> Iterator[InProcessStack]:
    from tests.support.tiny_clip import build_tiny_clip
    from tests.support.tiny_ip_adapter import build_tiny_ip_adapter
    from tests.support.tiny_sdxl import build_tiny_sdxl, write_diffusers_lora

    root = tmp_path_factory.mktemp("tiny")
    model = build_tiny_sdxl(root / "sdxl")
    ip_adapter = build_tiny_ip_adapter(model, root / "ip_adapter")
    (root / "adapters").mkdir()
    write_diffusers_lora(model, root / "adapters" / "aldar_kose.safetensors", seed=1)
    registry = root / "characters.toml"
    shutil.copy(ROOT / "examples" / "characters.toml", registry)
    Image.new("RGB", (64, 96), "saddlebrown").save(root / "aldar_front.png")
    with registry.open("a") as extended:  # the example's character, with a reference picture
        extended.write('reference_images = ["aldar_front.png"]\n')
    clip = build_tiny_clip(root / "clip")
    renderer = {"backend": "diffusers", "base_model": model.base_model, "adapters_dir": root / "adapters",
                "ip_adapter": ip_adapter.folder,
                "min_size": 256, "max_size": 256, "max_batch_size": 4, "batch_window_ms": 0}  # fmt: skip
    with in_process_stack(
        root / "outputs", planner={"characters_file": registry}, renderer=renderer, validator=clip.settings()
    ) as running:
        yield running


def test_the_studio_on_the_tiny_sdxl_lora_renderer_with_the_tiny_clip_validator(tiny_stack, open_studio, tmp_path):
    studio = open_studio(f"http://127.0.0.1:{tiny_stack.http_port}")
    page = studio.page
    page.goto("/")
    expect(page.get_by_alt_text("Reference picture 1 of Aldar Kose")).to_be_visible()
    page.get_by_role("checkbox", name="Aldar Kose").check()
    studio.screenshot("write-with-a-character-1280x800.png")
    page.get_by_label("Frames", exact=True).select_option("6")
    page.get_by_text("Advanced", exact=True).click()
    for label, value in (("Steps", "2"), ("Width (px)", "256"), ("Height (px)", "256"), ("Seed", "7")):
        page.get_by_label(label).fill(value)
    page.get_by_label("Story").fill(STORY)
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.locator(".card")).to_have_count(6, timeout=RENDERING)
    # A picture of him for this storyboard: one too small is refused next to its field, and nothing is made.
    Image.new("RGB", (32, 32), "navy").save(tmp_path / "small.png")
    Image.new("RGB", (96, 128), "navy").save(tmp_path / "aldar_side.png")
    upload = page.get_by_label("Reference pictures for Aldar Kose")
    upload.set_input_files(tmp_path / "small.png")
    page.get_by_role("button", name="Render", exact=True).click()
    expect(page.locator("#upload-aldar_kose_man-error")).to_contain_text("is 32x32")
    upload.set_input_files(tmp_path / "aldar_side.png")
    storyboard_id = studio.render_and_finish(frames=6)
    # Frame 1 shows Aldar Kose, whose reference picture conditioned it and scores it.
    expect(page.locator("#panel-1 .scores")).to_contain_text(
        re.compile(r"consistency \d\.\d\d · alignment -?\d\.\d\d · like Aldar Kose's pictures -?\d\.\d\d")
    )
    assert page.locator(".badge", has_text="sketch preview").count() == 0
    expect(page.locator("#panel-1 .caption")).to_contain_text("Aldar Kose")  # a name, not the trigger token
    expect(page.locator("#panel-1 .caption")).not_to_contain_text("aldar_kose_man")
    with _api(tiny_stack.http_port) as api:
        storyboard = api.get(f"/v1/storyboards/{storyboard_id}").json()
        frames = api.get(f"/v1/storyboards/{storyboard_id}/frames.json").json()["frames"]
    assert storyboard["spec"]["width"] == 256 and storyboard["spec"]["num_inference_steps"] == 2
    (uploaded,) = storyboard["spec"]["character_references"]
    assert uploaded["trigger_token"] == "aldar_kose_man" and uploaded["pictures"][0]["height"] == 128
    assert all(attempt["backend"] == "diffusers" for frame in frames for attempt in frame["attempts"])
    assert "aldar_kose_man" in frames[0]["scores"]["characters"]  # scored against his reference picture
    assert all("aldar_kose_man" in scene["trigger_tokens"] for scene in storyboard["plan"]["scenes"][:1])
    verdicts = page.locator(".panel .badges .badge").all_inner_texts()
    assert any(text in ("pass", "low consistency", "low alignment", "repetitive") for text in verdicts), verdicts

    # A new seed for frame 2, in the browser, on the real renderer.
    sequence = int(storyboard["last_event_sequence"])
    page.get_by_role("button", name="Render frame 2 again with a new seed").click()
    studio.wait_until_completed_again(sequence, _api(tiny_stack.http_port), storyboard_id)
    expect(page.locator("#panel-2").get_by_label("Attempts of frame 2")).to_have_text(re.compile(r"Attempts \([2-9]\)"))
    studio.screenshot("tiny-sdxl-storyboard-1280x800.png")
