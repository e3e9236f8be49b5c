"""The storyboard's two documents: ``storyboard_grid.png`` (a captioned contact sheet) and ``storyboard.pdf`` (a
printable A4 document with vector text), made once every frame is kept, with Pillow and reportlab.

Both are read by people, so a scene's words name its characters (``reader_text``): the plan's descriptions carry the
trigger tokens the LoRAs were trained on ("aldar_kose_man"), which scene_breakdown.json and the prompts keep.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from gateway import outputs
from storyboard.v1 import common_pb2, storyboards_pb2

# PDF streams are binary-safe: ASCII85 would only make the images' streams a quarter larger.
rl_config.useA85 = 0

CELL = 384  # a contact-sheet cell, in pixels: each frame's thumbnail fits it
PDF_JPEG_QUALITY = 90
# zlib's fastest: a sheet a few percent larger than at the default level, for a fraction of the work (it saves 1-2 %
# of a storyboard's wall time: bench/results/compare_speed_tricks.md).
GRID_PNG_LEVEL = 1


@dataclass(frozen=True)
class DocumentFrame:
    """A kept frame as the documents use it, decoded once: its contact-sheet thumbnail, and the JPEG the PDF stores."""

    width: int
    height: int
    thumbnail: Image.Image
    jpeg: bytes

    @classmethod
    def of(cls, picture: Image.Image) -> DocumentFrame:
        picture = picture.convert("RGB")
        thumbnail = picture.copy()
        thumbnail.thumbnail((CELL, CELL))
        jpeg = io.BytesIO()
        picture.save(jpeg, format="JPEG", quality=PDF_JPEG_QUALITY)
        return cls(picture.width, picture.height, thumbnail, jpeg.getvalue())

    @classmethod
    def read(cls, frame: bytes | outputs.StrPath) -> DocumentFrame:
        """The frame from its encoded bytes or its file."""
        with Image.open(io.BytesIO(frame) if isinstance(frame, bytes) else frame) as picture:
            return cls.of(picture)


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

_CAPTION_LINES, _LINE_HEIGHT, _MARGIN = 4, 19, 16
_CHARACTERS_PER_CELL_LINE = 44  # of the caption font, across a CELL-wide cell


def contact_sheet(frames: Sequence[Image.Image], captions: Sequence[str]) -> Image.Image:
    """A grid of the frames, each thumbnailed into a cell of the frames' shape (CELL pixels on its longer side) with
    its caption underneath, on white."""
    if not frames or len(frames) != len(captions):
        raise ValueError("a contact sheet needs one caption per frame, and at least one frame")
    cell_width, cell_height = cell_size(*frames[0].size, CELL)
    columns = min(len(frames), 4 if len(frames) > 6 else 3)
    pitch = cell_height + _CAPTION_LINES * _LINE_HEIGHT + 12 + _MARGIN  # one row of cells
    width = columns * (cell_width + _MARGIN) + _MARGIN
    sheet = Image.new("RGB", (width, math.ceil(len(frames) / columns) * pitch + _MARGIN), "white")
    draw = ImageDraw.Draw(sheet)
    font = caption_font(15)
    characters_per_line = max(12, cell_width * _CHARACTERS_PER_CELL_LINE // CELL)
    for index, (frame, text) in enumerate(zip(frames, captions, strict=True)):
        x = _MARGIN + (index % columns) * (cell_width + _MARGIN)
        y = _MARGIN + (index // columns) * pitch
        thumbnail = frame.convert("RGB")
        thumbnail.thumbnail((cell_width, cell_height))
        sheet.paste(thumbnail, (x + (cell_width - thumbnail.width) // 2, y + (cell_height - thumbnail.height) // 2))
        draw.rectangle((x - 1, y - 1, x + cell_width, y + cell_height), outline=(60, 60, 60))
        for line_no, line in enumerate(textwrap.wrap(text, width=characters_per_line)[:_CAPTION_LINES]):
            draw.text((x, y + cell_height + 6 + line_no * _LINE_HEIGHT), line, fill=(20, 20, 20), font=font)
    return sheet


@cache
def caption_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font captions are drawn in on pictures (the contact sheet's, the animatic's): Pillow's own, at ``size``
    pixels, so that every machine draws the same captions."""
    return ImageFont.load_default(size=size)


def cell_size(width: float, height: float, longer_side: float) -> tuple[int, int]:
    """A cell of a ``width`` x ``height`` frame's shape whose longer side is ``longer_side``."""
    scale = longer_side / max(width, height)
    return round(width * scale), round(height * scale)


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


@dataclass(frozen=True)
class _PdfFrame:
    """A frame as the PDF draws it: its size, and its JPEG file, which the PDF stores as it is (DCTDecode), once.

    A file, not an ImageReader: reportlab names an ImageReader's image by hashing its decoded pixels at every draw,
    and a file by its name (it saves 1-4 % of a storyboard's wall time: bench/results/compare_speed_tricks.md)."""

    width: int
    height: int
    file: str


def _fit(width: int, height: int, box_width: float, box_height: float) -> tuple[float, float]:
    scale = min(box_width / width, box_height / height)
    return width * scale, height * scale


def _draw_frame(canvas: Canvas, frame: _PdfFrame, x: float, top: float, box: Any) -> float:
    """The frame centred in ``box`` (width, height) from ``top``, outlined; returns its bottom y."""
    width, height = _fit(frame.width, frame.height, *box)
    left = x + (box[0] - width) / 2
    canvas.drawImage(frame.file, left, top - height, width, height)
    canvas.setStrokeColorRGB(*_FRAME_LINE)
    canvas.setLineWidth(0.5)
    canvas.rect(left, top - height, width, height)
    return top - height


def _title_page(writer: _Writer, text: DocumentText, frames: Sequence[_PdfFrame],
                scenes: Sequence[common_pb2.Scene]) -> None:  # fmt: skip
    width = PAGE_WIDTH - 2 * MARGIN
    y = writer.block(MARGIN, PAGE_HEIGHT - MARGIN, text.title, 26, width, max_lines=2, bold=True)
    y = writer.block(MARGIN, y - 14, text.story, 12, width, max_lines=14)
    y -= 8
    for detail in text.details:
        y = writer.block(MARGIN, y, detail, 9.5, width, max_lines=2, colour=_MUTED)
    _overview(writer, frames, scenes, top=y - 20, bottom=MARGIN + 20)


def _overview(writer: _Writer, frames: Sequence[_PdfFrame], scenes: Sequence[common_pb2.Scene], top: float,
              bottom: float) -> None:  # fmt: skip
    """The contact sheet in vector form: the frames' own images (drawn again, stored once) with captions."""
    columns = min(len(frames), 4 if len(frames) > 6 else 3)
    rows = math.ceil(len(frames) / columns)
    gap, caption_height = 10, 30
    # Cells of the frames' shape, as large as the width of a row and the height left for the rows allow.
    room = (PAGE_WIDTH - 2 * MARGIN - gap * (columns - 1)) / columns, (top - bottom) / rows - caption_height
    width, height = _fit(frames[0].width, frames[0].height, *room)
    if min(width, height) < 40:
        return  # a very long story leaves no room; the frame pages follow
    for index, (frame, scene) in enumerate(zip(frames, scenes, strict=True)):
        x = MARGIN + (index % columns) * (width + gap)
        cell_top = top - (index // columns) * (height + caption_height)
        _draw_frame(writer.canvas, frame, x, cell_top, (width, height))
        writer.block(x, cell_top - height - 2, caption(scene), 7, width, max_lines=2)


def _frame_pages(writer: _Writer, text: DocumentText, frames: Sequence[_PdfFrame],
                 scenes: Sequence[common_pb2.Scene], per_page: int = 2) -> None:  # fmt: skip
    width = PAGE_WIDTH - 2 * MARGIN
    slot = (PAGE_HEIGHT - 2 * MARGIN) / per_page
    box = (width, slot - 110)
    for index, (frame, scene) in enumerate(zip(frames, scenes, strict=True)):
        if index % per_page == 0:
            _end_page(writer)
        top = PAGE_HEIGHT - MARGIN - (index % per_page) * slot
        y = _draw_frame(writer.canvas, frame, MARGIN, top, box)
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
    frames: Sequence[DocumentFrame],
    scenes: Sequence[common_pb2.Scene],
    text: DocumentText = DocumentText(),
    characters: CharacterRefs = (),
) -> bytes:
    """The storyboard as a printable A4 PDF: a title page (title, story, details and an overview of every frame), then
    two frames a page, each with its shot, description, setting and note, naming the ``characters``. The text is real
    text (selectable and searchable); each frame is stored once, as a JPEG, and drawn twice."""
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
    with tempfile.TemporaryDirectory(prefix="storyboard-pdf-") as folder:
        pdf_frames = []
        for index, frame in enumerate(frames):
            path = Path(folder) / f"frame_{index:03d}.jpg"
            path.write_bytes(frame.jpeg)
            pdf_frames.append(_PdfFrame(frame.width, frame.height, str(path)))
        _title_page(writer, text, pdf_frames, scenes)
        _frame_pages(writer, text, pdf_frames, scenes)
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
    depend on the storyboard and its attempts alone (the date is its creation's), so that the same storyboard always
    makes the same document."""
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


def write_documents(
    folder: outputs.StrPath,
    plan: common_pb2.Plan,
    frames: Sequence[DocumentFrame | bytes | outputs.StrPath],
    text: DocumentText,
) -> list[str]:
    """Write storyboard_grid.png and storyboard.pdf into ``folder`` from the kept frames (prepared, encoded images or
    their files, one per scene in scene order); returns their names."""
    folder = Path(folder)
    prepared = [frame if isinstance(frame, DocumentFrame) else DocumentFrame.read(frame) for frame in frames]
    captions = [caption(scene, plan.characters) for scene in plan.scenes]
    grid = io.BytesIO()
    contact_sheet([frame.thumbnail for frame in prepared], captions).save(
        grid, format="PNG", compress_level=GRID_PNG_LEVEL
    )
    pdf = storyboard_pdf(prepared, plan.scenes, text, plan.characters)
    outputs.write_bytes_atomic(folder / outputs.GRID, grid.getvalue())
    outputs.write_bytes_atomic(folder / outputs.PDF, pdf)
    return [outputs.GRID, outputs.PDF]
