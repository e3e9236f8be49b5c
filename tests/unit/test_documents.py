"""The storyboard's documents: the contact sheet and the PDF (read back with pypdf), and what they say."""

from __future__ import annotations

import asyncio
import io
import random

import pypdf
import pytest
from PIL import Image, ImageDraw

from gateway import documents, outputs
from gateway.document_frames import DocumentFrames
from storyboard.v1 import common_pb2

CYRILLIC = "Алдар Көсе продаёт котёл"
ALDAR = common_pb2.CharacterRef(name="Aldar Kose", trigger_token="aldar_kose_man", adapter="aldar_kose")
MIRA = common_pb2.CharacterRef(name="Mira", trigger_token="mira_girl")


def _picture(width: int, height: int, seed: int) -> Image.Image:
    """A deterministic picture with flat areas, edges and noise, like a frame."""
    rng = random.Random(seed)
    image = Image.effect_noise((width, height), 40).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = rng.randrange(width), rng.randrange(height)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((x, y, x + rng.randrange(1, width // 2), y + rng.randrange(1, height // 2)), fill=colour)
    return image


def _scenes(count: int) -> list[common_pb2.Scene]:
    return [
        common_pb2.Scene(
            frame=n,
            camera="wide shot",
            mood="tense",
            description=f"Scene {n}: the merchant boils water in the pot",
            setting="bazaar",
            lighting="noon",
        )
        for n in range(1, count + 1)
    ]


def _png(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    _picture(width, height, seed).save(buffer, format="PNG")
    return buffer.getvalue()


# -- the contact sheet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "cell"), [((96, 64), (384, 256)), ((64, 64), (384, 384)), ((72, 128), (216, 384))])
def test_the_contact_sheet_puts_each_frame_in_a_cell_of_its_shape_with_its_caption(size, cell):
    frames = [_picture(*size, seed=n) for n in range(8)]
    captions = [documents.caption(scene) for scene in _scenes(8)]
    sheet = documents.contact_sheet(frames, captions)
    width, height = cell
    pitch = height + 4 * 19 + 12 + 16
    assert sheet.size == (4 * (width + 16) + 16, 2 * pitch + 16)
    for index, frame in enumerate(frames):
        x = 16 + (index % 4) * (width + 16)
        y = 16 + (index // 4) * pitch
        placed = sheet.crop((x, y, x + width, y + height))
        left, top = (width - frame.width) // 2, (height - frame.height) // 2  # small frames are not enlarged
        assert placed.crop((left, top, left + frame.width, top + frame.height)).tobytes() == frame.tobytes()
        under = sheet.crop((x, y + height + 4, x + width, y + height + 30))
        assert under.getextrema()[0][0] < 100  # a caption is written under it
        gutter = sheet.crop((x + width + 2, y + height + 4, x + width + 14, y + pitch - 16))
        assert gutter.getextrema()[0][0] == 255, "the caption stays within its cell's width"


def test_the_contact_sheet_needs_a_caption_per_frame():
    with pytest.raises(ValueError):
        documents.contact_sheet([_picture(32, 32, seed=1)], ["a", "b"])
    with pytest.raises(ValueError):
        documents.contact_sheet([], [])


# -- the PDF ------------------------------------------------------------------------------------------------------


def _pdf(count: int, story: str = "Aldar Kose tricks a wealthy merchant.") -> tuple[pypdf.PdfReader, list]:
    scenes = _scenes(count)
    frames = [documents.DocumentFrame.of(_picture(128, 96, seed=scene.frame)) for scene in scenes]
    text = documents.DocumentText(
        title="The magic pot", story=story, details=["6 frames · 128×96"], notes=[f"seed {n}" for n in range(count)]
    )
    return pypdf.PdfReader(io.BytesIO(documents.storyboard_pdf(frames, scenes, text))), scenes


@pytest.mark.parametrize("count", [1, 6, 7, 10])
def test_the_pdf_has_a_title_page_then_two_frames_a_page_with_real_text(count):
    reader, scenes = _pdf(count)
    assert len(reader.pages) == 1 + (count + 1) // 2
    title = reader.pages[0].extract_text()
    assert "The magic pot" in title and "Aldar Kose tricks a wealthy merchant." in title and "128×96" in title
    for scene in scenes:
        page = reader.pages[1 + (scene.frame - 1) // 2].extract_text()
        assert f"Frame {scene.frame} · wide shot · tense" in page
        assert scene.description in page and f"seed {scene.frame - 1}" in page
    assert reader.metadata.title == "The magic pot"


def test_the_pdf_stores_each_frame_once_as_jpeg_and_draws_it_twice():
    reader, _ = _pdf(6)
    drawn = []
    for page in reader.pages:
        xobjects = page["/Resources"].get("/XObject", {})
        drawn += [xobjects[name].get_object() for name in xobjects]
    stored = {xobject.indirect_reference.idnum for xobject in drawn}
    assert len(drawn) == 12 and len(stored) == 6  # overview + its page; one stored image per frame
    assert all(xobject["/Filter"] in ("/DCTDecode", ["/DCTDecode"]) for xobject in drawn)


def test_the_pdf_text_keeps_non_latin_scripts_where_a_unicode_font_is_installed():
    if documents._fonts().regular != "DejaVuSans":
        pytest.skip("DejaVu Sans is not installed; the fallback font is Latin only")
    reader, _ = _pdf(2, story=CYRILLIC)
    assert CYRILLIC in reader.pages[0].extract_text()


# -- what people read names the characters, not their trigger tokens ----------------------------------------------


def _token_scenes(count: int) -> list[common_pb2.Scene]:
    descriptions = [
        "aldar_kose_man standing with the wealthy merchant, facing the camera",
        "the busy bazaar seen from afar, aldar_kose_man small in the distance",
        "aldar_kose_man's hands with the magical pot",
        "mira_girl laughs at Aldar_Kose_Man's trick",
    ]
    return [
        common_pb2.Scene(frame=n, camera="medium shot", mood="playful", description=descriptions[(n - 1) % 4],
                         setting="busy bazaar", lighting="natural daylight", prompt=descriptions[(n - 1) % 4],
                         trigger_tokens=["aldar_kose_man"])
        for n in range(1, count + 1)
    ]  # fmt: skip


def test_reader_text_names_each_character_where_its_trigger_token_stands():
    assert documents.reader_text("aldar_kose_man's hands; mira_girl waves", [ALDAR, MIRA]) == (
        "Aldar Kose's hands; Mira waves"
    )
    assert documents.reader_text("ALDAR_KOSE_MAN rides, aldar_kose_manor stands", [ALDAR]) == (
        "Aldar Kose rides, aldar_kose_manor stands"  # whole words only
    )
    assert documents.reader_text("aldar_kose_man rides", []) == "aldar_kose_man rides"


def test_the_contact_sheet_captions_name_the_characters(tmp_path, monkeypatch):
    assert documents.caption(_token_scenes(3)[2], [ALDAR]) == "3. medium shot: Aldar Kose's hands with the magical pot"
    sheets = []
    real = documents.contact_sheet
    monkeypatch.setattr(
        documents, "contact_sheet", lambda frames, captions: sheets.append(captions) or real(frames, captions)
    )
    plan = common_pb2.Plan(scenes=_token_scenes(4), characters=[ALDAR, MIRA])
    documents.write_documents(tmp_path, plan, [_png(32, 32, seed=n) for n in range(1, 5)], documents.DocumentText())
    [captions] = sheets
    assert captions[1] == "2. medium shot: the busy bazaar seen from afar, Aldar Kose small in the distance"
    assert captions[3] == "4. medium shot: Mira laughs at Aldar Kose's trick"
    assert not any("_" in text for text in captions)


def _pdf_images(path) -> list[bytes]:
    reader = pypdf.PdfReader(path)
    return sorted(xobject.get_data() for xobject in reader.pages[0]["/Resources"]["/XObject"].values())


def _pdf_words(folder) -> str:
    reader = pypdf.PdfReader(folder / outputs.PDF)
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_names_the_characters_on_the_overview_and_the_frame_pages(tmp_path):
    scenes = _token_scenes(4)
    frames = [documents.DocumentFrame.of(_picture(128, 96, seed=scene.frame)) for scene in scenes]
    pdf = documents.storyboard_pdf(frames, scenes, documents.DocumentText(), [ALDAR, MIRA])
    words = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Aldar Kose's hands with the magical pot" in words and "Mira laughs at Aldar Kose's trick" in words
    assert "aldar_kose_man" not in words.lower() and "mira_girl" not in words
    assert scenes[2].description == "aldar_kose_man's hands with the magical pot"  # the plan itself keeps its tokens
    plan = common_pb2.Plan(scenes=scenes, characters=[ALDAR, MIRA])
    documents.write_documents(tmp_path, plan, [_png(64, 48, seed=s.frame) for s in scenes], documents.DocumentText())
    assert "Aldar Kose small in the distance" in _pdf_words(tmp_path)
    assert "aldar_kose_man" not in _pdf_words(tmp_path).lower()


def test_the_documents_are_written_from_encoded_frames_or_their_files(tmp_path):
    plan = common_pb2.Plan(scenes=_scenes(3))
    encoded = [_png(64, 48, seed=n) for n in (1, 2, 3)]
    files = []
    for n, data in enumerate(encoded, 1):
        files.append(tmp_path / f"frame_{n}.png")
        files[-1].write_bytes(data)
    prepared = [documents.DocumentFrame.read(file) for file in files]
    ways = {"bytes": encoded, "files": files, "str": [str(f) for f in files], "prepared": prepared}
    for name, frames in ways.items():
        written = documents.write_documents(tmp_path / name, plan, frames, documents.DocumentText())
        assert written == [outputs.GRID, outputs.PDF]
    grids = {(tmp_path / name / outputs.GRID).read_bytes() for name in ways}
    assert len(grids) == 1  # the same sheet however the frames were given
    images = {tuple(_pdf_images(tmp_path / name / outputs.PDF)) for name in ways}
    assert len(images) == 1  # and the same JPEGs in the PDF
    assert pypdf.PdfReader(tmp_path / "files" / outputs.PDF).pages


def test_a_frame_that_cannot_be_decoded_is_an_error_and_nothing_is_written(tmp_path):
    plan = common_pb2.Plan(scenes=_scenes(2))
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError
        documents.write_documents(tmp_path, plan, [_png(32, 32, seed=1), b"not an image"], documents.DocumentText())
    assert not list(tmp_path.iterdir())


# -- frames prepared as they are kept -----------------------------------------------------------------------------


def test_a_frame_prepared_when_kept_is_not_decoded_again_and_a_replaced_one_is(tmp_path, monkeypatch):
    reads = []
    real_read = documents.DocumentFrame.read
    monkeypatch.setattr(documents.DocumentFrame, "read", lambda frame: reads.append(frame) or real_read(frame))
    frame = tmp_path / "frame_001.png"
    outputs.write_bytes_atomic(frame, _png(64, 48, seed=1))

    async def scenario():
        prepared = DocumentFrames()
        prepared.prepare(frame)
        first, again = await prepared.get(frame), await prepared.get(frame)
        outputs.write_bytes_atomic(frame, _png(64, 48, seed=2))  # a regenerated frame, written in its place
        replaced = await prepared.get(frame)
        return first, again, replaced

    first, again, replaced = asyncio.run(scenario())
    assert again is first and len(reads) == 2
    assert replaced.jpeg != first.jpeg and replaced.jpeg == documents.DocumentFrame.read(frame).jpeg


def test_a_frame_that_was_never_prepared_is_made_when_asked_for(tmp_path):
    frame = tmp_path / "frame_002.png"
    frame.write_bytes(_png(40, 30, seed=3))
    made = asyncio.run(DocumentFrames().get(frame))
    assert (made.width, made.height) == (40, 30) and made.thumbnail.size == (40, 30)


def test_a_preparation_that_fails_raises_when_asked_for(tmp_path):
    frame = tmp_path / "frame_003.png"
    frame.write_bytes(b"not an image")

    async def scenario():
        prepared = DocumentFrames()
        prepared.prepare(frame)
        return await prepared.get(frame)

    with pytest.raises(OSError):  # PIL.UnidentifiedImageError
        asyncio.run(scenario())
