"""The storyboard's two documents: ``storyboard_grid.png`` (a captioned contact sheet) and ``storyboard.pdf`` (a
printable A4 document with vector text).

Both are built from frames prepared one at a time (``prepare_frame``: decoded once, thumbnailed for the contact sheet,
encoded once as the JPEG the PDF embeds), so that a caller who prepares each frame as it arrives, as the gateway does,
is left with only the layout and the writing once the last frame is in. The PDF embeds each frame's JPEG as it is
(no re-encoding) and draws the title page's overview from the same images, so every frame is stored in it once.

Both are read by people, so a scene's words name its characters (``reader_text``): the plan's descriptions carry the
trigger tokens the LoRAs were trained on ("aldar_kose_man"), which scene_breakdown.json and the prompts keep.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import textwrap
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC
from functools import cache, lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from storyboard import banded_png, outputs
from storyboard.imaging import open_image
from storyboard.v1 import common_pb2, storyboards_pb2

# ASCII85 makes streams 25% larger and costs time to encode (~30 ms a frame where reportlab's C accelerator, rl_accel,
# is missing); PDF streams are binary-safe, so they are written as plain Flate.
rl_config.useA85 = 0

CELL = 384  # a contact-sheet cell, in pixels: each frame's thumbnail fits it
PDF_JPEG_QUALITY = 90


@dataclass(frozen=True)
class PreparedFrame:
    """One frame made ready for both documents."""

    thumbnail: Image.Image  # RGB, fitting a CELL x CELL contact-sheet cell
    jpeg: bytes  # the whole frame as the PDF embeds it
    width: int
    height: int


def prepare_frame(image: Image.Image) -> PreparedFrame:
    """Decode-side work for one frame, done once: its contact-sheet thumbnail and its JPEG for the PDF."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert copies even an RGB image
    thumbnail = rgb.copy()
    thumbnail.thumbnail((CELL, CELL))
    return PreparedFrame(thumbnail, _jpeg(rgb), rgb.width, rgb.height)


def _jpeg(image: Image.Image) -> bytes:
    """``image`` as the PDF's JPEG. Pillow holds the GIL while it encodes into memory, but not while it encodes into a
    file, so where the system has anonymous in-memory files (Linux) the JPEG is written to one: the ~10 ms a
    1024x1024 frame takes then leaves the gateway's other threads running (receiving frames, streaming them)."""
    file: IO[bytes]
    try:
        file = open(os.memfd_create("storyboard-jpeg", os.MFD_CLOEXEC), "w+b")  # noqa: SIM115 (the with below closes it)
    except (AttributeError, OSError):  # not Linux, or a sandbox that forbids it
        file = io.BytesIO()
    with file:
        image.save(file, format="JPEG", quality=PDF_JPEG_QUALITY)
        file.seek(0)
        return file.read()


def prepare_encoded_frame(data: bytes) -> PreparedFrame:
    """``prepare_frame`` of an encoded image (PNG, WebP or JPEG bytes)."""
    with open_image(data) as image:
        return prepare_frame(image)


def _prepare_file(path: Path) -> PreparedFrame:
    return prepare_encoded_frame(path.read_bytes())


CharacterRefs = Sequence[common_pb2.CharacterRef]


def reader_text(text: str, characters: CharacterRefs) -> str:
    """``text`` with each character's trigger token (a whole word, any case) replaced by its name, for people to read:
    "aldar_kose_man's pot" -> "Aldar Kose's pot"."""
    for character in characters:
        if character.trigger_token and character.name:
            text = _token_pattern(character.trigger_token).sub(lambda _match, name=character.name: name, text)
    return text


@lru_cache(maxsize=1024)
def _token_pattern(token: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(word) for word in token.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def reader_scene(scene: common_pb2.Scene, characters: CharacterRefs) -> common_pb2.Scene:
    """A copy of ``scene`` whose words the documents print (description, setting, lighting) are ``reader_text``."""
    copy = common_pb2.Scene()
    copy.CopyFrom(scene)
    copy.description = reader_text(scene.description, characters)
    copy.setting = reader_text(scene.setting, characters)
    copy.lighting = reader_text(scene.lighting, characters)
    return copy


def caption(scene: common_pb2.Scene, characters: CharacterRefs = ()) -> str:
    """A frame's caption on the contact sheet: number, shot and what happens, naming the ``characters``."""
    return f"{scene.frame}. {scene.camera}: {reader_text(scene.description, characters)}"


# -- the contact sheet --------------------------------------------------------------------------------------------


class ContactSheet:
    """storyboard_grid.png, built while frames arrive: a grid of the frames, each with its caption underneath, on white.

    The captions are drawn up front; each frame is pasted into its cell when it is added, and each row of cells is
    encoded (``banded_png``) as soon as its frames are all in, so that ``png()`` after the last frame encodes one row.
    The sheet is a numpy array (``pixels``) that the row encodings read in place. Safe to add frames from several
    threads."""

    _CAPTION_LINES, _LINE_HEIGHT, _MARGIN = 4, 19, 16

    def __init__(self, captions: Sequence[str], columns: int = 0) -> None:
        if not captions:
            raise ValueError("a contact sheet needs at least one frame")
        self.count = len(captions)
        self.columns = columns or min(self.count, 4 if self.count > 6 else 3)
        self.rows = math.ceil(self.count / self.columns)
        self._pitch = CELL + self._CAPTION_LINES * self._LINE_HEIGHT + 12 + self._MARGIN  # one row of cells
        width = self.columns * (CELL + self._MARGIN) + self._MARGIN
        paper = Image.new("RGB", (width, self.rows * self._pitch + self._MARGIN), "white")
        self._draw_captions(paper, captions)
        self.pixels = np.array(paper)  # (height, width, 3) uint8, written only under the lock
        self._lock = threading.Lock()
        self._missing = [set(self._row_indexes(row)) for row in range(self.rows)]
        # Bumped by every paste before it writes, so that a row encoding that may have read a paste half done (or
        # finished after one) is dropped: encodings read ``pixels`` without the lock.
        self._versions = [0] * self.rows
        self._encoded: dict[int, banded_png.EncodedBand] = {}

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def _cell(self, index: int) -> tuple[int, int]:
        """The top-left corner of cell ``index``'s picture."""
        return (self._MARGIN + (index % self.columns) * (CELL + self._MARGIN),
                self._MARGIN + (index // self.columns) * self._pitch)  # fmt: skip

    def _row_indexes(self, row: int) -> range:
        return range(row * self.columns, min(self.count, (row + 1) * self.columns))

    def row_band(self, row: int) -> tuple[int, int]:
        """(top, height) of the rows of pixels that row of cells ``row`` owns: the margins go to the first and last."""
        top = 0 if row == 0 else self._MARGIN + row * self._pitch
        bottom = self.size[1] if row == self.rows - 1 else self._MARGIN + (row + 1) * self._pitch
        return top, bottom - top

    def _draw_captions(self, paper: Image.Image, captions: Sequence[str]) -> None:
        draw = ImageDraw.Draw(paper)
        font = ImageFont.load_default(size=15)
        for index, text in enumerate(captions):
            x, y = self._cell(index)
            draw.rectangle((x - 1, y - 1, x + CELL, y + CELL), outline=(60, 60, 60))
            for line_no, line in enumerate(textwrap.wrap(text, width=44)[: self._CAPTION_LINES]):
                draw.text((x, y + CELL + 6 + line_no * self._LINE_HEIGHT), line, fill=(20, 20, 20), font=font)

    def add(self, index: int, thumbnail: Image.Image) -> Callable[[], None] | None:
        """Paste cell ``index``'s picture (at most CELL x CELL), centred. If that completes its row of cells, returns
        the encoding of the row, to be run on any thread (``png`` encodes the rows whose encoding did not run)."""
        if not 0 <= index < self.count:
            raise IndexError(f"cell {index} of a sheet of {self.count}")
        picture = np.asarray(thumbnail.convert("RGB"))
        height, width = picture.shape[:2]
        if width > CELL or height > CELL:
            raise ValueError(f"a {width}x{height} picture does not fit a {CELL}x{CELL} cell")
        row = index // self.columns
        x, y = self._cell(index)
        left, top = x + (CELL - width) // 2, y + (CELL - height) // 2
        with self._lock:
            self._versions[row] += 1
            self.pixels[y : y + CELL, x : x + CELL] = 255  # a replaced picture may have been larger
            self.pixels[top : top + height, left : left + width] = picture
            self._missing[row].discard(index)
            self._encoded.pop(row, None)
            if self._missing[row]:
                return None
            version = self._versions[row]
        band_top, band_height = self.row_band(row)

        def encode_row() -> None:
            encoded = banded_png.encode_band(self.pixels, band_top, band_height)
            with self._lock:
                if self._versions[row] == version:  # no paste began in the row since: the band is what it shows
                    self._encoded[row] = encoded

        return encode_row

    def png(self) -> bytes:
        """The sheet as PNG bytes, once every cell has its picture; encodes the rows not yet encoded side by side."""
        with self._lock:  # held throughout: no paste may change the rows while they are encoded
            missing = sorted(index for row in self._missing for index in row)
            if missing:
                raise ValueError(f"cells {missing} have no picture yet")
            bands = dict(self._encoded)
            todo = [row for row in range(self.rows) if row not in bands]
            if todo:
                with ThreadPoolExecutor(max_workers=min(2, len(todo)), thread_name_prefix="grid-band") as pool:
                    futures = {row: pool.submit(banded_png.encode_band, self.pixels, *self.row_band(row))
                               for row in todo}  # fmt: skip
                    bands.update((row, future.result()) for row, future in futures.items())
        return banded_png.join_bands(*self.size, list(bands.values()))


# -- the PDF ------------------------------------------------------------------------------------------------------

PAGE_WIDTH, PAGE_HEIGHT = A4  # points
MARGIN = 48
_INK, _MUTED, _FRAME_LINE = (0.08, 0.08, 0.08), (0.37, 0.37, 0.37), (0.24, 0.24, 0.24)


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str


@cache
def _fonts() -> _Fonts:
    """DejaVu Sans where the system has it (it covers Latin, Cyrillic, Greek and more; the gateway image installs
    it), else the Bitstream Vera that ships with reportlab (Latin only). Registered once per process."""
    try:
        regular = ImageFont.truetype("DejaVuSans.ttf", 12).path
        bold = ImageFont.truetype("DejaVuSans-Bold.ttf", 12).path
        names = ("DejaVuSans", "DejaVuSans-Bold")
    except OSError:
        regular, bold, names = "Vera.ttf", "VeraBd.ttf", ("Vera", "Vera-Bold")
    pdfmetrics.registerFont(TTFont(names[0], regular))
    pdfmetrics.registerFont(TTFont(names[1], bold))
    return _Fonts(*names)


@dataclass(frozen=True)
class DocumentText:
    """The words of storyboard.pdf besides the scenes: the title page's and a note under each frame."""

    title: str = "Storyboard"
    story: str = ""
    details: Sequence[str] = ()
    notes: Sequence[str] = ()  # one per frame, in frame order (e.g. seed and scores)


class _Writer:
    """Draws text on a reportlab canvas top-down, wrapping it to a width."""

    def __init__(self, canvas: Canvas, fonts: _Fonts) -> None:
        self.canvas = canvas
        self.fonts = fonts

    def lines(self, text: str, size: float, width: float, max_lines: int, bold: bool = False) -> list[str]:
        """``text`` wrapped to ``width`` points, at most ``max_lines`` (the last one ends with … when cut)."""
        font = self.fonts.bold if bold else self.fonts.regular
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            lines.extend(simpleSplit(paragraph, font, size, width) or [""])
        if max_lines and len(lines) > max_lines:
            lines = [*lines[: max_lines - 1], lines[max_lines - 1].rstrip() + " …"]
        return lines

    def block(
        self, x: float, top: float, text: str, size: float, width: float, *, max_lines: int = 0, bold: bool = False,
        colour: tuple[float, float, float] = _INK,
    ) -> float:  # fmt: skip
        """Draw wrapped ``text`` with its first line's top at ``top``; returns the y below the block."""
        step = size * 1.3
        self.canvas.setFont(self.fonts.bold if bold else self.fonts.regular, size)
        self.canvas.setFillColorRGB(*colour)
        y = top
        for line in self.lines(text, size, width, max_lines, bold):
            y -= step
            self.canvas.drawString(x, y + (step - size) / 2, line)
        return y


class _EmbeddedJpeg(ImageReader):
    """A JPEG that the PDF stores as it is (DCTDecode), named by a digest of its bytes. reportlab names an image by a
    digest of its decoded pixels, which would decode every frame (twice: overview and page) only to name it."""

    def __init__(self, jpeg: bytes) -> None:
        super().__init__(io.BytesIO(jpeg))
        self._name_key = hashlib.sha256(jpeg).digest()
        self._dataA = None  # no alpha channel (reportlab sets it while decoding, which this reader never does)

    def getRGBData(self) -> bytes:  # reportlab's name
        # Called by Canvas.drawImage only to name the image: its stream is the JPEG itself (jpeg_fh).
        return self._name_key


def _fit(width: int, height: int, box_width: float, box_height: float) -> tuple[float, float]:
    scale = min(box_width / width, box_height / height)
    return width * scale, height * scale


def _draw_frame(canvas: Canvas, frame: PreparedFrame, reader: ImageReader, x: float, top: float, box: Any) -> float:
    """The frame centred in ``box`` (width, height) from ``top``, outlined; returns its bottom y."""
    width, height = _fit(frame.width, frame.height, *box)
    left = x + (box[0] - width) / 2
    canvas.drawImage(reader, left, top - height, width, height)
    canvas.setStrokeColorRGB(*_FRAME_LINE)
    canvas.setLineWidth(0.5)
    canvas.rect(left, top - height, width, height)
    return top - height


def _title_page(writer: _Writer, text: DocumentText, frames: Sequence[PreparedFrame], readers: Sequence[Any],
                scenes: Sequence[common_pb2.Scene]) -> None:  # fmt: skip
    width = PAGE_WIDTH - 2 * MARGIN
    y = writer.block(MARGIN, PAGE_HEIGHT - MARGIN, text.title, 26, width, max_lines=2, bold=True)
    y = writer.block(MARGIN, y - 14, text.story, 12, width, max_lines=14)
    y -= 8
    for detail in text.details:
        y = writer.block(MARGIN, y, detail, 9.5, width, max_lines=2, colour=_MUTED)
    _overview(writer, frames, readers, scenes, top=y - 20, bottom=MARGIN + 20)


def _overview(writer: _Writer, frames: Sequence[PreparedFrame], readers: Sequence[Any],
              scenes: Sequence[common_pb2.Scene], top: float, bottom: float) -> None:  # fmt: skip
    """The contact sheet in vector form: the frames' own images (drawn again, stored once) with captions."""
    columns = min(len(frames), 4 if len(frames) > 6 else 3)
    rows = math.ceil(len(frames) / columns)
    gap, caption_height = 10, 30
    cell = min((PAGE_WIDTH - 2 * MARGIN - gap * (columns - 1)) / columns, (top - bottom) / rows - caption_height)
    if cell < 40:
        return  # a very long story leaves no room; the frame pages follow
    for index, (frame, reader, scene) in enumerate(zip(frames, readers, scenes, strict=True)):
        x = MARGIN + (index % columns) * (cell + gap)
        cell_top = top - (index // columns) * (cell + caption_height)
        _draw_frame(writer.canvas, frame, reader, x, cell_top, (cell, cell))
        writer.block(x, cell_top - cell - 2, caption(scene), 7, cell, max_lines=2)


def _frame_pages(writer: _Writer, text: DocumentText, frames: Sequence[PreparedFrame], readers: Sequence[Any],
                 scenes: Sequence[common_pb2.Scene], per_page: int = 2) -> None:  # fmt: skip
    width = PAGE_WIDTH - 2 * MARGIN
    slot = (PAGE_HEIGHT - 2 * MARGIN) / per_page
    box = (width, slot - 110)
    for index, (frame, reader, scene) in enumerate(zip(frames, readers, scenes, strict=True)):
        if index % per_page == 0:
            _end_page(writer)
        top = PAGE_HEIGHT - MARGIN - (index % per_page) * slot
        y = _draw_frame(writer.canvas, frame, reader, MARGIN, top, box)
        heading = " · ".join(part for part in (f"Frame {scene.frame}", scene.camera, scene.mood) if part)
        y = writer.block(MARGIN, y - 8, heading, 13, width, max_lines=1, bold=True)
        y = writer.block(MARGIN, y - 2, scene.description, 11, width, max_lines=3)
        place = " · ".join(part for part in (scene.setting, scene.lighting) if part)
        note = text.notes[index] if index < len(text.notes) else ""
        writer.block(MARGIN, y - 2, " · ".join(part for part in (place, note) if part), 9, width, max_lines=2,
                     colour=_MUTED)  # fmt: skip


def _end_page(writer: _Writer) -> None:
    """Number the page being drawn, then start the next one."""
    canvas = writer.canvas
    canvas.setFont(writer.fonts.regular, 8)
    canvas.setFillColorRGB(*_MUTED)
    canvas.drawRightString(PAGE_WIDTH - MARGIN, MARGIN / 2, str(canvas.getPageNumber()))
    canvas.showPage()


def storyboard_pdf(
    frames: Sequence[PreparedFrame],
    scenes: Sequence[common_pb2.Scene],
    text: DocumentText = DocumentText(),
    characters: CharacterRefs = (),
) -> bytes:
    """The storyboard as a printable A4 PDF: a title page (title, story, details and an overview of every frame), then
    two frames a page, each with its shot, description, setting and note, naming the ``characters``. The text is real
    text (selectable and searchable); each frame's image is stored once."""
    if not frames or len(frames) != len(scenes):
        raise ValueError("a storyboard PDF needs one scene per frame, and at least one frame")
    scenes = [reader_scene(scene, characters) for scene in scenes]
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle(text.title)
    canvas.setSubject(text.story[:200])
    canvas.setAuthor("Storyboard")
    canvas.setCreator("Storyboard")
    writer = _Writer(canvas, _fonts())
    readers = [_EmbeddedJpeg(frame.jpeg) for frame in frames]
    _title_page(writer, text, frames, readers, scenes)
    _frame_pages(writer, text, frames, readers, scenes)
    _end_page(writer)
    canvas.save()
    return buffer.getvalue()


# -- the words, and writing both files ----------------------------------------------------------------------------


def document_text(
    storyboard: storyboards_pb2.Storyboard,
    attempts: Sequence[outputs.AttemptInfo],
    not_validated_reason: str = "",
) -> DocumentText:
    """storyboard.pdf's words for a finished storyboard: details on the title page and a note under each frame. They
    depend on the storyboard and its attempts alone (the date is its creation's), so that words worked out twice from
    the same state are the same (``StoryboardDocuments.lay_out_pdf``)."""
    spec, plan = storyboard.spec, storyboard.plan
    backends = sorted({attempt.backend for attempt in attempts if attempt.backend})
    details = [
        f"{len(plan.scenes)} frames · {spec.width}×{spec.height} · {spec.num_inference_steps} steps · "
        f"guidance {spec.guidance_scale:g} · base seed {spec.base_seed}",
        f"planner: {plan.planner or 'unknown'} · renderer: {', '.join(backends) or 'unknown'}"
        + (" (sketch frames are layout previews, not renders)" if "sketch" in backends else ""),
    ]
    scored = [f for f in storyboard.frames if f.HasField("score")]
    if scored:
        lowest = min(scored, key=lambda f: f.score.consistency)
        average = sum(f.score.consistency for f in scored) / len(scored)
        details.append(
            f"character consistency: average {average:.2f}, lowest {lowest.score.consistency:.2f} "
            f"(frame {lowest.frame})"
        )
    else:
        details.append(f"frames not validated: {not_validated_reason or 'no scores'}")
    created = storyboard.create_time.ToDatetime(tzinfo=UTC) if storyboard.HasField("create_time") else None
    details.append(f"storyboard {storyboard.id}" + (f" · created {created:%Y-%m-%d %H:%M} UTC" if created else ""))
    notes = []
    for frame in storyboard.frames:
        note = f"seed {frame.seed}"
        if frame.HasField("score"):
            verdict = outputs.verdict_name(frame.verdict).lower().replace("_", " ")
            note += f" · consistency {frame.score.consistency:.2f} · {verdict}"
        notes.append(note)
    return DocumentText(story=spec.story or plan.story, details=details, notes=notes)


@dataclass(frozen=True)
class _DraftPdf:
    """A PDF laid out ahead of ``write``, with the words and the frames it was laid out from."""

    text: DocumentText
    added: dict[int, Future[PreparedFrame]]
    pdf: Future[bytes]


class StoryboardDocuments:
    """Both documents of one storyboard, built while its frames arrive: ``add`` each kept frame when it is in (from any
    thread), then ``write`` once all are.

    The work runs on background threads, never the caller's: the contact sheet's captions are drawn once
    ``draw_captions`` is called or the first frame is added, and each added frame is prepared and placed while the
    caller goes on (validating, streaming, rendering the next frames). Two workers, because Pillow, numpy and the
    deflate release the GIL: a 1024x1024 frame takes ~25 ms to prepare. A PDF laid out ahead (``lay_out_pdf``) has a
    thread of its own, so that it does not wait behind the contact sheet's rows, which complete at the same moment.
    ``write`` waits for all of it; ``close`` (or leaving the ``with`` block) stops the workers of documents that will
    never be written."""

    WORKERS = 2

    def __init__(self, scenes: Sequence[common_pb2.Scene], characters: CharacterRefs = ()) -> None:
        """``characters`` are the plan's: the documents name them where the scenes carry their trigger tokens."""
        self.scenes = list(scenes)
        self.characters = list(characters)
        if not self.scenes:
            raise ValueError("a storyboard's documents need at least one frame")
        self._index = {scene.frame: index for index, scene in enumerate(self.scenes)}
        self._pool = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="documents")
        self._layout = ThreadPoolExecutor(max_workers=1, thread_name_prefix="documents-pdf")  # started on first use
        self._sheet: Future[ContactSheet] | None = None
        self._lock = threading.Lock()
        self._added: dict[int, Future[PreparedFrame]] = {}
        self._ahead: dict[Path, Future[PreparedFrame]] = {}  # files prepared before they were added (prepare_ahead)
        self._work: list[Future[PreparedFrame]] = []  # every preparation asked for, replaced ones included
        self._rows: list[Future[None]] = []  # the encoding of each row of the contact sheet as it completes
        self._draft: _DraftPdf | None = None  # a layout started by ``lay_out_pdf``

    def __enter__(self) -> StoryboardDocuments:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def draw_captions(self) -> None:
        """Start drawing the contact sheet's captions in the background, if not started yet. That is 15-30 ms of text
        rendering that holds the GIL, so a caller that first sends work out (the gateway: every frame's render call)
        starts it once that is done, not while it competes with it; the first ``add`` starts it otherwise."""
        with self._lock:
            if self._sheet is None:
                captions = [caption(scene, self.characters) for scene in self.scenes]
                self._sheet = self._pool.submit(ContactSheet, captions)

    def prepare_ahead(self, image: outputs.StrPath) -> None:
        """Start preparing an image file that may be added as a frame later, in the background: ``add`` of the same
        path then places it without preparing it again. For a caller that knows a frame's image before it knows
        whether it keeps it (the gateway, while the validator judges an attempt); a file never added costs only its
        preparation. The file must not change once asked for."""
        image = Path(image)
        with self._lock:
            if image not in self._ahead:
                self._ahead[image] = self._pool.submit(_prepare_file, image)

    def add(self, frame: int, image: bytes | outputs.StrPath | Image.Image) -> None:
        """Prepare frame number ``frame`` (encoded bytes, an image file's path or an image) and place it on the
        contact sheet, in the background (a file is read there too). Adding a frame again replaces it."""
        if frame not in self._index:
            raise KeyError(f"frame {frame} is not one of the storyboard's")
        if isinstance(image, str | os.PathLike):
            image = Path(image)  # one type for a path from here on: prepared-ahead files are looked up by it
        self.draw_captions()  # queued first: every placement needs the sheet
        with self._lock:
            earlier = self._added.get(frame)
            ahead = self._ahead.pop(image, None) if isinstance(image, Path) else None
            self._added[frame] = self._pool.submit(self._prepare_and_place, self._index[frame], image, earlier, ahead)
            self._work.append(self._added[frame])

    def _prepare_and_place(
        self,
        index: int,
        image: bytes | Path | Image.Image,
        earlier: Future[PreparedFrame] | None,
        ahead: Future[PreparedFrame] | None,
    ) -> PreparedFrame:
        if ahead is not None:
            prepared = ahead.result()  # submitted first, so running or done
        elif isinstance(image, Path):
            prepared = _prepare_file(image)
        else:
            prepared = prepare_encoded_frame(image) if isinstance(image, bytes) else prepare_frame(image)
        if earlier is not None:
            wait([earlier])  # submitted first, so running or done: the replacement is pasted last
        encode_row = self._contact_sheet().add(index, prepared.thumbnail)
        if encode_row is not None:  # a task of its own, so that the PDF need not wait for it
            with self._lock:
                self._rows.append(self._pool.submit(encode_row))
        return prepared

    def lay_out_pdf(self, text: DocumentText) -> None:
        """Start laying out storyboard.pdf with ``text`` in the background, once every frame is prepared. ``write``
        keeps that layout if it is given the same text and no frame was added since, and lays the PDF out again
        otherwise. For a caller that knows the words before its last step: the gateway starts it before the validator
        checks the kept frames for repetition, which seldom changes a word, so that the layout (10-15 ms of reportlab)
        runs while the validator works instead of after it."""
        missing = self.missing()
        if missing:
            raise ValueError(f"frames {missing} were not added")
        with self._lock:
            added = dict(self._added)
            self._draft = _DraftPdf(text, added, self._layout.submit(self._pdf, added, text))

    def _pdf(self, added: dict[int, Future[PreparedFrame]], text: DocumentText) -> bytes:
        frames = [added[scene.frame].result() for scene in self.scenes]
        return storyboard_pdf(frames, self.scenes, text, self.characters)

    def missing(self) -> list[int]:
        """The frame numbers not added yet."""
        with self._lock:
            return [scene.frame for scene in self.scenes if scene.frame not in self._added]

    def write(self, folder: outputs.StrPath, text: DocumentText) -> list[str]:
        """Write storyboard_grid.png and storyboard.pdf into ``folder`` once every frame's preparation is done (the
        PNG's last bands are encoded while the PDF is laid out: zlib releases the GIL); returns their names. A frame
        that could not be prepared (an undecodable image) raises its error here."""
        folder = Path(folder)
        missing = self.missing()
        if missing:
            raise ValueError(f"frames {missing} were not added")
        with self._lock:
            added, work = dict(self._added), list(self._work)
        wait(work)  # a replaced frame's paste too, so that none lands after the sheet is encoded
        frames = [added[scene.frame].result() for scene in self.scenes]
        with self._lock:
            rows = list(self._rows)  # complete: every paste is done
        grid = self._pool.submit(self._grid_png, rows)  # numpy and ISA-L release the GIL: beside the PDF
        draft = self._draft
        if draft is not None and draft.text == text and draft.added == added:
            pdf = draft.pdf.result()
        else:
            pdf = storyboard_pdf(frames, self.scenes, text, self.characters)
        outputs.write_bytes_atomic(folder / outputs.GRID, grid.result())
        outputs.write_bytes_atomic(folder / outputs.PDF, pdf)
        self.close()
        return [outputs.GRID, outputs.PDF]

    def _grid_png(self, rows: list[Future[None]]) -> bytes:
        wait(rows)  # submitted before this task, so running or done: no row is encoded twice
        return self._contact_sheet().png()

    def _contact_sheet(self) -> ContactSheet:
        """The sheet, once its captions are drawn; only called after a frame was added, which started them."""
        assert self._sheet is not None, "draw_captions was not called"
        return self._sheet.result()

    def close(self) -> None:
        """Stop the workers; work not yet started is dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._layout.shutdown(wait=False, cancel_futures=True)
