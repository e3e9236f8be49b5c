"""The documents' work once the last frame is in: the contact sheet's last row (filtered and deflated by
``storyboard.banded_png``) and the PDF's layout, for 8 frames at 256x256 (the orchestration benchmark's size) and at
1024x1024 (SDXL's).

The row encoder's deflate is measured side by side against the stdlib's zlib at its fastest setting for these rows
(level 1, run-length strategy: what the encoder used before ISA-L), on the same rows, alternating, with the PNG sizes
each makes. The frames are ``bench.natural_image`` pictures, a different one per frame, so a row compresses like a
row of rendered frames.

    .venv/bin/python -m bench.documents_bench
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import Section, median, ms, ratio, table, timed  # noqa: E402
from bench.natural_image import natural_image  # noqa: E402
from storyboard import banded_png, documents  # noqa: E402
from storyboard.v1 import common_pb2  # noqa: E402

FRAMES = 8
SIZES = (256, 1024)
ROUNDS = 15
DESCRIPTION = "Aldar Kose hands the merchant the pot while the crowd watches and the water starts to boil"


def zlib_rle() -> Any:
    """The stdlib's raw deflate at its fastest setting for contact-sheet rows."""
    return zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)


DEFLATERS: dict[str, Callable[[], Any]] = {
    "ISA-L level 1 (isal)": banded_png.raw_deflate,
    "zlib level 1, RLE": zlib_rle,
}


def _scenes() -> list[common_pb2.Scene]:
    return [
        common_pb2.Scene(
            frame=n,
            camera="wide shot",
            mood="tense",
            setting="the bazaar",
            lighting="noon",
            description=DESCRIPTION,
        )
        for n in range(1, FRAMES + 1)
    ]


def measure(size: int, rounds: int) -> dict[str, Any]:
    scenes = _scenes()
    prepared = [documents.prepare_frame(natural_image(size, size, seed=n)) for n in range(1, FRAMES + 1)]
    sheet = documents.ContactSheet([documents.caption(scene) for scene in scenes])
    for index, frame in enumerate(prepared):
        sheet.add(index, frame.thumbnail)
    rows = [sheet.row_band(row) for row in range(sheet.rows)]
    text = documents.DocumentText(story="Aldar Kose tricks a wealthy merchant. " * 8, notes=["seed 7"] * FRAMES)
    seconds: dict[str, list[float]] = {name: [] for name in DEFLATERS}
    seconds["pdf"] = []
    for _ in range(rounds):
        for name, deflater in DEFLATERS.items():
            seconds[name].append(timed(lambda d=deflater: banded_png.encode_band(sheet.pixels, *rows[-1], d)))
        seconds["pdf"].append(timed(lambda: documents.storyboard_pdf(prepared, scenes, text)))
    sizes = {
        name: len(
            banded_png.join_bands(
                *sheet.size, [banded_png.encode_band(sheet.pixels, *band, deflater) for band in rows]
            )
        )
        for name, deflater in DEFLATERS.items()
    }  # fmt: skip
    return {"seconds": {name: median(values) for name, values in seconds.items()}, "sizes": sizes, "sheet": sheet}


def _span(values: list[float]) -> str:
    """ "2.9-3.1", or "3.0" where both ends round the same."""
    low, high = f"{min(values):.1f}", f"{max(values):.1f}"
    return low if low == high else f"{low}-{high}"


def run(rounds: int = ROUNDS) -> Section:
    rows, speedups = [], []
    for size in SIZES:
        result = measure(size, rounds)
        seconds, sizes, sheet = result["seconds"], result["sizes"], result["sheet"]
        isal, stdlib = DEFLATERS
        speedups.append(seconds[stdlib] / seconds[isal])
        for name in DEFLATERS:
            rows.append([
                f"{size}x{size}", "x".join(map(str, sheet.size)), name, ms(seconds[name]),
                ratio(seconds[name] / seconds[isal]), f"{sizes[name] / 1e6:.2f}", ms(seconds["pdf"]),
            ])  # fmt: skip
    method = f"""
`bench/documents_bench.py`. What the documents leave for after the last of {FRAMES} frames is in: the contact
sheet's last row of frames, filtered and deflated (``storyboard.banded_png``; the other rows were encoded as they
completed), and the PDF's layout (``documents.storyboard_pdf``: reportlab, mostly Python; the frames' JPEGs were
made as they arrived; the gateway lays it out while the validator checks the kept frames for repetition). The row is
encoded with ISA-L, the contact sheet's deflate, and with the stdlib's zlib at its
fastest setting for such rows (level 1, run-length strategy; the encoder's before), the two alternating on the same
row; medians of {rounds}. "sheet MB" is the whole contact sheet's PNG with that deflate. Frames are
`bench.natural_image` pictures, a different one per frame.
"""
    result_table = table(
        ["frames", "contact sheet px", "last row's deflate", "last row ms", "vs ISA-L", "sheet MB", "PDF layout ms"],
        rows,
    )
    conclusion = (
        f"ISA-L encodes the last row {_span(speedups)}x faster than zlib for a sheet of about "
        "the same size, so it is the contact sheet's deflate (`isal` is a dependency of the SDK)."
    )
    return Section("Documents after the last frame", method, [result_table], conclusion)


if __name__ == "__main__":
    print(run().markdown())
