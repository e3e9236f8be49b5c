"""Encoding and decoding frames: the one place that knows image formats and their media types."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from storyboard import banded_png
from storyboard.imaging import open_image
from storyboard_common.errors import InvalidArgument

MIME_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
# Level of PNG frames: 0 stores the pixels, the cheapest way from renderer to client on a LAN (bench/transport.py
# measures a 1024x1024 frame), at ~1 MB more per frame than level 1 (~8 ms on a 1 Gb/s link). The renderer's
# --png-level trades the other way.
PNG_LEVEL = 0
EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg"}


def encode(image: Image.Image, fmt: str = "PNG", quality: int = 0, png_level: int = PNG_LEVEL) -> tuple[bytes, str]:
    """The image, as RGB, encoded as ``fmt`` (PNG, WEBP or JPEG) and its media type; quality 0 means the format's
    default. PNG levels: 0 stores the rows unfiltered, the fastest to write and to decode (a 1024x1024 frame in
    bench/RESULTS.md's transport table: ~10 ms and ~4 ms, where Pillow's encoder took ~60 ms and left ~30 ms of
    decoding); 1-3 deflate them with ISA-L (``storyboard.banded_png``; a third smaller for photographs, far more for
    flat drawings, in ~20 ms); 4-9 are zlib's through Pillow, the smallest and the slowest."""
    fmt = fmt.upper()
    if fmt == "PNG" and png_level <= banded_png.MAX_LEVEL:
        return banded_png.png(np.asarray(rgb(image)), png_level), MIME_TYPES[fmt]
    buffer = io.BytesIO()
    if fmt == "PNG":
        rgb(image).save(buffer, format="PNG", compress_level=png_level)
    elif fmt in ("WEBP", "JPEG"):
        rgb(image).save(buffer, format=fmt, quality=quality or 90)
    else:
        raise ValueError(f"unknown image format {fmt}")
    return buffer.getvalue(), MIME_TYPES[fmt]


def decode(data: bytes, field: str, max_pixels: int = 4096 * 4096) -> Image.Image:
    """The RGB image in ``data``; InvalidArgument naming ``field`` when it is not an image or is too large."""
    if not data:
        raise InvalidArgument(field, "is empty")
    try:
        with open_image(data) as opened:
            if opened.width * opened.height > max_pixels:
                raise InvalidArgument(field, f"is {opened.width}x{opened.height}; the limit is {max_pixels} pixels")
            opened.load()
            return rgb(opened)  # an RGB frame as decoded: a copy of a 1024x1024 one costs ~1.3 ms
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InvalidArgument(field, f"is not a decodable image ({type(error).__name__})") from None


def rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode; itself when it is already."""
    return image if image.mode == "RGB" else image.convert("RGB")
