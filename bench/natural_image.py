"""A stand-in for a rendered frame whose encoded size is like a real one's: a synthetic image with natural-image
statistics, built in code (nothing is downloaded).

Compression ratios depend on content: a flat panel compresses to almost nothing and white noise not at all, so
neither says what sending an SDXL frame costs. This image is the "dead leaves" model (overlapping opaque discs whose
radii follow a power law: edges at every scale, as in photographs and renders) under soft lighting gradients, plus a
faint 1/f texture (natural images' amplitude spectrum falls as 1/f) and a little grain. At 1024x1024 it encodes to
about 1.5-2 MB as PNG, which is where real SDXL 1024x1024 PNGs lie.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def natural_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic ``width`` x ``height`` RGB image with natural-image statistics."""
    rng = np.random.default_rng(seed)
    scale = max(width, height)
    canvas = Image.fromarray(_gradient(width, height, rng))
    draw = ImageDraw.Draw(canvas)
    # Dead leaves: discs from large to small, radius density ~ r^-3 (scale invariance), colours from a few hues.
    palette = rng.integers(30, 230, (12, 3))
    for _ in range(4000):
        radius = min(scale * 0.006 / (1 - rng.random()) ** 0.5, scale * 0.3)
        x, y = rng.uniform(-radius, width + radius), rng.uniform(-radius, height + radius)
        colour = palette[rng.integers(len(palette))] + rng.integers(-25, 26, 3)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(int(c) for c in colour.clip(0, 255)))
    pixels = np.asarray(canvas.filter(ImageFilter.GaussianBlur(scale / 1400)), dtype=np.float32)
    pixels = pixels * _shading(width, height, rng)[..., None]
    pixels += _pink_noise(width, height, rng)[..., None] * 10.0  # texture shared by the channels, as in real images
    pixels += rng.normal(0.0, 1.6, pixels.shape)  # sensor-like grain: renders have some, and PNG feels it
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def _gradient(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    top, bottom = rng.integers(60, 200, 3), rng.integers(20, 160, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8)


def _shading(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Soft light falling off from a random point: smooth variation over the whole frame."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    distance = np.hypot(xs - cx, ys - cy) / max(width, height)
    return (1.15 - 0.55 * distance).clip(0.5, 1.2)


def _pink_noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise with a 1/f amplitude spectrum, scaled to unit standard deviation."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return (field / field.std()).astype(np.float32)
