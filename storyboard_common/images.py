"""Encoding and decoding frames: the one place that knows image formats and their media types."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from storyboard_common.errors import InvalidArgument

MIME_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg"}
# zlib's level for PNG frames: 0 stores the pixels, cheapest to write and read where the link is fast (a photograph
# barely compresses anyway); the renderer's --png-level trades CPU for bytes.
PNG_LEVEL = 0
EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg"}


def encode(image: Image.Image, fmt: str = "PNG", quality: int = 0, png_level: int = PNG_LEVEL) -> tuple[bytes, str]:
    """The image, as RGB, encoded as ``fmt`` (PNG, WEBP or JPEG) and its media type; quality 0 means the format's
    default, ``png_level`` is zlib's level (0-9) for PNG."""
    fmt = fmt.upper()
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
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > max_pixels:
                raise InvalidArgument(field, f"is {opened.width}x{opened.height}; the limit is {max_pixels} pixels")
            opened.load()
            return rgb(opened)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InvalidArgument(field, f"is not a decodable image ({type(error).__name__})") from None


def rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode; itself when it is already."""
    return image if image.mode == "RGB" else image.convert("RGB")
