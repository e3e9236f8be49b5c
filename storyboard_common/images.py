"""Encoding and decoding frames: the one place that knows image formats and their media types."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from storyboard_common.errors import InvalidArgument

MIME_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
# zlib level of PNG frames: 0 stores the pixels uncompressed. bench/transport.py measures a 1024x1024 frame from
# renderer to client at ~12% of a one-second GPU frame stored, against ~23% at level 1 (encoding dominates; the
# extra ~1 MB a frame costs ~8 ms on a 1 Gb/s link). The renderer's --png-level trades the other way.
PNG_LEVEL = 0
EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg"}


def encode(image: Image.Image, fmt: str = "PNG", quality: int = 0, png_level: int = PNG_LEVEL) -> tuple[bytes, str]:
    """The image encoded as ``fmt`` (PNG at zlib level ``png_level``, WEBP or JPEG) and its media type; quality 0
    means the format's default."""
    fmt = fmt.upper()
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, format="PNG", compress_level=png_level)
    elif fmt in ("WEBP", "JPEG"):
        image.convert("RGB").save(buffer, format=fmt, quality=quality or 90)
    else:
        raise ValueError(f"unknown image format {fmt}")
    return buffer.getvalue(), MIME_TYPES[fmt]


def decode(data: bytes, field: str, max_pixels: int = 4096 * 4096) -> Image.Image:
    """The RGB image in ``data``; InvalidArgument naming ``field`` when it is not an image or is too large."""
    if not data:
        raise InvalidArgument(field, "is empty")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > max_pixels:
                raise InvalidArgument(field, f"is {opened.width}x{opened.height}; the limit is {max_pixels} pixels")
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InvalidArgument(field, f"is not a decodable image ({type(error).__name__})") from None
