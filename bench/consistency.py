"""Character consistency by mode: how alike one subject stays across settings, and how well each frame follows its
prompt, with each way the renderer has of keeping a character alike.

ConsiStory+-style prompt sets: a subject in five settings. Each mode renders every set through the renderer's own
service (in this process, on the weights given), and the validator's own service scores the frames:

- CLIP-T: the mean cosine similarity of a frame to its prompt (trigger tokens left out), over all frames;
- CLIP-I: the mean cosine similarity of two frames of the same subject, over all pairs;

as the 1Prompt1Story paper reports them. Modes: ``none`` (plain SDXL), ``lora`` (``--lora NAME`` from
``--adapters-dir``, its ``--trigger-token`` in every prompt), ``ip-adapter`` (``--ip-adapter DIR``; each subject
conditioned on its first frame drawn without help), ``shared-attention`` (the renderer's ``--consistency
shared-attention``, a subject's frames in one request). A mode whose weights are not given is left out. The
published anchors are printed beside the results; they were measured on other prompt sets and CLIP models, so
compare the modes with one another first.

    python -m bench.consistency --base-model /models/sdxl-base-1.0 --clip-model ViT-L-14 \\
        --clip-pretrained /models/clip/ViT-L-14.pt --ip-adapter /models/ip-adapter-sdxl \\
        --adapters-dir /models/loras --lora aldar_kose --trigger-token aldar_kose_man

Without ``--base-model`` (or with one that is not on disk) it says so and stops: no weights are ever downloaded.
Writes a Markdown table to ``--output`` (default bench/results/consistency.md) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.renderer.server import create_server as create_renderer  # noqa: E402
from services.renderer.settings import RendererSettings  # noqa: E402
from services.validator.server import create_server as create_validator  # noqa: E402
from services.validator.settings import ValidatorSettings  # noqa: E402
from storyboard.v1 import common_pb2  # noqa: E402
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc, validator_pb2, validator_pb2_grpc  # noqa: E402

RESULTS = REPO / "bench" / "results"
SUBJECTS = (
    "a young woman with short red hair and a yellow raincoat",
    "an old fisherman with a white beard and a knitted cap",
    "a small fluffy corgi with a red collar",
    "a cartoon robot with a round blue head",
)
SETTINGS = (
    "walking through a snowy forest",
    "sitting in a busy cafe",
    "standing on a beach at sunset",
    "reading a book in a quiet library",
    "crossing a city street in the rain",
)
# (CLIP-T, CLIP-I) as published in the 1Prompt1Story paper's comparison on ConsiStory+.
ANCHORS = {
    "vanilla SDXL": (0.907, 0.817),
    "StoryDiffusion": (0.888, 0.876),
    "IP-Adapter": (0.846, 0.943),
    "1Prompt1Story": (0.894, 0.912),
}
MODES = ("none", "lora", "ip-adapter", "shared-attention")
READY_SECONDS = 1800  # loading SDXL from a slow disk


@dataclass(frozen=True)
class ModeScores:
    mode: str
    clip_t: float
    clip_i: float
    frames: int


def prompt_sets(subjects: int, trigger_token: str = "") -> list[list[str]]:
    """Each subject in every setting; a LoRA's trigger token leads every prompt of the set."""
    lead = f"{trigger_token}, " if trigger_token else ""
    return [[f"{lead}{subject} {setting}" for setting in SETTINGS] for subject in SUBJECTS[:subjects]]


# -- the services, in this process --------------------------------------------------------------------------------


@contextmanager
def serving(factory: Any, settings: Any) -> Iterator[grpc.Channel]:
    server, port = factory(settings)
    server.start()
    try:
        if not server.ready.wait(READY_SECONDS):
            raise SystemExit(f"{type(settings).__name__} never became ready: {server.not_ready_reason}")
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1)]) as channel:
            yield channel
    finally:
        server.stop(0)


def renderer_settings(args: argparse.Namespace, mode: str) -> RendererSettings:
    values: dict[str, Any] = {
        "port": 0, "backend": "diffusers", "base_model": args.base_model, "device": args.device,
        "min_size": min(args.size, 256), "max_size": max(args.size, 256), "max_batch_size": len(SETTINGS),
        "adapters_dir": args.adapters_dir,
    }  # fmt: skip
    if mode == "ip-adapter":
        values["ip_adapter"] = args.ip_adapter
    if mode == "shared-attention":
        values["consistency"] = "shared-attention"
    return RendererSettings(**values)


def render_set(
    renderer: renderer_pb2_grpc.RendererStub,
    prompts: Sequence[str],
    args: argparse.Namespace,
    adapters: Sequence[common_pb2.AdapterRef] = (),
    references: Sequence[common_pb2.CharacterPictures] = (),
) -> list[common_pb2.Image]:
    """One subject's frames, in one request (a renderer sharing attention draws them together)."""
    frames = [
        renderer_pb2.FrameSpec(
            frame=number,
            prompt=prompt,
            seed=args.seed + number,
            width=args.size,
            height=args.size,
            steps=args.steps,
            guidance_scale=7.5,
            adapters=adapters,
            references=references,
        )
        for number, prompt in enumerate(prompts, start=1)
    ]
    images = {}
    for event in renderer.Render(renderer_pb2.RenderRequest(frames=frames)):
        if event.HasField("frame"):
            images[event.frame.frame] = event.frame.image
    return [images[number] for number in sorted(images)]


# -- the scores ---------------------------------------------------------------------------------------------------


def clip_t(validator: validator_pb2_grpc.ValidatorStub, images: Sequence[common_pb2.Image], prompts: Sequence[str],
           trigger_token: str) -> list[float]:  # fmt: skip
    """Each frame's similarity to its prompt."""
    request = validator_pb2.ScoreRequest(frames=images, prompts=prompts, trigger_tokens=[trigger_token] if trigger_token
                                         else [])  # fmt: skip
    return [score.alignment for score in validator.Score(request).scores]


def clip_i(validator: validator_pb2_grpc.ValidatorStub, images: Sequence[common_pb2.Image]) -> list[float]:
    """The similarity of every pair of frames: each frame's score with another as the only reference picture."""
    similarities = []
    for first, second in itertools.combinations(range(len(images)), 2):
        request = validator_pb2.ScoreRequest(
            frames=[images[first]], references=[images[second]],
            policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
        )  # fmt: skip
        similarities.append(validator.Score(request).scores[0].consistency)
    return similarities


# -- the modes ----------------------------------------------------------------------------------------------------


def available_modes(args: argparse.Namespace) -> list[str]:
    """The modes whose weights were given."""
    given = {"none": True, "lora": bool(args.lora and args.adapters_dir), "ip-adapter": bool(args.ip_adapter),
             "shared-attention": True}  # fmt: skip
    return [mode for mode in args.modes if given[mode]]


def run_mode(mode: str, args: argparse.Namespace, validator: validator_pb2_grpc.ValidatorStub,
             first_frames: dict[int, common_pb2.Image]) -> ModeScores:  # fmt: skip
    token = args.trigger_token if mode == "lora" else ""
    adapters = [common_pb2.AdapterRef(name=args.lora, weight=1.0)] if mode == "lora" else []
    texts, pairs, count = [], [], 0
    with serving(create_renderer, renderer_settings(args, mode)) as channel:
        renderer = renderer_pb2_grpc.RendererStub(channel)
        for subject, prompts in enumerate(prompt_sets(args.subjects, token)):
            references = []
            if mode == "ip-adapter":
                references = [common_pb2.CharacterPictures(trigger_token="subject", pictures=[first_frames[subject]])]
            images = render_set(renderer, prompts, args, adapters, references)
            if mode == "none":
                first_frames[subject] = images[0]
            texts += clip_t(validator, images, prompts, token)
            pairs += clip_i(validator, images)
            count += len(images)
    return ModeScores(mode, statistics.fmean(texts), statistics.fmean(pairs), count)


def table(results: Sequence[ModeScores], args: argparse.Namespace) -> str:
    lines = [
        "# Character consistency by mode",
        "",
        f"{datetime.date.today().isoformat()}; `{args.base_model}`, CLIP `{args.clip_model}`; {args.subjects} "
        f"subjects x {len(SETTINGS)} settings, {args.size}x{args.size}, {args.steps} steps, seed {args.seed}.",
        "",
        "| mode | CLIP-T | CLIP-I | frames |",
        "| --- | --- | --- | --- |",
        *(f"| {r.mode} | {r.clip_t:.3f} | {r.clip_i:.3f} | {r.frames} |" for r in results),
        "",
        "Published on ConsiStory+ (1Prompt1Story), other prompts and CLIP model: compare the modes above first.",
        "",
        "| method | CLIP-T | CLIP-I |",
        "| --- | --- | --- |",
        *(f"| {name} | {t:.3f} | {i:.3f} |" for name, (t, i) in ANCHORS.items()),
    ]
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="", help="SDXL pipeline folder (nothing is downloaded)")
    parser.add_argument("--clip-model", default="ViT-L-14", help="open_clip model name, or local-dir:DIR")
    parser.add_argument("--clip-pretrained", default="", help="open_clip weights: a checkpoint file or cached tag")
    parser.add_argument("--ip-adapter", type=Path, help="IP-Adapter folder (the renderer's --ip-adapter)")
    parser.add_argument("--adapters-dir", type=Path, help="LoRA adapters folder")
    parser.add_argument("--lora", default="", help="the LoRA adapter for the lora mode")
    parser.add_argument("--trigger-token", default="", help="the LoRA's trigger token")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--subjects", type=int, default=len(SUBJECTS), choices=range(1, len(SUBJECTS) + 1))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--output", type=Path, default=RESULTS / "consistency.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if not args.base_model or not Path(args.base_model).is_dir():
        print(f"skipped: no SDXL weights on disk (--base-model {args.base_model or 'not given'}); nothing is "
              "downloaded. Published anchors (CLIP-T, CLIP-I):")  # fmt: skip
        for name, (t, i) in ANCHORS.items():
            print(f"  {name:<15} {t:.3f}  {i:.3f}")
        return 0
    validator_settings = ValidatorSettings(port=0, clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                                           device=args.device)  # fmt: skip
    first_frames: dict[int, common_pb2.Image] = {}
    modes = available_modes(args)
    if "ip-adapter" in modes and "none" not in modes:
        modes.insert(0, "none")  # the IP-Adapter mode's references are the plain mode's first frames
    with serving(create_validator, validator_settings) as channel:
        validator = validator_pb2_grpc.ValidatorStub(channel)
        results = [run_mode(mode, args, validator, first_frames) for mode in modes]
    text = table(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
