"""The ``storyboard`` command: run the local stack, make storyboards.

    storyboard up                      run planner, renderer(s), validator and gateway on 127.0.0.1 until Ctrl-C
    storyboard generate --story TEXT   make a storyboard (starts a local stack for the run if no gateway answers)

Every option can also be set by the environment variable named in its help. Failures exit non-zero with one line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from storyboard.client import DEFAULT_ADDRESS, Client
from storyboard.local_stack import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_PLANNER_PORT,
    DEFAULT_RENDERER_PORT,
    DEFAULT_VALIDATOR_PORT,
    LocalStack,
    StackError,
    StackOptions,
)
from storyboard.results import StoryboardResult
from storyboard.v1 import common_pb2, storyboards_pb2

VERDICTS = {
    common_pb2.VERDICT_PASS: "pass",
    common_pb2.VERDICT_LOW_CONSISTENCY: "low consistency",
    common_pb2.VERDICT_LOW_ALIGNMENT: "low alignment",
    common_pb2.VERDICT_REPETITIVE: "repetitive",
    common_pb2.VERDICT_NOT_VALIDATED: "not validated",
}


class CliError(Exception):
    """A failure to report in one line, with the exit status to use."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- option parsing ---------------------------------------------------------------------------------------------


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def _env(name: str, default: Any, kind: Callable[[str], Any] = str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise CliError(f"invalid ${name}: {error}", 2) from None


PORT = _bounded(int, 0, 65535)


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local stack (also settable by the environment variables shown)")

    def option(flag: str, env: str, default: Any, kind: Callable[[str], Any] = str, **kwargs: Any) -> None:
        help_text = kwargs.pop("help")
        group.add_argument(
            flag, type=kind, default=_env(env, default, kind), help=f"{help_text} [${env}; default: %(default)s]",
            **kwargs,
        )  # fmt: skip

    option("--planner", "STORYBOARD_PLANNER", "offline", choices=["offline", "openai"], help="planner backend")
    option("--renderer-backend", "STORYBOARD_RENDERER_BACKEND", "sketch", choices=["sketch", "diffusers"],
           help="renderer backend: sketch (CPU layout previews) or diffusers (SDXL + LoRA)")  # fmt: skip
    option("--base-model", "STORYBOARD_BASE_MODEL", "", help="SDXL base model: local folder or hub id")
    option("--adapters-dir", "STORYBOARD_ADAPTERS_DIR", None, Path, help="folder of LoRA adapters, used by name")
    option("--characters", "STORYBOARD_CHARACTERS", None, Path, help="character registry file (TOML)")
    option("--clip-model", "STORYBOARD_CLIP_MODEL", "", help="open_clip model name or local-dir:DIR")
    option("--clip-pretrained", "STORYBOARD_CLIP_PRETRAINED", "", help="open_clip weights: tag or checkpoint file")
    option("--device", "STORYBOARD_DEVICE", "auto", choices=["auto", "cpu", "cuda", "mps"], help="compute device")
    option("--renderers", "STORYBOARD_RENDERERS", 1, _bounded(int, 1, 64), help="renderer replicas")
    option("--outputs", "STORYBOARD_OUTPUTS", Path("outputs"), Path, help="folder for storyboard outputs")
    option("--grpc-port", "STORYBOARD_GRPC_PORT", DEFAULT_GRPC_PORT, PORT, help="gateway gRPC port (0: any free)")
    option("--http-port", "STORYBOARD_HTTP_PORT", DEFAULT_HTTP_PORT, PORT, help="gateway REST port (0: any free)")
    option("--planner-port", "STORYBOARD_PLANNER_PORT", DEFAULT_PLANNER_PORT, PORT, help="planner port")
    option("--renderer-port", "STORYBOARD_RENDERER_PORT", DEFAULT_RENDERER_PORT, PORT,
           help="first renderer port; more replicas take the next ports, skipping the validator's")  # fmt: skip
    option("--validator-port", "STORYBOARD_VALIDATOR_PORT", DEFAULT_VALIDATOR_PORT, PORT, help="validator port")


def _stack_options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        planner=args.planner,
        renderer_backend=args.renderer_backend,
        base_model=args.base_model,
        adapters_dir=args.adapters_dir,
        characters=args.characters,
        clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained,
        device=args.device,
        renderers=args.renderers,
        outputs=args.outputs,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        planner_port=args.planner_port,
        renderer_port=args.renderer_port,
        validator_port=args.validator_port,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyboard", description="Turn a story into a storyboard.")
    parser.add_argument("--verbose", action="store_true", help="show stack traces on failure")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the local stack until Ctrl-C or SIGTERM")
    _add_stack_options(up)

    generate = commands.add_parser("generate", help="make a storyboard from a story")
    generate.add_argument("--story", help="the story; asked for interactively when omitted")
    generate.add_argument("--num-frames", type=_bounded(int, 6, 10), help="frames, 6-10 (default: planner decides)")
    generate.add_argument("--base-seed", type=_bounded(int, 0, 2**63 - 1), default=42, help="base seed (42)")
    generate.add_argument("--num-inference-steps", type=_bounded(int, 1, 150), default=40, help="steps (40)")
    generate.add_argument("--guidance-scale", type=_bounded(float, 0, 30), default=7.5, help="guidance (7.5)")
    generate.add_argument("--output-dir", type=Path, help="also write the storyboard's files to this folder")
    generate.add_argument(
        "--gateway",
        help=f"gateway address; without it, $STORYBOARD_GATEWAY or {DEFAULT_ADDRESS} if a gateway answers there, "
        "else a local stack started for this run",
    )
    _add_stack_options(generate)
    return parser


# -- commands ---------------------------------------------------------------------------------------------------


def _wait_for_stop_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def cmd_up(args: argparse.Namespace) -> int:
    stack = LocalStack(_stack_options(args))
    print("starting the local stack…", flush=True)
    with stack:
        for name, address in stack.addresses():
            print(f"  {name:<12} {address}")
        for note in stack.notes:
            print(f"note: {note}")
        print("ready; Ctrl-C stops it", flush=True)
        _wait_for_stop_signal()
        print("stopping…", flush=True)
    return 0


def _read_story(args: argparse.Namespace) -> str:
    if args.story:
        return args.story
    if sys.stdin.isatty():
        print("Story: ", end="", flush=True)
    story = sys.stdin.readline().strip()
    if not story:
        raise CliError("no story given (use --story or type one)", 2)
    return story


def _spec(args: argparse.Namespace, story: str) -> storyboards_pb2.StoryboardSpec:
    spec = storyboards_pb2.StoryboardSpec(
        story=story,
        base_seed=args.base_seed,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
    )
    if args.num_frames is not None:
        spec.num_frames = args.num_frames
    return spec


def _print_event(event: storyboards_pb2.StoryboardEvent) -> None:
    kind = event.WhichOneof("event")
    if kind == "accepted":
        print(f"storyboard {event.storyboard_id} accepted", flush=True)
    elif kind == "plan_ready":
        plan = event.plan_ready.plan
        print(f"plan ready: {len(plan.scenes)} frames (planner: {plan.planner})")
        for scene in plan.scenes:
            print(f"  {scene.frame:>2}. {scene.camera}: {scene.description}")
        for warning in plan.warnings:
            print(f"  warning: {warning}")
    elif kind == "frame_rendered":
        r = event.frame_rendered
        print(f"frame {r.frame} rendered (attempt {r.attempt}, seed {r.seed}, {r.backend})", flush=True)
    elif kind == "frame_validated":
        v = event.frame_validated
        detail = f" ({v.reason})" if v.reason else f" (consistency {v.score.consistency:.2f})"
        print(f"frame {v.frame} validated: {VERDICTS.get(v.verdict, 'unknown')}{detail}", flush=True)
    elif kind == "retry":
        print(f"frame {event.retry.frame}: retry {event.retry.attempt} with seed {event.retry.seed}", flush=True)


def _run_generate(client: Client, spec: storyboards_pb2.StoryboardSpec, output_dir: Path | None) -> int:
    result = StoryboardResult()
    try:
        for event in client.generate(spec):
            result.add(event)
            _print_event(event)
    except KeyboardInterrupt:
        if result.storyboard_id:
            client.cancel(result.storyboard_id)
            print(f"cancelled storyboard {result.storyboard_id}", file=sys.stderr)
        return 130
    if result.failure is not None:
        raise CliError(f"storyboard failed: {result.failure.code}: {result.failure.message}")
    assert result.final is not None
    print(f"storyboard written to {result.final.output_dir}")
    if output_dir is not None:
        result.save(output_dir)
        print(f"copied to {output_dir.resolve()}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    spec = _spec(args, _read_story(args))
    address = args.gateway or os.environ.get("STORYBOARD_GATEWAY") or DEFAULT_ADDRESS
    with Client(address) as client:
        if args.gateway or client.is_serving():
            return _run_generate(client, spec, args.output_dir)
    print(f"no gateway at {address}; starting a local stack for this run", flush=True)
    options = _stack_options(args)
    # Free ports for everything, so this run never collides with a stack the user runs meanwhile.
    options.grpc_port = options.http_port = options.planner_port = options.renderer_port = options.validator_port = 0
    log_dir = Path(tempfile.mkdtemp(prefix="storyboard-logs-"))
    with LocalStack(options, log_dir=log_dir) as stack, Client(stack.gateway_address) as client:
        for note in stack.notes:
            print(f"note: {note}")
        return _run_generate(client, spec, args.output_dir)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except CliError as error:
        print(f"storyboard: {error}", file=sys.stderr)
        return error.status
    try:
        return {"up": cmd_up, "generate": cmd_generate}[args.command](args)
    except CliError as error:
        print(f"storyboard: {error}", file=sys.stderr)
        return error.status
    except StackError as error:
        print(f"storyboard: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        if args.verbose:
            raise
        print(f"storyboard: {error.code().name}: {error.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1


if __name__ == "__main__":
    sys.exit(main())
