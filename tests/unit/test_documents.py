"""The storyboard's documents: the band-by-band PNG encoder, the contact sheet built while frames arrive, and the PDF
read back with pypdf."""

from __future__ import annotations

import io
import itertools
import random
import struct
import threading
import time
import zlib

import numpy as np
import pypdf
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from storyboard import banded_png, documents, outputs
from storyboard.results import StoryboardResult
from storyboard.v1 import common_pb2, storyboards_pb2
from storyboard_common import images

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


# -- banded_png ---------------------------------------------------------------------------------------------------


def _zlib_deflate():  # the stdlib's, as bench/documents_bench.py compares it
    return zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)


@pytest.mark.parametrize("deflater", [banded_png.raw_deflate, _zlib_deflate], ids=["isal", "zlib"])
@pytest.mark.parametrize("cuts", [[0, 97], [0, 1, 96, 97], [0, 30, 31, 60, 97]])
def test_bands_encoded_in_any_order_join_into_a_png_that_decodes_to_the_same_pixels(cuts, deflater):
    image = _picture(83, 97, seed=len(cuts))
    pairs = list(itertools.pairwise(cuts))
    random.Random(7).shuffle(pairs)
    pixels = np.asarray(image)
    bands = [banded_png.encode_band(pixels, top, bottom - top, deflater) for top, bottom in pairs]
    png = banded_png.join_bands(image.width, image.height, bands)
    decoded = Image.open(io.BytesIO(png))
    assert (decoded.size, decoded.mode) == (image.size, "RGB")
    assert decoded.tobytes() == image.tobytes()
    # Decoders differ in what they check; zlib checks that the stream ends and that its Adler-32 (combined from the
    # bands') is right, and each row starts with a valid filter byte.
    filtered = zlib.decompress(_chunks(png)[b"IDAT"])
    row = 1 + image.width * 3
    assert len(filtered) == image.height * row
    assert {filtered[y * row] for y in range(image.height)} <= {0, 2}


def _chunks(png: bytes) -> dict[bytes, bytes]:
    """A PNG's chunks by type (the last of each type), their CRCs checked."""
    chunks, offset = {}, 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind], offset = data, offset + 12 + length
    return chunks


def test_bands_that_leave_a_gap_or_overlap_are_refused():
    pixels = np.asarray(_picture(16, 20, seed=1))
    top = banded_png.encode_band(pixels, 0, 10)
    overlap = banded_png.encode_band(pixels, 5, 15)
    short = banded_png.encode_band(pixels, 10, 5)
    for bands in ([top, overlap], [top, short], [top]):
        with pytest.raises(ValueError, match="rows"):
            banded_png.join_bands(16, 20, bands)


@pytest.mark.parametrize(
    "pixels,top,height",
    [
        (np.zeros((20, 16, 4), np.uint8), 0, 10),  # RGBA
        (np.zeros((20, 16, 3), np.uint16), 0, 10),
        (np.zeros((20, 48), np.uint8), 0, 10),
        (np.zeros((20, 16, 3), np.uint8), 15, 10),  # past the last row
        (np.zeros((20, 16, 3), np.uint8), 5, 0),
        (np.zeros((20, 16, 3), np.uint8), -1, 5),
    ],
)
def test_a_band_of_anything_but_rgb_rows_within_the_image_is_refused(pixels, top, height):
    with pytest.raises(ValueError, match=r"pixels|rows"):
        banded_png.encode_band(pixels, top, height)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_a_whole_png_decodes_to_its_pixels_stored_unfiltered_at_0_and_deflated_above(level):
    image = _picture(67, 41, seed=level)
    png = banded_png.png(np.asarray(image), level)
    decoded = Image.open(io.BytesIO(png))
    assert (decoded.size, decoded.mode, decoded.tobytes()) == (image.size, "RGB", image.tobytes())
    rows = zlib.decompress(_chunks(png)[b"IDAT"])
    row = 1 + image.width * 3
    filters = {rows[y * row] for y in range(image.height)}
    if level == 0:  # nothing to undo for a reader, and nothing deflated
        assert filters == {0}
        assert len(_chunks(png)[b"IDAT"]) >= len(rows)
    else:
        assert filters == {0, 2}  # the first row as it is, then Up


def test_a_flat_picture_shrinks_at_level_1_and_not_at_0():
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[16:48, 16:48] = (200, 30, 30)
    assert len(banded_png.png(flat, 1)) * 20 < flat.nbytes < len(banded_png.png(flat, 0))


@pytest.mark.parametrize("level", [-1, 4, 9])
def test_a_whole_png_at_a_level_isal_lacks_is_refused(level):
    with pytest.raises(ValueError, match="level"):
        banded_png.png(np.zeros((4, 4, 3), np.uint8), level)


@pytest.mark.parametrize("first,second", [(b"", b"x"), (b"hello", b"world" * 999), (bytes(range(256)) * 300, b"")])
def test_adler32_of_joined_pieces_is_combined_from_each_pieces_checksum(first, second):
    combined = banded_png._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


# -- the contact sheet --------------------------------------------------------------------------------------------


def _add_and_encode(sheet: documents.ContactSheet, index: int, thumbnail: Image.Image) -> None:
    """Paste a cell and, if that completes its row, encode the row at once, as the documents' workers do."""
    encode_row = sheet.add(index, thumbnail)
    if encode_row is not None:
        encode_row()


def _sheet_png(order: list[int], frames: list[Image.Image], threads: bool = False) -> bytes:
    sheet = documents.ContactSheet([documents.caption(scene) for scene in _scenes(len(frames))])
    thumbs = [documents.prepare_frame(frame).thumbnail for frame in frames]
    if threads:
        workers = [threading.Thread(target=_add_and_encode, args=(sheet, index, thumbs[index])) for index in order]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        for index in order:
            _add_and_encode(sheet, index, thumbs[index])
    return sheet.png()


def test_the_contact_sheet_is_the_same_whatever_order_and_threads_frames_arrive_in():
    frames = [_picture(96, 64, seed=n) for n in range(8)]
    in_order = _sheet_png(list(range(8)), frames)
    assert _sheet_png([7, 3, 5, 0, 6, 1, 4, 2], frames) == in_order
    assert _sheet_png([4, 0, 7, 2, 6, 1, 5, 3], frames, threads=True) == in_order
    sheet = Image.open(io.BytesIO(in_order))
    assert sheet.size == (4 * (documents.CELL + 16) + 16, 2 * (documents.CELL + 4 * 19 + 12 + 16) + 16)
    first_cell = sheet.crop((16, 16, 16 + documents.CELL, 16 + documents.CELL))
    assert len(first_cell.getcolors(maxcolors=1 << 20)) > 100  # the frame is there, not blank paper


def test_a_frame_added_again_after_its_row_was_encoded_replaces_the_old_picture():
    frames = [_picture(64, 64, seed=n) for n in range(3)]
    sheet = documents.ContactSheet(["a", "b", "c"])
    for index, frame in enumerate(frames):
        _add_and_encode(sheet, index, frame)
    before = sheet.png()
    _add_and_encode(sheet, 1, Image.new("RGB", (64, 64), "red"))
    after = Image.open(io.BytesIO(sheet.png()))
    assert sheet.png() != before
    x = 16 + (documents.CELL + 16) + documents.CELL // 2
    assert after.getpixel((x, 16 + documents.CELL // 2)) == (255, 0, 0)


def test_a_row_encoding_that_runs_after_a_later_paste_in_its_row_is_dropped():
    frames = [_picture(64, 64, seed=n) for n in range(3)]
    red = Image.new("RGB", (64, 64), "red")
    expected = documents.ContactSheet(["a", "b", "c"])
    for index, frame in enumerate([frames[0], red, frames[2]]):
        _add_and_encode(expected, index, frame)
    sheet = documents.ContactSheet(["a", "b", "c"])
    stale = [sheet.add(index, frame) for index, frame in enumerate(frames)][-1]
    fresh = sheet.add(1, red)
    assert stale is not None and fresh is not None
    fresh()
    stale()  # encoded from the old pictures, and finished last: it must not be the row that is kept
    assert sheet.png() == expected.png()


def test_the_contact_sheet_says_which_cells_are_missing():
    sheet = documents.ContactSheet(["a", "b", "c", "d"])
    sheet.add(2, _picture(32, 32, seed=1))
    with pytest.raises(ValueError, match=r"cells \[0, 1, 3\]"):
        sheet.png()
    with pytest.raises(IndexError):
        sheet.add(4, _picture(32, 32, seed=1))


# -- the PDF ------------------------------------------------------------------------------------------------------


def _pdf(count: int, story: str = "Aldar Kose tricks a wealthy merchant.") -> tuple[pypdf.PdfReader, list]:
    scenes = _scenes(count)
    frames = [documents.prepare_frame(_picture(128, 96, seed=scene.frame)) for scene in scenes]
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


def test_the_pdf_is_laid_out_by_reportlabs_c_accelerator():
    # Without rl_accel reportlab falls back to pure Python without a word: ~25% slower layout, measured side by side.
    from reportlab.lib import rl_accel

    assert rl_accel.fp_str.__module__ == "_rl_accel"
    assert rl_accel.instanceStringWidthTTF.__module__ == "_rl_accel"


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
    real = documents.ContactSheet
    monkeypatch.setattr(documents, "ContactSheet", lambda captions: sheets.append(captions) or real(captions))
    with documents.StoryboardDocuments(_token_scenes(4), [ALDAR, MIRA]) as built:
        for n in range(1, 5):
            built.add(n, _picture(32, 32, seed=n))
        built.write(tmp_path, documents.DocumentText())
    [captions] = sheets
    assert captions[1] == "2. medium shot: the busy bazaar seen from afar, Aldar Kose small in the distance"
    assert captions[3] == "4. medium shot: Mira laughs at Aldar Kose's trick"
    assert not any("_" in text for text in captions)


def _pdf_words(folder) -> str:
    reader = pypdf.PdfReader(folder / outputs.PDF)
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_names_the_characters_on_the_overview_and_the_frame_pages(tmp_path):
    scenes = _token_scenes(4)
    frames = [documents.prepare_frame(_picture(128, 96, seed=scene.frame)) for scene in scenes]
    pdf = documents.storyboard_pdf(frames, scenes, documents.DocumentText(), [ALDAR, MIRA])
    words = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Aldar Kose's hands with the magical pot" in words and "Mira laughs at Aldar Kose's trick" in words
    assert "aldar_kose_man" not in words.lower() and "mira_girl" not in words
    assert scenes[2].description == "aldar_kose_man's hands with the magical pot"  # the plan itself keeps its tokens
    with documents.StoryboardDocuments(scenes, [ALDAR, MIRA]) as built:
        for scene in scenes:
            built.add(scene.frame, _picture(64, 48, seed=scene.frame))
        built.lay_out_pdf(documents.DocumentText())  # the layout started ahead names them too
        built.write(tmp_path, documents.DocumentText())
    assert "Aldar Kose small in the distance" in _pdf_words(tmp_path)
    assert "aldar_kose_man" not in _pdf_words(tmp_path).lower()


def test_a_client_saved_storyboard_names_the_characters_where_people_read_and_keeps_the_tokens_in_the_plan(tmp_path):
    plan = common_pb2.Plan(story="Aldar Kose sells a pot", scenes=_token_scenes(2), characters=[ALDAR])
    final = storyboards_pb2.Storyboard(
        id="sb-1", plan=plan, frames=[storyboards_pb2.FrameResult(frame=n, seed=n) for n in (1, 2)]
    )
    result = StoryboardResult(plan=plan, final=final)
    for n in (1, 2):
        buffer = io.BytesIO()
        _picture(32, 32, seed=n).save(buffer, format="PNG")
        result.attempts[(n, n)] = buffer.getvalue()
    written = result.save(tmp_path)
    assert outputs.PDF in written and outputs.GRID in written
    words = _pdf_words(tmp_path)
    assert "Aldar Kose small in the distance" in words and "aldar_kose_man" not in words.lower()
    assert "aldar_kose_man small in the distance" in (tmp_path / "scene_breakdown.json").read_text()


def test_the_documents_refuse_to_be_written_before_every_frame_is_in(tmp_path):
    built = documents.StoryboardDocuments(_scenes(3))
    built.add(2, _picture(32, 32, seed=2))
    assert built.missing() == [1, 3]
    with pytest.raises(ValueError, match=r"frames \[1, 3\]"):
        built.write(tmp_path, documents.DocumentText())
    with pytest.raises(KeyError):
        built.add(4, _picture(32, 32, seed=4))
    assert not list(tmp_path.iterdir())


def _counted_layouts(monkeypatch) -> list[tuple[documents.DocumentText, list[documents.PreparedFrame], bytes]]:
    """Every PDF layout from now on: its words, its frames and the bytes it made."""
    layouts = []
    real = documents.storyboard_pdf

    def counted(frames, scenes, text, characters=()):
        pdf = real(frames, scenes, text, characters)
        layouts.append((text, list(frames), pdf))
        return pdf

    monkeypatch.setattr(documents, "storyboard_pdf", counted)
    return layouts


@pytest.mark.parametrize("words_change", [False, True])
def test_a_pdf_laid_out_ahead_is_written_if_its_words_stay_the_same_and_laid_out_again_if_not(
    tmp_path, monkeypatch, words_change
):
    layouts = _counted_layouts(monkeypatch)
    ahead = documents.DocumentText(notes=["seed 1 · pass", "seed 2 · pass"])
    final = documents.DocumentText(notes=["seed 1 · pass", "seed 2 · repetitive" if words_change else "seed 2 · pass"])
    with documents.StoryboardDocuments(_scenes(2)) as built:
        built.add(1, _picture(32, 32, seed=1))
        built.add(2, _picture(32, 32, seed=2))
        built.lay_out_pdf(ahead)
        built.write(tmp_path, final)
    texts = [text for text, _, _ in layouts]
    if words_change:  # laid out again; the layout ahead may finish last, or be dropped unstarted when the block ends
        assert texts.count(final) == 1 and all(text in (ahead, final) for text in texts)
    else:
        assert texts == [ahead]
    written = (tmp_path / "storyboard.pdf").read_bytes()
    assert written == next(pdf for text, _, pdf in layouts if text == final)
    assert final.notes[1] in pypdf.PdfReader(io.BytesIO(written)).pages[1].extract_text()


def test_a_pdf_laid_out_ahead_is_laid_out_again_if_a_frame_was_added_since(tmp_path, monkeypatch):
    layouts = _counted_layouts(monkeypatch)
    text = documents.DocumentText(notes=["seed 1", "seed 2"])
    with documents.StoryboardDocuments(_scenes(2)) as built:
        built.add(1, _picture(32, 32, seed=1))
        with pytest.raises(ValueError, match=r"frames \[2\]"):
            built.lay_out_pdf(text)
        built.add(2, _picture(32, 32, seed=2))
        built.lay_out_pdf(text)
        built.add(2, Image.new("RGB", (32, 32), "red"))
        built.write(tmp_path, text)
    # Laid out again with the new frame; the layout ahead may have run too, or been dropped unstarted at the end.
    red = [pdf for _, frames, pdf in layouts if frames[1].thumbnail.getpixel((16, 16)) == (255, 0, 0)]
    assert len(red) == 1 and len(layouts) <= 2
    assert (tmp_path / "storyboard.pdf").read_bytes() == red[0]


def _written_grid(tmp_path, name: str, additions: list[tuple[int, object]]) -> bytes:
    folder = tmp_path / name
    folder.mkdir()
    with documents.StoryboardDocuments(_scenes(3)) as built:
        for frame, image in additions:
            built.add(frame, image)
        built.write(folder, documents.DocumentText())
    return (folder / "storyboard_grid.png").read_bytes()


def test_a_frame_added_again_while_the_first_is_still_being_prepared_is_the_one_that_stays(tmp_path):
    # The first picture is large (slow to prepare), the replacement small: the workers finish them in the opposite
    # order, and the replacement must still be the one on the sheet.
    pictures = {n: _picture(64, 64, seed=n) for n in (1, 2, 3)}
    expected = _written_grid(tmp_path, "expected", list(pictures.items()))
    replaced = _written_grid(
        tmp_path, "replaced", [(1, _picture(2048, 2048, seed=9)), (1, pictures[1]), (2, pictures[2]), (3, pictures[3])]
    )
    assert replaced == expected


def test_a_file_prepared_ahead_is_not_prepared_again_when_added_and_one_never_added_is_left_out(tmp_path, monkeypatch):
    files = {}
    for name, seed in (("first", 1), ("second", 2), ("rejected", 3), ("third", 4)):
        files[name] = tmp_path / f"{name}.png"
        _picture(48, 48, seed=seed).save(files[name])
    expected = _written_grid(tmp_path, "expected", [(1, files["first"]), (2, files["second"]), (3, files["third"])])
    prepared = []
    real = documents.prepare_encoded_frame
    monkeypatch.setattr(documents, "prepare_encoded_frame", lambda data: prepared.append(data) or real(data))
    folder = tmp_path / "ahead"
    folder.mkdir()
    with documents.StoryboardDocuments(_scenes(3)) as built:
        for name in ("first", "rejected", "second", "third"):  # as attempts arrive, before they are judged
            built.prepare_ahead(files[name])
        built.prepare_ahead(files["first"])  # asked twice: prepared once
        built.add(1, files["first"])
        built.add(2, files["second"])
        built.add(3, files["third"])
        built.write(folder, documents.DocumentText())
    assert sorted(prepared) == sorted(files[name].read_bytes() for name in ("first", "rejected", "second", "third"))
    assert (folder / "storyboard_grid.png").read_bytes() == expected


def test_a_file_prepared_ahead_that_cannot_be_decoded_is_reported_when_the_documents_are_written(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with documents.StoryboardDocuments(_scenes(1)) as built:
        built.prepare_ahead(broken)
        built.add(1, broken)
        with pytest.raises(OSError):  # PIL.UnidentifiedImageError
            built.write(tmp_path, documents.DocumentText())
    assert not (tmp_path / "storyboard_grid.png").exists()


def test_a_frame_that_cannot_be_decoded_is_reported_when_the_documents_are_written(tmp_path):
    with documents.StoryboardDocuments(_scenes(2)) as built:
        built.add(1, _picture(32, 32, seed=1))
        built.add(2, b"not an image")  # accepted: it is prepared in the background
        with pytest.raises(OSError):  # PIL.UnidentifiedImageError
            built.write(tmp_path, documents.DocumentText())
    assert not list(tmp_path.iterdir())


def test_documents_left_unwritten_stop_their_workers():
    before = {thread for thread in threading.enumerate() if thread.name.startswith("documents")}
    with documents.StoryboardDocuments(_scenes(4)) as built:
        built.add(1, _picture(32, 32, seed=1))
        started = {thread for thread in threading.enumerate() if thread.name.startswith("documents")} - before
        assert started
    for thread in started:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_the_captions_are_drawn_once_asked_for_or_at_the_first_frame_and_only_once(tmp_path, monkeypatch):
    # The gateway asks once its render calls are out: drawn at construction, the text held the GIL while they went.
    sheets = []
    real = documents.ContactSheet
    monkeypatch.setattr(documents, "ContactSheet", lambda captions: sheets.append(captions) or real(captions))
    with documents.StoryboardDocuments(_scenes(2)) as built:
        time.sleep(0.2)  # time enough for a worker to have started them, had the constructor asked
        assert not sheets
        built.draw_captions()
        built.draw_captions()
        built.add(1, _picture(32, 32, seed=1))
        built.add(2, _picture(32, 32, seed=2))
        built.write(tmp_path, documents.DocumentText())
    assert sheets == [[documents.caption(scene) for scene in _scenes(2)]]
    with documents.StoryboardDocuments(_scenes(1)) as built:  # no one asked: the first frame starts them
        built.add(1, _picture(32, 32, seed=1))
        built.write(tmp_path, documents.DocumentText())
    assert len(sheets) == 2


def _decoded_by_the_documents(data: bytes) -> tuple[int, int]:
    prepared = documents.prepare_encoded_frame(data)
    assert (prepared.width, prepared.height) == Image.open(io.BytesIO(prepared.jpeg)).size
    return prepared.width, prepared.height


def _decoded_by_the_services(data: bytes) -> tuple[int, int]:
    return images.decode(data, "frame").size  # the validator's decoding


@pytest.mark.parametrize("decode", [_decoded_by_the_documents, _decoded_by_the_services], ids=["documents", "services"])
def test_a_frame_png_is_decoded_in_one_read(decode, monkeypatch):
    """Pillow hands a decoder 64 KB at a time and gives up the GIL for each piece: beside a busy thread, a 1024x1024
    frame then waited ~50 times to get it back. A frame's PNG is one IDAT chunk, read in one piece
    (``storyboard.imaging.open_image``)."""
    reads = []
    original = PngImagePlugin.PngImageFile.load_read

    def counted(self, size):
        reads.append(size)
        return original(self, size)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load_read", counted)
    picture = _picture(1024, 1024, seed=5)
    assert decode(banded_png.png(np.asarray(picture), level=0)) == (1024, 1024)
    assert len(reads) == 1


def _refused(*_args):
    raise PermissionError(1, "Operation not permitted")


@pytest.mark.parametrize("memfd", ["kept", "missing", "refused"])
def test_the_pdf_jpeg_is_the_same_whether_written_to_an_in_memory_file_or_to_memory(memfd, monkeypatch):
    """The JPEG goes through an in-memory file where the system has them (so that Pillow encodes it without the GIL),
    and into a buffer where it has none or a sandbox refuses one: the same bytes either way."""
    picture = _picture(640, 480, seed=6)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=documents.PDF_JPEG_QUALITY)
    if memfd == "missing":
        monkeypatch.delattr(documents.os, "memfd_create", raising=False)
    elif memfd == "refused":
        monkeypatch.setattr(documents.os, "memfd_create", _refused, raising=False)
    elif not hasattr(documents.os, "memfd_create"):
        pytest.skip("this system has no anonymous in-memory files")
    assert documents.prepare_frame(picture).jpeg == buffer.getvalue()
