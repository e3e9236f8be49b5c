"""The ``storyboard`` command: run the local stack, plan stories, make and follow storyboards.

    storyboard up                              run planner, renderer(s), validator and gateway until Ctrl-C
    storyboard plan --story TEXT               plan a story (no GPU, no stack): the spec's "test the breakdown first"
    storyboard generate --story TEXT           make a storyboard (starts a local stack if no gateway answers)
    storyboard generate --plan FILE            render a plan (scene_breakdown.json), edited or not, as given
    storyboard status ID | cancel ID | fetch ID --output-dir DIR
    storyboard export ID --format mp4|gif|zip|csv [--output FILE]   an animatic, the folder as a ZIP, the shot list

Options can also be set by the environment variables named in ``--help``. Failures exit non-zero with one line
(``--verbose`` shows the stack trace; a local-stack service that failed adds the end of its log); bad flags exit 2
naming the flag; Ctrl-C cancels and exits 130; a closed stdout (``| head``) ends a command quietly with 141. ``up``
exits 0 when Ctrl-C or SIGTERM stops a ready stack, 130 or 143 when either interrupts its start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from storyboard.client import DEFAULT_ADDRESS, EXPORT_FORMATS, Client, make_spec
from storyboard.plans import read_plan
from storyboard.progress import PlainReporter, summary_rows
from storyboard.results import PLAN_FILES, SCENE_BREAKDOWN, SDXL_PROMPTS, StoryboardResult, write_named_files
from storyboard.v1 import common_pb2, storyboards_pb2


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


DEFAULT_NUM_FRAMES = 8  # the original's default
AUTO = "auto"


def _frame_count(text: str) -> int | str:
    """--num-frames: 6 to 10, or ``auto`` for the planner to choose."""
    return AUTO if text.strip().lower() == AUTO else _bounded(int, 6, 10)(text)


def _num_frames(args: argparse.Namespace) -> int | None:
    """The frame count to ask for: the one given (None for auto), else the original's 8, except for a given plan,
    whose scenes are its frames."""
    if args.num_frames is None:
        return None if getattr(args, "plan", None) is not None else DEFAULT_NUM_FRAMES
    return None if args.num_frames == AUTO else args.num_frames


def _env(name: str, default: Any, kind: Callable[[str], Any] = str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise CliError(f"invalid ${name}: {error}", 2) from None


PORT = _bounded(int, 0, 65535)
# The local stack's ports, as storyboard up binds them unless told otherwise.
DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT = 50051, 8000
DEFAULT_PLANNER_PORT, DEFAULT_RENDERER_PORT, DEFAULT_VALIDATOR_PORT = 50052, 50053, 50054


@dataclass(frozen=True)
class StackFlag:
    """A local-stack option: its flag, the environment variable that sets it too, and its built-in default."""

    flag: str
    env: str
    default: Any
    help: str
    kind: Callable[[str], Any] = str
    choices: Sequence[str] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


STACK_FLAGS = (
    StackFlag("--planner", "STORYBOARD_PLANNER", "auto", choices=["auto", "offline", "openai"],
              help="planner backend; auto: openai when an API key is set, else offline"),
    StackFlag("--renderer-backend", "STORYBOARD_RENDERER_BACKEND", "sketch", choices=["sketch", "diffusers"],
              help="renderer backend: sketch (CPU layout previews) or diffusers (SDXL + LoRA)"),
    StackFlag("--base-model", "STORYBOARD_BASE_MODEL", "", help="SDXL base model: local folder or hub id"),
    StackFlag("--adapters-dir", "STORYBOARD_ADAPTERS_DIR", None, kind=Path,
              help="folder of LoRA adapters, used by name"),
    StackFlag("--ip-adapter", "STORYBOARD_IP_ADAPTER", None, kind=Path,
              help="IP-Adapter folder (diffusers renderer): frames follow the characters' reference pictures"),
    StackFlag("--consistency", "STORYBOARD_CONSISTENCY", "off", choices=["off", "shared-attention"],
              help="renderer (diffusers): frames rendered together share their self-attention, to look alike"),
    StackFlag("--characters", "STORYBOARD_CHARACTERS", None, kind=Path, help="character registry file (TOML)"),
    StackFlag("--clip-model", "STORYBOARD_CLIP_MODEL", "", help="open_clip model name or local-dir:DIR"),
    StackFlag("--clip-pretrained", "STORYBOARD_CLIP_PRETRAINED", "", help="open_clip weights: tag or checkpoint file"),
    StackFlag("--device", "STORYBOARD_DEVICE", "auto", choices=["auto", "cpu", "cuda", "mps"], help="compute device"),
    StackFlag("--renderers", "STORYBOARD_RENDERERS", 1, kind=_bounded(int, 1, 64), help="renderer replicas"),
    StackFlag("--outputs", "STORYBOARD_OUTPUTS", Path("outputs"), kind=Path, help="folder for storyboard outputs"),
    StackFlag("--grpc-port", "STORYBOARD_GRPC_PORT", DEFAULT_GRPC_PORT, kind=PORT,
              help="gateway gRPC port (0: any free)"),
    StackFlag("--http-port", "STORYBOARD_HTTP_PORT", DEFAULT_HTTP_PORT, kind=PORT,
              help="gateway REST port (0: any free)"),
    StackFlag("--planner-port", "STORYBOARD_PLANNER_PORT", DEFAULT_PLANNER_PORT, kind=PORT, help="planner port"),
    StackFlag("--renderer-port", "STORYBOARD_RENDERER_PORT", DEFAULT_RENDERER_PORT, kind=PORT,
              help="first renderer port; more replicas take the next ports, skipping the validator's"),
    StackFlag("--validator-port", "STORYBOARD_VALIDATOR_PORT", DEFAULT_VALIDATOR_PORT, kind=PORT,
              help="validator port"),
)  # fmt: skip


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local stack (also settable by the environment variables shown)")
    for option in STACK_FLAGS:
        group.add_argument(
            option.flag, type=option.kind, default=_env(option.env, option.default, option.kind),
            choices=option.choices, help=f"{option.help} [${option.env}; default: %(default)s]",
        )  # fmt: skip


def _stack_options(args: argparse.Namespace) -> dict[str, Any]:
    """The local stack's options (``StackOptions`` of the server package) from the command line."""
    return {option.dest: getattr(args, option.dest) for option in STACK_FLAGS}


def _local_stack(needed_for: str) -> Any:
    """The server package's local stack (``storyboard_server.local_stack``), found through its entry point."""
    return _server("stack", needed_for)


def _add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", help=f"gateway address [default: $STORYBOARD_GATEWAY, else {DEFAULT_ADDRESS}]")
    parser.add_argument(
        "--gateway-key",
        default=os.environ.get("STORYBOARD_API_KEY") or None,
        help="API key for a gateway that requires one [$STORYBOARD_API_KEY]",
    )


def _add_story_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--story", help="the story; asked for interactively when omitted")
    parser.add_argument(
        "--num-frames",
        type=_frame_count,
        help=f"frames, 6-10, or {AUTO} for the planner to choose ({DEFAULT_NUM_FRAMES})",
    )
    parser.add_argument(
        "--character", action="append", default=[], help="a registered character to feature (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--output-dir", type=Path, help="write the storyboard's files into this folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyboard", description="Turn a story into a storyboard.")
    parser.add_argument("--verbose", action="store_true", help="show stack traces on failure")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the local stack until Ctrl-C or SIGTERM")
    _add_stack_options(up)

    plan = commands.add_parser("plan", help="plan a story without rendering (no GPU, no running stack needed)")
    _add_story_options(plan)
    plan.add_argument("--characters-file", type=Path, default=_env("STORYBOARD_CHARACTERS", None, Path),
                      help="character registry (TOML) [$STORYBOARD_CHARACTERS]")  # fmt: skip
    plan.add_argument("--api-key", help="OpenAI API key for the LLM planner [default: $OPENAI_API_KEY]")
    plan.add_argument("--temperature", type=_bounded(float, 0, 1), help="LLM temperature, 0-1 (0.7)")
    plan.add_argument("--gateway", help="plan through this gateway instead of in this process")

    generate = commands.add_parser("generate", help="make a storyboard from a story")
    _add_story_options(generate)
    generate.add_argument(
        "--plan", type=Path, help="render this plan (a scene_breakdown.json, edited or not) instead of planning again"
    )
    generate.add_argument("--lora-path", help="LoRA adapter: its name, or a checkpoint path when a local stack runs")
    generate.add_argument("--trigger-token", help="the token the LoRA was trained on, for the prompts to carry")
    generate.add_argument("--base-seed", type=_bounded(int, 0, 2**63 - 1), default=42, help="base seed (42)")
    generate.add_argument("--num-inference-steps", type=_bounded(int, 1, 150), default=40, help="steps (40)")
    generate.add_argument("--guidance-scale", type=_bounded(float, 0, 30), default=7.5, help="guidance (7.5)")
    generate.add_argument(
        "--deterministic", action="store_true", help="render each frame alone, never batched: same run, same pixels"
    )
    generate.add_argument("--width", type=_bounded(int, 256, 2048), help="frame width, a multiple of 8 (1024)")
    generate.add_argument("--height", type=_bounded(int, 256, 2048), help="frame height, a multiple of 8 (1024)")
    generate.add_argument(
        "--aspect", help="frame shape at a size SDXL was trained at: 1:1, 16:9 (1344x768), 9:16, 4:3, 3:4, 2.39:1"
    )
    generate.add_argument("--negative-prompt", help="every frame's negative prompt, instead of the planner's")
    generate.add_argument(
        "--reference", action="append", default=[], metavar="TRIGGER_TOKEN=FILE", type=_reference,
        help="a reference picture of a registered character for this storyboard (repeat for more): it conditions "
        "the character's frames on a renderer with --ip-adapter, and they are scored against it",
    )  # fmt: skip
    generate.add_argument("--api-key", help="OpenAI API key for the local stack's planner [default: $OPENAI_API_KEY]")
    _add_gateway_options(generate)
    _add_stack_options(generate)

    for name, text in (("status", "show a storyboard"), ("cancel", "cancel a storyboard")):
        command = commands.add_parser(name, help=text)
        command.add_argument("id", help="storyboard id")
        command.add_argument("--json", action="store_true", help="print the storyboard as JSON")
        _add_gateway_options(command)
    fetch = commands.add_parser("fetch", help="download a storyboard's files from a gateway")
    fetch.add_argument("id", help="storyboard id")
    fetch.add_argument("--output-dir", type=Path, required=True, help="folder to write the files into")
    _add_gateway_options(fetch)
    _add_export_command(commands)
    return parser


def _add_export_command(commands: Any) -> None:
    export = commands.add_parser("export", help="an animatic (mp4, gif), the folder as a zip, or the shot list (csv)")
    export.add_argument("id", help="storyboard id (a completed one)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, type=str.lower, help="what to export")
    export.add_argument("--output", type=Path, help="file to write [default: its own name here, e.g. animatic.mp4]")
    export.add_argument("--captions", action="store_true", help="mp4, gif: burn each frame's shot and description in")
    export.add_argument("--crossfade", action="store_true", help="mp4: cross-fade between frames instead of cutting")
    export.add_argument("--attempts", action="store_true", help="zip: include every rendered attempt")
    _add_gateway_options(export)


# -- commands ---------------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    stacks = _local_stack("storyboard up")
    stack = stacks.LocalStack(stacks.StackOptions(**_stack_options(args)))
    # Signals are handled before the first service starts: one during start-up stops those already started and
    # exits 128 + its number (130, 143); once ready, Ctrl-C or SIGTERM is the way to stop the stack and exits 0.
    with stacks.stop_on_signals(stack):
        print("starting the local stack…", flush=True)
        with stack:
            for name, address in stack.addresses():
                print(f"  {name:<12} {address}")
            for note in stack.notes:
                print(f"note: {note}")
            print("ready; Ctrl-C stops it", flush=True)
            stack.wait()  # a service that keeps exiting raises StackError naming it: exit 1
    print("stopped", flush=True)
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


def _plan_json(plan: common_pb2.Plan, files: dict[str, bytes]) -> dict[str, Any]:
    """The plan as ``--json`` prints it: its scenes and prompts as its files (made by the server) hold them."""
    return {
        "story": plan.story,
        "num_frames": len(plan.scenes),
        "scenes": json.loads(files[SCENE_BREAKDOWN])["scenes"],
        "prompts": json.loads(files[SDXL_PROMPTS]),
        "negative_prompt": plan.negative_prompt,
        "warnings": list(plan.warnings),
        "planner": plan.planner,
    }


def cmd_plan(args: argparse.Namespace) -> int:
    story = _read_story(args)
    if args.gateway:
        with Client(args.gateway) as client:
            spec = make_spec(story=story, num_frames=_num_frames(args), temperature=args.temperature,
                             characters=args.character)  # fmt: skip
            plan, files = client.plan_with_files(spec)
    else:
        plan, files = _plan_in_process(args, story)
    if args.output_dir is not None:
        write_named_files(args.output_dir, files)
    if args.json:
        print(json.dumps(_plan_json(plan, files), indent=2, ensure_ascii=False))
        return 0
    print(f"{len(plan.scenes)} frames (planner: {plan.planner})")
    for scene in plan.scenes:
        print(f"\n{scene.frame:>2}. {scene.camera} | {scene.mood} | {scene.setting}, {scene.lighting}")
        print(f"    {scene.description}")
        print(f"    prompt: {scene.prompt}")
    print(f"\nnegative prompt: {plan.negative_prompt}")
    for warning in plan.warnings:
        print(f"warning: {warning}")
    if args.output_dir is not None:
        print(f"\nwrote {' and '.join(files)} to {args.output_dir.resolve()}")
    return 0


def _server(capability: str, needed_for: str) -> Any:
    """What the storyboard-server package offers under ``capability`` (entry point group ``storyboard.server``),
    found without importing it; a CliError saying what to install when it is not."""
    found = entry_points(group="storyboard.server", name=capability)
    if not found:
        raise CliError(f"{needed_for} needs the storyboard-server package (pip install storyboard-server)")
    return next(iter(found)).load()


def _plan_in_process(args: argparse.Namespace, story: str) -> tuple[common_pb2.Plan, dict[str, bytes]]:
    plan_with_files = _server("plan", "planning without --gateway")
    try:
        return plan_with_files(story, _num_frames(args), characters=args.character, temperature=args.temperature,
                               characters_file=args.characters_file, api_key=args.api_key)  # fmt: skip
    except ValueError as error:
        raise CliError(str(error)) from None


def _given_plan(args: argparse.Namespace) -> common_pb2.Plan | None:
    """The plan of --plan, read before anything starts; its characters are its scenes' own."""
    if args.plan is None:
        return None
    if args.character:
        raise CliError("--character: a plan names its characters in its scenes' trigger_tokens; leave it out", 2)
    try:
        return read_plan(args.plan)
    except ValueError as error:
        raise CliError(f"--plan: {error}", 2) from None


def _generate_spec(
    args: argparse.Namespace,
    story: str,
    plan: common_pb2.Plan | None,
    adapter: str | None,
    lora_token: str | None = None,
) -> storyboards_pb2.StoryboardSpec:
    # A given plan names its characters in its scenes (the LoRA's token among them, where it draws one).
    featured = lora_token and lora_token not in args.character and plan is None
    characters = [*args.character, *([lora_token] if featured else [])]
    return make_spec(
        story=story, num_frames=_num_frames(args), base_seed=args.base_seed,
        num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
        characters=characters, adapters={adapter: 1.0} if adapter else None,
        deterministic=args.deterministic or None, plan=plan, width=args.width, height=args.height,
        aspect=args.aspect, negative_prompt=args.negative_prompt, character_references=_references(args.reference),
    )  # fmt: skip


def _reference(text: str) -> tuple[str, Path]:
    token, separator, file = text.partition("=")
    if not separator or not token.strip() or not file:
        raise argparse.ArgumentTypeError(f"{text!r} is not TRIGGER_TOKEN=FILE")
    if not Path(file).is_file():
        raise argparse.ArgumentTypeError(f"{file} is not a file")
    return token.strip(), Path(file)


def _references(given: Sequence[tuple[str, Path]]) -> dict[str, list[Path]]:
    """The --reference pictures, by character, in the order given."""
    by_token: dict[str, list[Path]] = {}
    for token, file in given:
        by_token.setdefault(token, []).append(file)
    return by_token


def _lora(args: argparse.Namespace, local_options: dict[str, Any] | None) -> str | None:
    """The adapter name for --lora-path; a checkpoint path becomes the local stack's adapters folder."""
    if not args.lora_path:
        return None
    path = Path(args.lora_path)
    if not path.exists():
        return args.lora_path
    if local_options is None:
        raise CliError("--lora-path: a checkpoint path works only when generate starts its own local stack; "
                       "give the adapter's name as the gateway knows it", 2)  # fmt: skip
    local_options["adapters_dir"] = path.resolve().parent
    return path.stem if path.is_file() else path.name


def _lora_token(args: argparse.Namespace, adapter: str | None, local_options: dict[str, Any], out: Any) -> str | None:
    """The trigger token of a --lora-path checkpoint, for the prompts to carry (the server package finds it, and the
    registry the local stack's planner then reads); a warning when none is known."""
    if adapter is None or not Path(args.lora_path).exists():
        return args.trigger_token
    lora_character = _server("lora", "--lora-path with a checkpoint")
    try:
        found = lora_character(Path(args.lora_path).resolve(), adapter, args.trigger_token, local_options["characters"])
    except ValueError as error:  # a registry that cannot be read
        raise CliError(str(error), 2) from None
    local_options["characters"] = found.characters_file
    if found.token is None:
        print(f"warning: the trigger token of the LoRA {adapter!r} is not known (no --trigger-token, no registry "
              "entry whose adapter it is, no ss_tag_frequency or training config with one): its prompts may not "
              "fire it", file=out)  # fmt: skip
    else:
        print(f"note: the LoRA {adapter!r} is fired by {found.token!r} (from {found.source})", file=out)
    return found.token


def _live() -> Any:
    """``storyboard.live`` (bars and tables on a terminal) where rich is installed, else None."""
    try:
        from storyboard import live
    except ImportError:  # the SDK without its progress extra: plain lines
        return None
    return live


def _follow(run: Any, json_mode: bool) -> StoryboardResult:
    live = _live() if sys.stdout.isatty() and not json_mode else None
    reporter = live.LiveReporter() if live else PlainReporter(sys.stderr if json_mode else sys.stdout)
    try:
        with reporter:
            for event in run:
                reporter.show(event)
    except KeyboardInterrupt:
        if run.storyboard_id:
            run.cancel()
            print(f"cancelled storyboard {run.storyboard_id}", file=sys.stderr)
        raise CliError("interrupted", 130) from None
    return run.result


def _report(result: StoryboardResult, args: argparse.Namespace, client: Client) -> int:
    if result.failure is not None:
        failure = result.failure
        raise CliError(f"storyboard {result.storyboard_id} failed: {failure.code}: {failure.message}")
    assert result.final is not None
    saved = client.download(result.final.id, args.output_dir) if args.output_dir is not None else []
    if args.json:
        document = {
            "id": result.final.id,
            "output_dir": result.final.output_dir,
            "saved_to": str(args.output_dir.resolve()) if args.output_dir else None,
            "plan": _plan_json(result.plan, client.read_files(result.final.id, PLAN_FILES)) if result.plan else None,
            "frames": [dict(zip(("frame", "seed", "attempts", "consistency", "alignment", "verdict"), row,
                                strict=True)) for row in summary_rows(result)],
        }  # fmt: skip
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    if sys.stdout.isatty() and (live := _live()):
        live.Console().print(live.frames_table(result))
    else:
        for row in summary_rows(result):
            print("frame {} seed {} attempts {} consistency {} alignment {} verdict {}".format(*row))
    print(f"storyboard written to {result.final.output_dir}")
    if saved:
        print(f"files also written to {args.output_dir.resolve()}")
    return 0


def _gateway_address(args: argparse.Namespace) -> str:
    return args.gateway or os.environ.get("STORYBOARD_GATEWAY") or DEFAULT_ADDRESS


def _setting(option: StackFlag, value: Any) -> str:
    """``--device cuda``, and where it came from when that was the environment (a user may not know it is set)."""
    text = f"{option.flag} {shlex.quote(str(value))}"
    if os.environ.get(option.env) and value == _env(option.env, option.default, option.kind):
        text += f" (from ${option.env})"
    return text


def _ignored_stack_settings(args: argparse.Namespace) -> list[str]:
    """The local-stack options set to something other than their built-in defaults."""
    return [
        _setting(option, getattr(args, option.dest))
        for option in STACK_FLAGS
        if getattr(args, option.dest) != option.default
    ]


def _ignored_stack_options_note(args: argparse.Namespace, address: str) -> list[str]:
    """What to say when a gateway makes local-stack options moot, so that e.g. --device cuda is never dropped
    unseen; nothing when none was set."""
    ignored = _ignored_stack_settings(args)
    if not ignored:
        return []
    if args.gateway:
        how = "given by --gateway"
        probed = os.environ.get("STORYBOARD_GATEWAY") or DEFAULT_ADDRESS
        instead = f"leave out --gateway (generate starts a local stack when no gateway answers at {probed})"
    else:
        how, instead = "it answered, so no local stack was started", "stop that gateway"
    return [
        f"using the gateway at {address} ({how}); these local-stack options were ignored: {', '.join(ignored)}",
        f"to use them, {instead}; or run `storyboard up` with them, on ports of its own, and pass its gateway's "
        "address to --gateway",
    ]


def cmd_generate(args: argparse.Namespace) -> int:
    plan = _given_plan(args)  # read first: a plan that cannot be read is refused before a stack starts
    story = (args.story or "") if plan is not None else _read_story(args)
    address = _gateway_address(args)
    with Client(address, api_key=args.gateway_key) as client:
        if args.gateway or client.is_serving():
            if args.api_key:
                raise CliError("--api-key: the gateway's planner has its own key; it is used only by a local stack", 2)
            spec = _generate_spec(args, story, plan, _lora(args, None), args.trigger_token)
            for line in _ignored_stack_options_note(args, address):
                print(f"storyboard: note: {line}", file=sys.stderr, flush=True)  # stdout: the output alone
            return _report(_follow(client.generate(spec), args.json), args, client)
    return _generate_on_a_local_stack(args, story, plan, address)


def _generate_on_a_local_stack(args: argparse.Namespace, story: str, plan: common_pb2.Plan | None, address: str) -> int:
    stacks = _local_stack(f"no gateway answers at {address}, and starting a local stack")
    options = _stack_options(args)
    out = sys.stderr if args.json else sys.stdout
    adapter = _lora(args, options)
    spec = _generate_spec(args, story, plan, adapter, _lora_token(args, adapter, options, out))
    if args.api_key:
        os.environ["OPENAI_API_KEY"] = args.api_key  # inherited by the planner process; never printed
    # Free ports for everything, so this run never collides with a stack the user runs meanwhile.
    options.update(grpc_port=0, http_port=0, planner_port=0, renderer_port=0, validator_port=0)
    options["max_restarts"] = 0  # a service that exits ends the run with an error naming it, not left hanging
    print(f"no gateway at {address}; starting a local stack for this run", file=out, flush=True)
    stack = stacks.LocalStack(stacks.StackOptions(**options), log_dir=Path(tempfile.mkdtemp(prefix="storyboard-logs-")))
    # SIGTERM stops the stack (exit 143); Ctrl-C stays KeyboardInterrupt, which cancels the storyboard first (130).
    with stacks.stop_on_signals(stack, [signal.SIGTERM]), stack:
        for note in stack.notes:
            print(f"note: {note}", file=out)
        with Client(stack.gateway_address) as client:
            stack.on_stop.append(client.close)  # a stack that stops by itself ends the run's stream at once
            result = _follow(client.generate(spec), args.json)
            code = _report(result, args, client)
    print(_studio_hint(args, result.storyboard_id), file=out)
    return code


def _studio_hint(args: argparse.Namespace, storyboard_id: str) -> str:
    """Where to see a storyboard a run's own stack made: the stack stopped with the run, so ``storyboard up`` on the
    same outputs folder serves it in the studio."""
    flags = "" if args.outputs == Path("outputs") else f" --outputs {shlex.quote(str(args.outputs))}"
    flags += "" if args.http_port == DEFAULT_HTTP_PORT else f" --http-port {args.http_port}"
    page = f"#/storyboards/{storyboard_id}"
    where = f"http://127.0.0.1:{args.http_port}/{page}" if args.http_port else f"the studio it prints, at {page}"
    return f"studio: run `storyboard up{flags}` and open {where}"


def _client(args: argparse.Namespace) -> Client:
    return Client(_gateway_address(args), api_key=args.gateway_key, timeout=30)


def _print_storyboard(storyboard: storyboards_pb2.Storyboard, as_json: bool) -> None:
    if as_json:
        print(json.dumps(json_format.MessageToDict(storyboard, preserving_proto_field_name=True), indent=2))
        return
    state = storyboards_pb2.StoryboardState.Name(storyboard.state).removeprefix("STORYBOARD_STATE_").lower()
    ended = storyboard.state in (
        storyboards_pb2.STORYBOARD_STATE_COMPLETED,
        storyboards_pb2.STORYBOARD_STATE_FAILED,
        storyboards_pb2.STORYBOARD_STATE_CANCELLED,
    )
    if storyboard.cancel_requested and not ended:
        state = f"cancelling (was {state})"
    print(f"{storyboard.id}: {state}")
    if storyboard.error:
        print(f"  error: {storyboard.error}")
    done = sum(1 for frame in storyboard.frames if frame.rendered)
    if storyboard.frames:
        print(f"  frames: {done} of {len(storyboard.frames)} rendered")
    print(f"  folder: {storyboard.output_dir}")


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_storyboard(client.get(args.id), args.json)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_storyboard(client.cancel(args.id), args.json)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    with Client(_gateway_address(args), api_key=args.gateway_key) as client:
        storyboard = client.get(args.id)
        written = client.download(args.id, args.output_dir)
    state = storyboards_pb2.StoryboardState.Name(storyboard.state).removeprefix("STORYBOARD_STATE_").lower()
    if not written:
        raise CliError(f"storyboard {args.id} has no files yet ({state})")
    print(f"wrote {len(written)} files to {args.output_dir.resolve()}")
    if storyboard.state != storyboards_pb2.STORYBOARD_STATE_COMPLETED:
        print(f"note: storyboard {args.id} is {state}: these are the files it has so far", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    options = {"captions": args.captions, "crossfade": args.crossfade, "attempts": args.attempts}
    with Client(_gateway_address(args), api_key=args.gateway_key) as client:
        if args.output is None:
            output = Path(client.save_export(args.id, args.format, Path.cwd(), **options))
        else:
            output = args.output
            write_named_files(output.parent, {output.name: client.export(args.id, args.format, **options)})
    print(f"wrote {output.resolve()} ({output.stat().st_size:,} bytes)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up,
    "plan": cmd_plan,
    "generate": cmd_generate,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "fetch": cmd_fetch,
    "export": cmd_export,
}


def _one_line(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# 128 + SIGPIPE: the status a shell shows for a tool whose reader went away (`yes | head`), so that a caller can tell
# "the reader stopped reading" from a failure (1).
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. A closed stdout (``storyboard plan … | head``) ends any command quietly."""
    try:
        status = _run(argv)
        sys.stdout.flush()  # output still buffered meets a closed pipe here rather than at the interpreter's exit
        return status
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is buffered for the closed pipe does
    not fail again ("Exception ignored … BrokenPipeError"), as https://docs.python.org/3/library/signal.html advises."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _stack_errors() -> tuple[type[Exception], ...]:
    """The local stack's error, where the server package is installed (its message says what failed, and how)."""
    found = entry_points(group="storyboard.server", name="stack")
    return (next(iter(found)).load().StackError,) if found else ()


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except CliError as error:  # a bad environment variable, found while building the defaults
        print(f"storyboard: {error}", file=sys.stderr)
        return error.status
    try:
        return COMMANDS[args.command](args)
    except CliError as error:
        print(f"storyboard: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print("storyboard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # an OSError, but no failure to report: main ends quietly
    except _stack_errors() as error:
        if args.verbose:
            raise
        print(f"storyboard: {error}", file=sys.stderr)  # one line, then the end of a failed service's log if any
        return error.exit_status  # type: ignore[attr-defined]
    except (grpc.RpcError, OSError) as error:
        if args.verbose:
            raise
        print(f"storyboard: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
