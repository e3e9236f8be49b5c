"""Exports of a completed storyboard, made from its folder for the people it goes to next: the animatic (an MP4 for
editors and browsers, a GIF for anywhere), a ZIP of the folder and the shot list (CSV).

Each is made from the folder's files alone (frames.json names the kept frames and their facts, scene_breakdown.json
how long each is held and who the characters are) and kept in its ``exports/`` folder under a name that carries a
digest of those two files and the options (``cached_export``): a kept frame that changes (a regenerated frame, another
attempt chosen) rewrites frames.json, so the next request makes the export again. A digest, not modification times:
a file rewritten within the clock's resolution keeps its time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
from google.protobuf import json_format
from PIL import Image, ImageDraw

from gateway import outputs
from gateway.documents import caption, caption_font, reader_text
from gateway.files import EXPORTS, folder_files
from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument, NotFound

# Made again when this changes: an export's bytes depend on the code that makes it as well as on the folder.
EXPORT_VERSION = 1
FPS = 24  # the animatic's frame rate: editors' and browsers' common one
CROSSFADE_SECONDS = 0.5  # at most; never more than half of either shot
MAX_VIDEO_SIDE = 1920  # H.264 players' common limit; larger frames are scaled down
GIF_SIDE = 512
H264_OPTIONS = {"crf": "20", "preset": "veryfast", "tune": "stillimage"}
_STORED = (".png", ".jpg", ".jpeg", ".pdf", ".webp")  # compressed already: deflating them again gains nothing


@dataclass(frozen=True)
class ExportFormat:
    """One kind of export: the file it is served as, its media type, and whether a browser shows it (inline) or
    saves it (attachment)."""

    name: str
    file_name: str
    media_type: str
    disposition: str


FORMATS = {
    "mp4": ExportFormat("mp4", "animatic.mp4", "video/mp4", "inline"),
    "gif": ExportFormat("gif", "animatic.gif", "image/gif", "inline"),
    "zip": ExportFormat("zip", "storyboard.zip", "application/zip", "attachment"),
    "csv": ExportFormat("csv", "shots.csv", "text/csv; charset=utf-8", "attachment"),
}


def export_format(name: str, field: str = "format") -> ExportFormat:
    """The export called ``name`` (``mp4``, ``gif``, ``zip`` or ``csv``); InvalidArgument naming ``field`` else."""
    found = FORMATS.get(name.strip().lower())
    if found is None:
        raise InvalidArgument(field, f"{name!r} is not one of {', '.join(FORMATS)}")
    return found


@dataclass(frozen=True)
class ExportOptions:
    """How an export is made; each option applies to the formats it names (``relevant``)."""

    captions: bool = False  # mp4, gif: each frame's number, shot and description burned in
    crossfade: bool = False  # mp4: a cross-fade into the next frame instead of a cut
    attempts: bool = False  # zip: the attempts/ folder too

    def relevant(self, kind: ExportFormat) -> ExportOptions:
        """Only the options ``kind`` uses, so that an option it ignores never makes it again."""
        return ExportOptions(
            captions=self.captions and kind.name in ("mp4", "gif"),
            crossfade=self.crossfade and kind.name == "mp4",
            attempts=self.attempts and kind.name == "zip",
        )


# -- what the folder says of its frames ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """A kept frame as the exports show it."""

    frame: int
    file: str
    camera: str
    description: str  # for people: characters by name, not by trigger token
    prompt: str
    seed: int | None
    verdict: str
    consistency: float | None
    alignment: float | None
    seconds: float
    caption: str


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_bytes())
    except FileNotFoundError:
        raise NotFound(f"the storyboard's folder holds no {name}; exports are made from it") from None


def read_shots(folder: Path) -> list[Shot]:
    """The folder's kept frames in order, from frames.json and scene_breakdown.json."""
    plan = json_format.ParseDict(_read_json(folder, outputs.SCENE_BREAKDOWN), common_pb2.Plan(),
                                 ignore_unknown_fields=True)  # fmt: skip
    scenes = {scene.frame: scene for scene in plan.scenes}
    entries = [entry for entry in _read_json(folder, outputs.FRAMES_METADATA)["frames"] if entry.get("file")]
    if not entries:
        raise NotFound("the storyboard has no kept frame to export")
    return [_shot(entry, scenes.get(entry["frame"], common_pb2.Scene()), plan.characters) for entry in entries]


def _shot(entry: dict[str, Any], scene: common_pb2.Scene, characters: Sequence[common_pb2.CharacterRef]) -> Shot:
    # frames.json tells what the kept frame shows (a regenerated frame's new prompt is its description there).
    shown = common_pb2.Scene(frame=entry["frame"], camera=entry.get("camera") or "",
                             description=entry.get("description") or "")  # fmt: skip
    scores = entry.get("scores") or {}
    return Shot(
        frame=entry["frame"],
        file=entry["file"],
        camera=shown.camera,
        description=reader_text(shown.description, characters),
        prompt=entry.get("prompt") or "",
        seed=entry.get("seed"),
        verdict=entry.get("verdict") or "",
        consistency=scores.get("consistency"),
        alignment=scores.get("alignment"),
        seconds=outputs.shot_seconds(scene),
        caption=caption(shown, characters),
    )


# -- the animatic -------------------------------------------------------------------------------------------------


def even_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """The frames' shape with its longer side at most ``longest``, both sides even (as yuv420p needs)."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def frame_boundaries(seconds: Sequence[float], fps: int = FPS) -> list[int]:
    """The video frame at which each shot ends, rounded on the running total so that the video's length is the
    plan's to within one frame, however many shots there are."""
    boundaries, total = [], 0.0
    for shot_seconds in seconds:
        total += shot_seconds
        boundaries.append(max(round(total * fps), (boundaries[-1] if boundaries else 0) + 1))
    return boundaries


def _pictures(folder: Path, shots: Sequence[Shot], longest: int, captions: bool) -> list[Image.Image]:
    pictures = []
    for shot in shots:
        with Image.open(folder / shot.file) as image:
            picture = image.convert("RGB")
        # Every picture at the first's size: a storyboard's frames share one shape.
        size = pictures[0].size if pictures else even_size(picture.width, picture.height, longest)
        picture = picture.resize(size, Image.Resampling.LANCZOS) if picture.size != size else picture
        pictures.append(_captioned(picture, shot.caption) if captions else picture)
    return pictures


def _captioned(picture: Image.Image, text: str) -> Image.Image:
    """``picture`` with ``text`` on a dark band along its bottom, sized to the picture."""
    size = max(12, min(picture.size) // 28)  # of the shorter side: a portrait frame has as narrow lines
    font = caption_font(size)
    characters_per_line = max(16, int(picture.width / (size * 0.55)))
    lines = textwrap.wrap(text, width=characters_per_line, max_lines=3, placeholder=" …")
    band = len(lines) * round(size * 1.3) + size
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, picture.height - band, picture.width, picture.height), fill=(0, 0, 0, 215))
    for number, line in enumerate(lines):
        y = picture.height - band + size // 2 + number * round(size * 1.3)
        draw.text((size // 2, y), line, fill=(255, 255, 255, 255), font=font)
    return Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


def video_frames(pictures: Sequence[Image.Image], boundaries: Sequence[int], crossfade: bool) -> Iterator[Image.Image]:
    """Every frame of the video: each picture until its boundary, fading into the next over its last frames when
    ``crossfade``."""
    start = 0
    for index, (picture, end) in enumerate(zip(pictures, boundaries, strict=True)):
        following = pictures[index + 1] if index + 1 < len(pictures) else None
        fade = _fade_frames(end - start, boundaries, index) if crossfade and following is not None else 0
        for _ in range(end - start - fade):
            yield picture
        for step in range(1, fade + 1):
            yield Image.blend(picture, following, step / (fade + 1))  # type: ignore[arg-type]
        start = end


def _fade_frames(length: int, boundaries: Sequence[int], index: int) -> int:
    following = boundaries[index + 1] - boundaries[index]
    return min(round(CROSSFADE_SECONDS * FPS), length // 2, following // 2)


def animatic_mp4(folder: Path, options: ExportOptions) -> bytes:
    """The animatic as H.264 in MP4 (yuv420p, the index first for playing while it downloads)."""
    shots = read_shots(folder)
    pictures = _pictures(folder, shots, MAX_VIDEO_SIDE, options.captions)
    boundaries = frame_boundaries([shot.seconds for shot in shots])
    # The MP4 muxer moves its index to the front by reading the file back: a real file, not a stream.
    with tempfile.TemporaryDirectory(prefix="storyboard-animatic-") as scratch:
        path = Path(scratch) / "animatic.mp4"
        with av.open(str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=FPS, options=H264_OPTIONS)
            stream.width, stream.height = pictures[0].size
            stream.pix_fmt = "yuv420p"
            for picture in video_frames(pictures, boundaries, options.crossfade):
                container.mux(stream.encode(av.VideoFrame.from_image(picture)))
            container.mux(stream.encode(None))
        return path.read_bytes()


def animatic_gif(folder: Path, options: ExportOptions) -> bytes:
    """The animatic as a looping GIF, GIF_SIDE pixels on its longer side, each frame shown for its shot's time."""
    shots = read_shots(folder)
    pictures = _pictures(folder, shots, GIF_SIDE, options.captions)
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                     duration=[round(shot.seconds * 1000) for shot in shots])  # fmt: skip
    return buffer.getvalue()


# -- the folder and the shot list ---------------------------------------------------------------------------------


def storyboard_zip(folder: Path, options: ExportOptions) -> bytes:
    """The storyboard's folder as a ZIP, under a folder of its name: frames, documents and JSON files, and its
    attempts when asked; never its exports."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in folder_files(folder):
            if name.startswith("attempts/") and not options.attempts:
                continue
            stored = name.lower().endswith(_STORED)
            archive.write(folder / name, f"{folder.name}/{name}",
                          compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)  # fmt: skip
    return buffer.getvalue()


SHOT_LIST_COLUMNS = ("frame", "shot type", "duration (s)", "description", "prompt", "seed", "verdict",
                     "consistency", "alignment", "file")  # fmt: skip


def shot_list_csv(folder: Path, _options: ExportOptions) -> bytes:
    """The shot list: one row per kept frame. UTF-8 with a byte-order mark, which spreadsheets need to read it as
    UTF-8 (a description may name characters in any script)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(SHOT_LIST_COLUMNS)
    for shot in read_shots(folder):
        writer.writerow((shot.frame, shot.camera, f"{shot.seconds:g}", shot.description, shot.prompt,
                         "" if shot.seed is None else shot.seed, shot.verdict, _score(shot.consistency),
                         _score(shot.alignment), shot.file))  # fmt: skip
    return text.getvalue().encode("utf-8-sig")


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


MAKERS = {"mp4": animatic_mp4, "gif": animatic_gif, "zip": storyboard_zip, "csv": shot_list_csv}


# -- the cache ----------------------------------------------------------------------------------------------------


def folder_digest(folder: Path) -> str:
    """What every export of the folder is made from, as one digest: frames.json and scene_breakdown.json (and the
    version of the code that makes them)."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}\0".encode())
    for name in (outputs.FRAMES_METADATA, outputs.SCENE_BREAKDOWN):
        path = folder / name
        digest.update(path.read_bytes() if path.is_file() else b"")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cache_name(kind: ExportFormat, options: ExportOptions, digest: str) -> str:
    """``animatic.captions-crossfade.<digest>.mp4``: the export, the options it uses and the folder it was made of."""
    stem, suffix = kind.file_name.rsplit(".", 1)
    used = [name for name, on in asdict(options.relevant(kind)).items() if on]
    return f"{stem}.{'-'.join(used) or 'plain'}.{digest}.{suffix}"


def cached_export(folder: Path, kind: ExportFormat, options: ExportOptions) -> Path:
    """The export's file in the folder's ``exports/``, made now if the folder changed since it was last made with
    these options. Written atomically: a request at the same time reads the whole old file or the whole new one. The
    version it replaces is kept until the next one (a request that found it a moment ago still sends it whole); older
    ones are removed."""
    path = folder / EXPORTS / cache_name(kind, options, folder_digest(folder))
    if not path.is_file():
        outputs.write_bytes_atomic(path, MAKERS[kind.name](folder, options.relevant(kind)))
        earlier = sorted((p for p in path.parent.glob(cache_name(kind, options, "*")) if p != path), key=_made_at)
        for stale in earlier[:-1]:
            stale.unlink(missing_ok=True)
    return path


def _made_at(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # removed meanwhile by a request for the same export
        return 0
