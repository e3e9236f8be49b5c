"""Validator benchmark: frames per second scoring one storyboard, batched versus the original's pairwise method.

The original compared each frame with frame 1 one pair at a time, embedding both images anew for every pair: 2(N-1)
forward passes of batch 1 for N frames, consistency only. The validator embeds every image of a call in one batched
pass (and also scores prompt alignment and repetition), and keeps embeddings in a cache keyed by image content, so
re-scoring after one frame was re-rendered embeds one image. All three run side by side on the same loaded model.

    .venv/bin/python bench/validator_bench.py                       # tiny random CLIP on the CPU (seconds)
    .venv/bin/python bench/validator_bench.py --clip-model ViT-L-14 --clip-pretrained /path/open_clip_model.safetensors --device cuda
    .venv/bin/python bench/validator_bench.py --clip-model local-dir:/path/to/clip --size 1024

Prints a markdown table. Timings are medians over --rounds rounds, after --warmup rounds that are not counted.
"""  # noqa: E501

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for bench and the services when run as a script

from bench.tiny_clip import build_tiny_clip  # noqa: E402
from services.validator.requests import parse_score_request  # noqa: E402
from services.validator.scorer import FrameScorer  # noqa: E402
from services.validator.scoring import ReferencePolicy, Thresholds  # noqa: E402
from services.validator.settings import ValidatorSettings  # noqa: E402
from storyboard.v1 import common_pb2  # noqa: E402
from storyboard_common.images import encode  # noqa: E402
from storyboard_common.v1 import validator_pb2  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-model", default="", help="open_clip model name or local-dir:DIR; default: tiny CLIP")
    parser.add_argument("--clip-pretrained", default="", help="tag (in the local cache) or checkpoint file")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--frames", type=int, default=8, help="frames in the storyboard")
    parser.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per method first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    return parser.parse_args(argv)


def storyboard(count: int, size: int) -> list[bytes]:
    """``count`` distinct PNG frames: coloured blocks with a figure in a different place on each."""
    frames = []
    for index in range(count):
        rng = np.random.default_rng(index)
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize((size, size), Image.NEAREST)
        x = size * (index + 1) // (count + 2)
        ImageDraw.Draw(image).ellipse([x, size // 3, x + size // 5, size // 3 + size // 3], fill=(240, 220, 200))
        frames.append(encode(image)[0])  # as a renderer sends it
    return frames


def score_request(frames: list[bytes]) -> validator_pb2.ScoreRequest:
    return validator_pb2.ScoreRequest(
        frames=[common_pb2.Image(data=data, mime_type="image/png") for data in frames],
        prompts=[f"aldar_kose_man crossing the steppe, scene {i}, wide shot" for i in range(len(frames))],
        trigger_tokens=["aldar_kose_man"],
        policy=validator_pb2.REFERENCE_POLICY_FIRST_FRAME,
    )


def original_pairwise(scorer: FrameScorer, frames: list[Image.Image]) -> list[float]:
    """The original's method: frame 1 and frame i embedded afresh, one pair at a time, cosine similarity."""
    import torch

    clip = scorer.clip
    assert clip is not None

    def embed(image: Image.Image) -> torch.Tensor:
        pixels = clip.preprocess(image).unsqueeze(0).to(clip.device, dtype=clip.input_dtype)
        return clip.model.encode_image(pixels).float()

    similarities = [1.0]
    with torch.inference_mode():
        for frame in frames[1:]:
            similarities.append(float(torch.nn.functional.cosine_similarity(embed(frames[0]), embed(frame))))
    return similarities


def median_seconds(work: Callable[[], object], rounds: int, warmup: int, before: Callable[[], object]) -> float:
    """The median time of ``work`` over ``rounds`` rounds, ``before`` run (untimed) ahead of each."""
    times = []
    for round_index in range(warmup + rounds):
        before()
        _synchronize()
        started = time.perf_counter()
        work()
        _synchronize()
        if round_index >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def settings_for(args: argparse.Namespace, scratch: Path) -> ValidatorSettings:
    if args.clip_model:
        return ValidatorSettings(clip_model=args.clip_model, clip_pretrained=args.clip_pretrained, device=args.device)
    folder = build_tiny_clip(scratch / "tiny-clip")
    return ValidatorSettings(clip_model=f"local-dir:{folder}", clip_pretrained="", device=args.device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        settings = settings_for(args, Path(scratch))
        scorer = FrameScorer(
            settings.weights(), settings.device, settings.embedding_cache_size, 1 << 30, settings.preprocess_threads()
        )
        scorer.warm_up()
        thresholds = Thresholds(settings.consistency_threshold, settings.alignment_threshold, 0.95)

        def score(frames: list[bytes]) -> object:
            job = parse_score_request(score_request(frames), settings.limits(), ReferencePolicy.FIRST_FRAME, thresholds)
            return scorer.score(job)

        encoded = storyboard(args.frames, args.size)
        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in encoded]  # the original held PIL images
        rerendered = [*encoded[:-1], storyboard(args.frames + 1, args.size)[-1]]  # the last frame drawn anew
        nothing = lambda: None  # noqa: E731

        rows = [
            (
                "original: pairwise vs frame 1, both re-embedded",
                2 * (args.frames - 1),
                median_seconds(lambda: original_pairwise(scorer, images), args.rounds, args.warmup, nothing),
            ),
            (
                "batched, cold cache (+ alignment, repetition)",
                1,
                median_seconds(lambda: score(encoded), args.rounds, args.warmup, scorer.clear_cache),
            ),
            (
                "batched, one frame re-rendered (warm cache)",
                1,
                median_seconds(
                    lambda: score(rerendered), args.rounds, args.warmup, lambda: (scorer.clear_cache(), score(encoded))
                ),
            ),
        ]
        clip = scorer.clip
        assert clip is not None
        print_table(args, clip.name, str(clip.device), rows)
        scorer.close()
    return 0


def print_table(args: argparse.Namespace, model: str, device: str, rows: list[tuple[str, int, float]]) -> None:
    baseline = args.frames / rows[0][2]
    import torch

    threads = torch.get_num_threads()
    print(
        f"Validator: {args.frames} frames of {args.size}x{args.size}, model {model}, device {device} "
        f"({threads} CPU threads), median of {args.rounds} rounds\n"
    )
    print("| method | image forward passes | ms per storyboard | frames/s | vs original |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, passes, seconds in rows:
        fps = args.frames / seconds
        print(f"| {name} | {passes} | {seconds * 1000:.1f} | {fps:.1f} | {fps / baseline:.2f}x |")
    batched = args.frames / rows[1][2]
    print(f"\nbatched / original frames per second: {batched / baseline:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
