"""Orchestration: how close a storyboard comes to its ideal time, and the gateway's own CPU time per frame.

An 8-frame storyboard at 1024x1024 (SDXL's frame size) goes through the whole stack, every service a process of its
own on loopback: the offline planner, the validator on a tiny random CLIP, R = 1, 2 and 4 renderer replicas with a
gateway over each R, and the SDK's ``Client.generate`` as the client. The replicas are ``bench.fixed_cost_renderer``:
2 s a frame (about SDXL's 20 steps and VAE decode on a fast GPU), one frame at a time, slept rather than computed, so
that they run side by side as GPUs would and what is measured is the stack, not this machine's cores.

Every round measures each stage on its own, directly on idle services (plan: one ``Planner.Plan``; frame: one
``Renderer.Render`` of one frame; validation: one ``Validator.Score`` of a new frame as frame 1, as the gateway asks),
then one storyboard through the gateway of each R. Every storyboard and stage has base seeds of its own
(``fresh_seeds``), so every frame is a picture the validator has not seen. Figures are medians of the rounds:

    ideal(R)              = plan + ceil(frames / R) x frame + validation
    wall over ideal       = request -> Completed at the client, over ideal(R)
    gateway CPU per frame = user + system CPU time of the gateway process over a storyboard (/proc/<pid>/stat, the
                            live form of its rusage), over its frames; the median over every storyboard at every R

    .venv/bin/python -m bench.orchestration --rounds 3 --json bench/results/orchestration.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.common import Section, median, ms, ratio, table, timed  # noqa: E402
from bench.processes import Processes, Service, cpu_seconds  # noqa: E402
from storyboard import Client, events  # noqa: E402
from storyboard.v1 import common_pb2  # noqa: E402
from storyboard_common.v1 import (  # noqa: E402
    planner_pb2,
    planner_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)
from storyboard_common.validation import MAX_FRAMES  # noqa: E402

STORY = (
    "Aldar Kose tricks a wealthy merchant by selling him a magical pot at the bazaar. The merchant boils water in it "
    "and waits for gold. Aldar rides away across the steppe and laughs at sunset."
)
TEMPERATURE = 0.7  # the gateway's default, which it sends to the planner: the planner's cache (temperature 0) is out
SEED_SPACING = MAX_FRAMES  # a storyboard's frames at most: a first attempt's seed is base + frame - 1


def fresh_seeds(start: int = 100) -> Iterator[int]:
    """Base seeds whose frames never share a seed. Every storyboard and stage of a run takes one of its own, so that no
    frame repeats another's picture and the validator embeds each, as it does real frames, instead of finding it in
    its cache (keyed by the image bytes' hash)."""
    return itertools.count(start, SEED_SPACING)


@dataclass(frozen=True)
class Options:
    frames: int = 8
    frame_seconds: float = 2.0
    steps: int = 20
    size: int = 1024
    rounds: int = 3
    replicas: tuple[int, ...] = (1, 2, 4)


@dataclass
class Measurements:
    """Seconds, one entry per round; the storyboards' keyed by R."""

    plan: list[float] = field(default_factory=list)
    frame: list[float] = field(default_factory=list)
    validate: list[float] = field(default_factory=list)
    wall: dict[int, list[float]] = field(default_factory=dict)
    first_frame: dict[int, list[float]] = field(default_factory=dict)  # request -> the first FrameRendered
    gateway_cpu: dict[int, list[float]] = field(default_factory=dict)  # the gateway process's, per storyboard

    def add(self, replicas: int, run: Storyboard) -> None:
        self.wall.setdefault(replicas, []).append(run.wall)
        self.first_frame.setdefault(replicas, []).append(run.first_frame)
        self.gateway_cpu.setdefault(replicas, []).append(run.gateway_cpu)


# -- the stack ----------------------------------------------------------------------------------------------------


@dataclass
class Services:
    """Planner, validator and renderer replicas, shared by every gateway."""

    planner: Service
    validator: Service
    renderers: list[Service]

    def renderer_addresses(self, replicas: int) -> str:
        return ",".join(renderer.address for renderer in self.renderers[:replicas])


def start_services(processes: Processes, scratch: Path, options: Options) -> Services:
    """The planner, the validator and max(R) fixed-cost replicas, waited for until they serve."""
    planner = processes.planner()
    validator = processes.tiny_clip_validator(scratch / "clip")
    cost = ["--frame-seconds", str(options.frame_seconds), "--warm-size", str(options.size)]
    renderers = [processes.fixed_cost_renderer(*cost) for _ in range(max(options.replicas))]
    for renderer in renderers:
        processes.wait_serving(renderer, "storyboard.v1.Renderer")
    processes.wait_serving(validator, "storyboard.v1.Validator", timeout=180)
    return Services(planner, validator, renderers)


def start_gateway(
    processes: Processes,
    services: Services,
    replicas: int,
    outputs: Path,
    root: Path = REPO,
    extra_path: Sequence[Path] = (),
) -> Service:
    """A gateway (of the checkout in ``root``, ``Processes.spawn``) over the first ``replicas`` replicas. No
    re-renders: the ideal counts one render per frame."""
    return processes.gateway(
        services.planner.address, services.renderer_addresses(replicas), outputs, "--max-retries", "0",
        "--log-level", "WARNING", validator=services.validator.address, root=root, extra_path=extra_path,
    )  # fmt: skip


# -- one storyboard -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Storyboard:
    """One storyboard through a gateway: seconds."""

    wall: float  # request -> Completed at the client
    first_frame: float  # request -> the first FrameRendered at the client
    gateway_cpu: float  # the gateway process's CPU time meanwhile


def through_gateway(client: Client, gateway: Service, options: Options, seed: int) -> Storyboard:
    """One storyboard of ``options`` through ``gateway`` (``client`` is connected to it); raises unless it completes."""
    cpu_before = cpu_seconds(gateway.pid)
    started = time.perf_counter()
    first_frame = 0.0
    ending: events.StoryboardEvent | None = None
    run = client.generate(
        story=STORY, num_frames=options.frames, num_inference_steps=options.steps, width=options.size,
        height=options.size, base_seed=seed,
    )  # fmt: skip
    for event in run:
        if isinstance(event, events.FrameRendered) and not first_frame:
            first_frame = time.perf_counter() - started
        elif isinstance(event, events.Completed | events.Failed):
            ending = event
    wall = time.perf_counter() - started
    if not isinstance(ending, events.Completed):
        raise RuntimeError(f"the storyboard did not complete: {ending or 'the stream ended without a final event'}")
    return Storyboard(wall, first_frame, cpu_seconds(gateway.pid) - cpu_before)


# -- each stage on its own ----------------------------------------------------------------------------------------


@dataclass
class Direct:
    """Each service called directly, as the gateway calls it, for the ideal's stage costs."""

    planner: planner_pb2_grpc.PlannerStub
    renderer: renderer_pb2_grpc.RendererStub
    validator: validator_pb2_grpc.ValidatorStub
    options: Options

    @classmethod
    def over(cls, channels: Sequence[grpc.Channel], options: Options) -> Direct:
        planner, renderer, validator = channels
        return cls(
            planner_pb2_grpc.PlannerStub(planner),
            renderer_pb2_grpc.RendererStub(renderer),
            validator_pb2_grpc.ValidatorStub(validator),
            options,
        )

    def plan(self, seed: int) -> common_pb2.Plan:
        options = planner_pb2.PlanOptions(num_frames=self.options.frames, temperature=TEMPERATURE, seed=seed)
        return self.planner.Plan(planner_pb2.PlanRequest(story=STORY, options=options), timeout=60).plan

    def render(self, plan: common_pb2.Plan, scene: common_pb2.Scene, seed: int) -> common_pb2.Image:
        spec = renderer_pb2.FrameSpec(
            frame=scene.frame, prompt=scene.prompt, negative_prompt=plan.negative_prompt, seed=seed,
            width=self.options.size, height=self.options.size, steps=self.options.steps, guidance_scale=7.5,
        )  # fmt: skip
        for event in self.renderer.Render(renderer_pb2.RenderRequest(frames=[spec]), timeout=60):
            if event.HasField("frame"):
                return event.frame.image
        raise RuntimeError("the renderer sent no frame")

    def score(self, image: common_pb2.Image, prompt: str) -> None:
        """``image`` scored as frame 1: against itself."""
        request = validator_pb2.ScoreRequest(
            frames=[image], prompts=[prompt], references=[image], policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES
        )
        self.validator.Score(request, timeout=60)


def stage_costs(direct: Direct, seed: int, into: Measurements) -> None:
    """Plan, frame and validation, each timed on its own on idle services."""
    plans: list[common_pb2.Plan] = []
    into.plan.append(timed(lambda: plans.append(direct.plan(seed))))
    [plan] = plans
    scene = plan.scenes[0]
    images: list[common_pb2.Image] = []
    into.frame.append(timed(lambda: images.append(direct.render(plan, scene, seed))))
    into.validate.append(timed(lambda: direct.score(images[0], scene.prompt)))  # a frame the validator has not seen


# -- the run ------------------------------------------------------------------------------------------------------


def measure(options: Options, scratch: Path, log: Callable[[str], None] = print) -> Measurements:
    """Start the stack, warm every gateway with a storyboard, then ``options.rounds`` rounds: the stage costs, then a
    storyboard through each gateway."""
    measured = Measurements()
    seeds = fresh_seeds()
    with Processes(scratch / "logs") as processes:
        log("orchestration: starting the planner, the validator, the replicas and a gateway for each R")
        services = start_services(processes, scratch, options)
        gateways = {r: start_gateway(processes, services, r, scratch / f"outputs-r{r}") for r in options.replicas}
        # Connected once, as a client keeps its channel: a new connection per storyboard would count its setup.
        clients = {r: Client(gateway.address, timeout=120) for r, gateway in gateways.items()}
        idle_replica = services.renderers[-1]  # idle while the stages are measured: no storyboard runs then
        targets = (services.planner, idle_replica, services.validator)
        channels = [grpc.insecure_channel(service.address) for service in targets]
        direct = Direct.over(channels, options)
        try:
            log("orchestration: one storyboard through every gateway to warm it")
            for replicas in options.replicas:
                through_gateway(clients[replicas], gateways[replicas], options, next(seeds))
            for index in range(options.rounds):
                stage_costs(direct, next(seeds), measured)
                for replicas in options.replicas:
                    measured.add(replicas, through_gateway(clients[replicas], gateways[replicas], options, next(seeds)))
                log(f"orchestration: round {index + 1}/{options.rounds} done")
        finally:
            for closable in [*channels, *clients.values()]:
                closable.close()
    return measured


# -- the figures --------------------------------------------------------------------------------------------------


def ideal(m: Measurements, options: Options, replicas: int) -> float:
    """plan + ceil(frames / R) x frame + validation, from the medians of the stages measured in the same run."""
    return median(m.plan) + math.ceil(options.frames / replicas) * median(m.frame) + median(m.validate)


def wall_over_ideal(m: Measurements, options: Options) -> dict[int, float]:
    return {replicas: median(m.wall[replicas]) / ideal(m, options, replicas) for replicas in options.replicas}


def cpu_ms_per_frame(m: Measurements, options: Options, replicas: Sequence[int] | None = None) -> float:
    """The median over the storyboards (at ``replicas``, or every R) of the gateway's CPU milliseconds per frame."""
    counts = options.replicas if replicas is None else replicas
    return median([cpu * 1000 / options.frames for r in counts for cpu in m.gateway_cpu[r]])


def results(m: Measurements, options: Options) -> dict[str, object]:
    """What ``bench/results/orchestration.json`` holds."""
    return {
        "frame_seconds": options.frame_seconds,
        "size": options.size,
        "wall_over_ideal": {str(r): round(value, 3) for r, value in wall_over_ideal(m, options).items()},
        "gateway_cpu_ms_per_frame": round(cpu_ms_per_frame(m, options), 1),
    }


METHOD = """
`bench/orchestration.py`: an {frames}-frame storyboard at {size}x{size} with {seconds:g} s frames through the whole
stack, every service a process on loopback: the offline planner, the validator on a tiny random CLIP, R renderer
replicas and a gateway over each R, the SDK's `Client.generate` as the client. The replicas are
`bench/fixed_cost_renderer.py`: {seconds:g} s a frame ({steps} steps, about SDXL's steps and VAE decode on a fast GPU),
one frame at a time, slept rather than computed, so that they run side by side as GPUs would and the figures are the
stack's, not this machine's {cores} cores'; each frame is a real {size}x{size} PNG with bytes of its own, which the
validator decodes and embeds. In each of {rounds} rounds every stage is timed on its own, directly on idle services
(plan: one `Planner.Plan`; frame: one `Renderer.Render`; validation: one `Validator.Score` of a new frame as frame 1,
as the gateway asks), then one storyboard goes through the gateway of each R; medians of the rounds.

ideal(R) = plan + ceil({frames}/R) x frame + validation. Wall is request -> Completed at the client. The gateway's CPU
is its process's user + system time over the storyboard (`/proc/<pid>/stat`, the live form of its rusage), divided by
the frames. Written to `bench/results/orchestration.json` too.
"""


def section(m: Measurements, options: Options) -> Section:
    plan, frame, validate = median(m.plan), median(m.frame), median(m.validate)
    ratios = wall_over_ideal(m, options)
    rows = []
    for r in options.replicas:
        best = ideal(m, options, r)
        spread = [wall / best for wall in m.wall[r]]
        rows.append([
            r, ms(best), ms(median(m.wall[r])), ratio(ratios[r]), f"{min(spread):.3f}-{max(spread):.3f}",
            ms(median(m.wall[r]) - best), ms(median(m.first_frame[r])), f"{cpu_ms_per_frame(m, options, [r]):.1f}",
        ])  # fmt: skip
    storyboards = table(
        ["R", "ideal ms", "wall ms", "wall / ideal", "rounds' range", "overhead ms", "first frame ms",
         "gateway CPU ms / frame"],
        rows,
    )  # fmt: skip
    stages = table(
        ["stage (timed directly, median)", "ms"],
        [
            ["plan (one Planner.Plan, offline planner)", ms(plan)],
            [f"frame (one Render, {options.size}x{options.size}, {options.frame_seconds:g} s slept)", ms(frame)],
            ["validation (one new frame, scored as frame 1)", ms(validate)],
        ],
    )
    cpu = cpu_ms_per_frame(m, options)
    worst = max(ratios, key=ratios.__getitem__)
    conclusion = (
        f"Wall over ideal: {', '.join(f'{ratios[r]:.3f} at R = {r}' for r in options.replicas)} (the most at "
        f"R = {worst}, {ms(median(m.wall[worst]) - ideal(m, options, worst))} ms over {ms(ideal(m, options, worst))}). "
        f"The gateway spends {cpu:.1f} ms of CPU per frame (median over every storyboard), "
        f"{cpu / (options.frame_seconds * 1000):.1%} of a {options.frame_seconds:g} s GPU frame."
    )
    method = METHOD.format(
        frames=options.frames, size=options.size, seconds=options.frame_seconds, steps=options.steps,
        cores=os.cpu_count(), rounds=options.rounds,
    )  # fmt: skip
    scale = f"{options.size}x{options.size}, {options.frame_seconds:g} s frames"
    title = f"Orchestration: wall over ideal and the gateway's CPU per frame ({scale})"
    return Section(title, method, [storyboards, "Stage costs:", stages], conclusion)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=Options.rounds)
    parser.add_argument("--frames", type=int, default=Options.frames)
    parser.add_argument("--frame-seconds", type=float, default=Options.frame_seconds)
    parser.add_argument("--size", type=int, default=Options.size)
    parser.add_argument("--replicas", type=counts, default=Options.replicas, help="comma list of replica counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4)."""
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma list of positive whole numbers, not {text!r}")
    return values


def run(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> Section:
    args = parse_args(argv)
    options = Options(
        frames=args.frames, frame_seconds=args.frame_seconds, size=args.size, rounds=args.rounds,
        replicas=args.replicas,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as scratch:
        measured = measure(options, Path(scratch), log)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results(measured, options), indent=2) + "\n")
    return section(measured, options)


if __name__ == "__main__":
    print(run(log=lambda line: print(line, file=sys.stderr, flush=True)).markdown())
