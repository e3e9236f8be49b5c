"""A PNG encoded band by band: each horizontal band of rows is filtered and deflated on its own, whenever its pixels are
final and in any order, and the bands are joined into one valid PNG at the end.

This is how pigz compresses in parallel: deflate data that ends in a full flush (byte-aligned, no reference to earlier
data) can be followed by more deflate data, so separately compressed segments concatenate into one zlib stream. The
contact sheet needs it because its bands become final at different times (a row of frames is complete once its frames
are in): encoding each band as soon as it is complete leaves only the last one for after the last frame, where
Pillow would encode the whole sheet at once.

Rows use PNG's "Up" filter (the difference from the row above, which suits the flat areas and repeated rows of a
contact sheet), except a band's first row, which is stored unfiltered because the row above it belongs to another
band that may not be final yet. Bands are deflated by ISA-L (``isal``, Intel's assembly deflate) at its level 1: a
contact sheet of rendered frames comes out about the size that stdlib zlib's fastest setting for it (level 1,
run-length strategy) makes, and a row's encoding, filtering included, takes a half to a third of the time
(``bench/documents_bench.py``). The last row's runs after the last frame arrives, so it is waited for.

A whole image is one band (``png``): that is how frames travel, stored or deflated by ISA-L (Pillow's PNG encoder
filters every row with Paeth, the costliest filter to undo: a 1024x1024 frame takes it ~60 ms to write and its
readers ~25 ms to decode, against ~3 ms and ~2 ms stored here without filters).

The image is a numpy array, read in place: the filter is one numpy subtraction straight into the buffer that is
deflated, so a band costs one allocation of its filtered size and no copy of its pixels, and neither numpy nor ISA-L
holds the GIL meanwhile. (Through Pillow a band took two crops, three ``tobytes`` and a join, ~15 MB of fresh memory
for a 1616 x 500 band, each page of it faulted in while frames were arriving.)
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_NONE, _FILTER_UP = 0, 2  # the byte that starts each filtered row
_LEVEL = 1
MAX_LEVEL = 3  # ISA-L's highest deflate level


@dataclass(frozen=True)
class EncodedBand:
    """One band's rows, filtered and deflated (ending in a full flush), with what joining them needs."""

    top: int
    height: int
    deflated: bytes
    adler32: int  # of the band's filtered rows
    length: int  # bytes of the band's filtered rows


def raw_deflate(level: int = _LEVEL) -> Any:
    """A compressor of raw deflate data (no zlib header: ``join_bands`` writes it): ISA-L, at level 1 unless told."""
    return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)


def stored() -> Any:
    """A compressor that stores deflate data (level 0): rows that would not shrink enough to pay for inflating them."""
    return zlib.compressobj(0, zlib.DEFLATED, -15)


def png(pixels: np.ndarray, level: int = 1) -> bytes:
    """The PNG file of ``pixels`` (an RGB image as a (rows, columns, 3) uint8 array) in one band. Level 0 stores the
    rows unfiltered: the fastest to write and to read. Levels 1-3 filter them with Up and deflate them with ISA-L at
    that level: a photograph shrinks by about a third, flat drawings by 10-40x."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be 0 (stored) or an ISA-L level 1-{MAX_LEVEL}, not {level}")
    deflater = stored if level == 0 else functools.partial(raw_deflate, level)
    band = encode_band(pixels, 0, pixels.shape[0], deflater, filtered=level > 0)
    return join_bands(pixels.shape[1], pixels.shape[0], [band])


def encode_band(
    pixels: np.ndarray, top: int, height: int, deflater: Callable[[], Any] = raw_deflate, filtered: bool = True
) -> EncodedBand:
    """Filter and deflate rows ``top`` to ``top + height`` of ``pixels``, an RGB image as a (rows, columns, 3) uint8
    array; only those rows are read. ``deflater`` makes the compressor (a zlib-style ``compressobj``; the benchmark
    compares others). ``filtered=False`` leaves every row unfiltered, for rows that are stored: filters only help
    compression, and undoing them costs readers time."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be RGB rows (rows, columns, 3) of uint8, not {pixels.dtype} {pixels.shape}")
    if not 0 <= top < top + height <= pixels.shape[0]:
        raise ValueError(f"rows {top}..{top + height - 1} are not within the image's {pixels.shape[0]}")
    band = pixels[top : top + height].reshape(height, -1)  # a view: each row's bytes, as PNG lays them out
    rows = np.empty((height, 1 + band.shape[1]), np.uint8)
    rows[0, 0], rows[0, 1:] = _FILTER_NONE, band[0]
    if filtered:
        rows[1:, 0] = _FILTER_UP
        np.subtract(band[1:], band[:-1], out=rows[1:, 1:])  # uint8 wraps around: PNG's difference modulo 256
    else:
        rows[1:, 0], rows[1:, 1:] = _FILTER_NONE, band[1:]
    deflate = deflater()
    deflated = deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no reference onwards
    return EncodedBand(top, height, deflated, isal_zlib.adler32(rows), rows.nbytes)


def join_bands(width: int, height: int, bands: list[EncodedBand]) -> bytes:
    """The PNG file of an RGB ``width`` x ``height`` image from bands that cover its rows exactly once."""
    bands = sorted(bands, key=lambda band: band.top)
    expected_top = 0
    for band in bands:
        if band.top != expected_top:
            raise ValueError(f"the bands leave rows {expected_top}..{band.top - 1} uncovered or cover them twice")
        expected_top += band.height
    if expected_top != height:
        raise ValueError(f"the bands cover {expected_top} rows of {height}")
    checksum = 1  # the Adler-32 of no data
    for band in bands:
        checksum = _adler32_combine(checksum, band.adler32, band.length)
    final_block = zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # an empty, last block
    stream = [b"\x78\x01", *(band.deflated for band in bands), final_block, struct.pack(">I", checksum)]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, filtered rows, no interlace
    return b"".join([_SIGNATURE, *_chunk(b"IHDR", [header]), *_chunk(b"IDAT", stream), *_chunk(b"IEND", [])])


def _chunk(kind: bytes, data: list[bytes]) -> list[bytes]:
    """A chunk as pieces to join once (the bands are joined into the file, never into a copy of their own)."""
    crc = zlib.crc32(kind)
    for piece in data:
        crc = zlib.crc32(piece, crc)
    return [struct.pack(">I", sum(map(len, data))), kind, *data, struct.pack(">I", crc)]


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two pieces of data joined, from each piece's (zlib's adler32_combine)."""
    base = 65521
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % base
    high = ((first >> 16) + (second >> 16) + second_length * ((first & 0xFFFF) - 1)) % base
    return low | (high << 16)
