"""The ``storyboard`` CLI as a user runs it: a subprocess against a real gateway on loopback."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from storyboard import Client
from storyboard.v1 import storyboards_pb2
from tests.support.scripted import BlockingRenderer, RefusingRenderer, serve_renderer
from tests.support.stack import in_process_stack

pytestmark = pytest.mark.integration
STORY = "Aldar Kose tricks a wealthy merchant by selling him a magical pot, then rides home across the steppe"
FAST = ["--num-inference-steps", "2"]
REPO = Path(__file__).resolve().parents[2]


def storyboard(
    *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORYBOARD_GATEWAY": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "storyboard.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with in_process_stack(tmp_path_factory.mktemp("outputs")) as running:
        yield running


def test_generate_through_a_gateway_into_a_folder_with_a_frame_table(stack, tmp_path):
    result = storyboard("generate", "--gateway", stack.address, "--story", STORY, "--num-frames", "6", *FAST,
                        "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "plan ready: 6 frames" in result.stdout
    assert "frame 6 seed 47 attempts 1" in result.stdout  # the final table, plain when not on a terminal
    assert "storyboard written to" in result.stdout
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"scene_breakdown.json", "sdxl_prompts.json", "frame_001.png", "frame_006.png"} <= names


def test_generate_takes_the_pictures_shape_and_a_negative_prompt(stack, tmp_path):
    result = storyboard("generate", "--gateway", stack.address, "--story", STORY, "--num-frames", "6", *FAST,
                        "--aspect", "9:16", "--negative-prompt", "text, watermark", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["output_dir"])
    with Image.open(folder / "frame_006.png") as frame:
        assert frame.size == (768, 1344)
    assert json.loads((folder / "frames.json").read_text())["negative_prompt"] == "text, watermark"
    sized = storyboard("generate", "--gateway", stack.address, "--story", STORY, *FAST, "--width", "512",
                       "--height", "320", "--num-frames", "6", "--json")  # fmt: skip
    assert sized.returncode == 0, sized.stderr
    with Image.open(Path(json.loads(sized.stdout)["output_dir"]) / "frame_001.png") as frame:
        assert frame.size == (512, 320)


def test_the_story_is_read_from_stdin_when_not_given(stack):
    result = storyboard("generate", "--gateway", stack.address, "--num-frames", "6", *FAST, stdin=STORY + "\n")
    assert result.returncode == 0, result.stderr
    assert "plan ready" in result.stdout


def test_json_prints_one_object(stack):
    result = storyboard("generate", "--gateway", stack.address, "--story", STORY, "--num-frames", "7", *FAST, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["frames"]) == 7 and document["plan"]["num_frames"] == 7
    assert Path(document["output_dir"]).is_dir()


@pytest.mark.parametrize("found_by", ["--gateway", "$STORYBOARD_GATEWAY"])
def test_local_stack_options_a_gateway_ignores_are_named_on_stderr(stack, found_by):
    flags = ["--gateway", stack.address] if found_by == "--gateway" else []
    env = {"STORYBOARD_GATEWAY": stack.address} if found_by != "--gateway" else {}
    result = storyboard("generate", *flags, "--story", STORY, "--num-frames", "6", *FAST, "--json",
                        "--device", "cuda", "--renderer-backend", "diffusers", "--planner", "auto",
                        env={**env, "STORYBOARD_CLIP_MODEL": "ViT-B-32"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["frames"]) == 6, "stdout is still the one JSON object"
    [note, advice] = [line for line in result.stderr.splitlines() if line.startswith("storyboard: note:")]
    assert f"using the gateway at {stack.address}" in note
    ignored = note.split("were ignored: ")[1]
    assert ignored == "--renderer-backend diffusers, --clip-model ViT-B-32 (from $STORYBOARD_CLIP_MODEL), --device cuda"
    assert ("leave out --gateway" if found_by == "--gateway" else "stop that gateway") in advice


def test_no_note_when_no_local_stack_option_is_set(stack):
    result = storyboard("generate", "--gateway", stack.address, "--story", STORY, "--num-frames", "6", *FAST)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout + result.stderr


def test_status_cancel_and_fetch(stack, tmp_path):
    with Client(stack.address) as client:
        storyboard_id = client.create(story=STORY, num_frames=6, num_inference_steps=2, width=256, height=256).id
        client.fetch(storyboard_id)  # wait for it to finish
    status = storyboard("status", storyboard_id, "--gateway", stack.address)
    assert status.returncode == 0 and "completed" in status.stdout
    fetched = storyboard("fetch", storyboard_id, "--gateway", stack.address, "--output-dir", str(tmp_path / "f"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "f" / "storyboard_grid.png").exists()
    missing = storyboard("status", "20990101-000000-00000000", "--gateway", stack.address)
    assert missing.returncode == 1 and missing.stderr.startswith("storyboard: NOT_FOUND")
    assert "Traceback" not in missing.stderr


def test_plan_json_and_output_dir_without_any_stack(tmp_path):
    result = storyboard("plan", "--story", STORY, "--num-frames", "8", "--json", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) >= {"story", "num_frames", "scenes", "prompts", "negative_prompt", "warnings"}
    assert document["num_frames"] == 8 and len(document["prompts"]) == 8
    assert json.loads((tmp_path / "sdxl_prompts.json").read_text()) == document["prompts"]


def test_plan_through_a_gateway_writes_the_files_the_gateway_made(stack, tmp_path):
    result = storyboard("plan", "--gateway", stack.address, "--story", STORY, "--num-frames", "7", "--json",
                        "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    breakdown = json.loads((tmp_path / "scene_breakdown.json").read_text())
    assert document["scenes"] == breakdown["scenes"] and len(document["scenes"]) == 7
    assert json.loads((tmp_path / "sdxl_prompts.json").read_text()) == document["prompts"]
    assert breakdown["story"] == STORY and breakdown["num_frames"] == 7


def _in(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The command run in ``folder``, with no gateway and no registry set in the environment."""
    env = {**os.environ, "STORYBOARD_GATEWAY": "", "STORYBOARD_CHARACTERS": "", "STORYBOARD_OUTPUTS": ""}
    return subprocess.run([sys.executable, "-m", "storyboard.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=folder, env=env)  # fmt: skip


def test_the_originals_command_verbatim_gives_eight_frames_that_all_carry_the_trigger_token(tmp_path):
    # Run in (a copy of) the repository with no other flag: the registry is ./examples/characters.toml, the frames
    # the original's 8, written to ./outputs.
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "characters.toml").write_bytes((REPO / "examples" / "characters.toml").read_bytes())
    story = "Aldar Kose riding his horse across the steppe to his yurt at sunset"
    result = _in(tmp_path, "generate", "--story", story, timeout=300)
    assert result.returncode == 0, result.stderr
    folder = Path(re.search(r"storyboard written to (\S+)", result.stdout).group(1))
    assert folder.parent == (tmp_path / "outputs").resolve()
    prompts = json.loads((folder / "sdxl_prompts.json").read_text())
    assert len(prompts) == 8 and all("aldar_kose_man" in prompt for prompt in prompts), prompts
    planned = _in(tmp_path, "plan", "--story", story, "--json")
    assert planned.returncode == 0 and json.loads(planned.stdout)["num_frames"] == 8
    chosen = _in(tmp_path, "plan", "--story", story, "--num-frames", "auto", "--json")
    assert chosen.returncode == 0 and json.loads(chosen.stdout)["num_frames"] != 8  # this story gets fewer


def _lora_checkpoint(root: Path, tags: dict[str, int] | None) -> Path:
    """The original's layout, outputs/checkpoints/checkpoint-400, with a real safetensors file (kohya tag counts in
    its metadata when ``tags`` are given)."""
    folder = root / "outputs" / "checkpoints" / "checkpoint-400"
    folder.mkdir(parents=True)
    metadata = {"ss_tag_frequency": json.dumps({"10_hero": tags})} if tags else None
    save_file({"lora.down.weight": np.zeros((4, 4), np.float32)}, folder / "pytorch_lora_weights.safetensors",
              metadata=metadata)  # fmt: skip
    return folder


def test_a_lora_checkpoints_trigger_token_is_carried_by_every_prompt(tmp_path):
    _lora_checkpoint(tmp_path, {"fox_hero": 40, "river": 5})
    story = "A fox crosses a frozen river at dawn to reach its den"
    result = _in(tmp_path, "generate", "--story", story, "--lora-path", "outputs/checkpoints/checkpoint-400",
                 "--num-frames", "6", *FAST, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note: the LoRA 'checkpoint-400' is fired by 'fox_hero' (from the ss_tag_frequency metadata" in result.stdout
    folder = Path(re.search(r"storyboard written to (\S+)", result.stdout).group(1))
    prompts = json.loads((folder / "sdxl_prompts.json").read_text())
    assert len(prompts) == 6 and all(prompt.startswith("fox_hero") for prompt in prompts), prompts


def test_a_plan_rendered_with_a_lora_checkpoint_keeps_its_own_characters(tmp_path):
    _lora_checkpoint(tmp_path, {"fox_hero": 40})
    planned = _in(tmp_path, "plan", "--story", "A fox crosses a frozen river at dawn", "--num-frames", "6",
                  "--output-dir", "plan")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    result = _in(tmp_path, "generate", "--plan", "plan/scene_breakdown.json", "--lora-path",
                 "outputs/checkpoints/checkpoint-400", *FAST, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr  # the token is not added to a plan's characters


def test_the_originals_lora_command_warns_when_its_token_is_unknown_and_the_registry_still_names_it(tmp_path):
    _lora_checkpoint(tmp_path, None)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "characters.toml").write_bytes((REPO / "examples" / "characters.toml").read_bytes())
    story = "Aldar Kose riding his horse across the steppe to his yurt at sunset"
    result = _in(tmp_path, "generate", "--story", story, "--lora-path", "outputs/checkpoints/checkpoint-400",
                 *FAST, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: the trigger token of the LoRA 'checkpoint-400' is not known" in result.stdout
    folder = Path(re.search(r"storyboard written to (\S+)", result.stdout).group(1))
    prompts = json.loads((folder / "sdxl_prompts.json").read_text())
    assert len(prompts) == 8 and all("aldar_kose_man" in prompt for prompt in prompts)


def test_the_registry_is_the_one_named_else_the_projects_else_the_repositorys_example(tmp_path):
    story = "Aldar Kose riding his horse across the steppe to his yurt at sunset"

    def prompts(*flags: str) -> list[str]:
        planned = _in(tmp_path, "plan", "--story", story, "--json", *flags)
        assert planned.returncode == 0, planned.stderr
        return json.loads(planned.stdout)["prompts"]

    assert not any("aldar" in prompt for prompt in prompts())  # no registry anywhere: no characters
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "characters.toml").write_bytes((REPO / "examples" / "characters.toml").read_bytes())
    assert all(prompt.startswith("aldar_kose_man") for prompt in prompts())
    (tmp_path / "characters.toml").write_text('[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_hero"\n')
    assert all(prompt.startswith("aldar_hero") for prompt in prompts())
    (tmp_path / "named.toml").write_text('[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_named"\n')
    assert all(prompt.startswith("aldar_named") for prompt in prompts("--characters-file", "named.toml"))


def test_a_plan_saved_edited_by_hand_and_rendered_is_the_plan_the_storyboard_keeps(stack, tmp_path):
    # Planned where no registry is found, as the stack's planner has none.
    planned = _in(tmp_path, "plan", "--story", STORY, "--num-frames", "6", "--output-dir", "plan")
    assert planned.returncode == 0, planned.stderr
    breakdown_file = tmp_path / "plan" / "scene_breakdown.json"
    breakdown = json.loads(breakdown_file.read_text())
    breakdown["scenes"][2]["description"] = "the wealthy merchant shakes the empty pot in anger at the bazaar"
    breakdown["scenes"][4]["prompt"] = "a copper pot glowing on a carpet, storybook illustration"
    breakdown["scenes"][1]["duration_seconds"] = 3.5
    breakdown_file.write_text(json.dumps(breakdown, indent=2))

    result = storyboard("generate", "--gateway", stack.address, "--plan", str(breakdown_file), *FAST, "--json",
                        "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered = json.loads((tmp_path / "out" / "scene_breakdown.json").read_text())
    assert [s["description"] for s in rendered["scenes"]] == [s["description"] for s in breakdown["scenes"]]
    assert rendered["story"] == STORY and len(json.loads(result.stdout)["frames"]) == 6
    prompts = json.loads((tmp_path / "out" / "sdxl_prompts.json").read_text())
    assert prompts[2].startswith("the wealthy merchant shakes the empty pot in anger")  # written again for the edit
    assert prompts[4] == "a copper pot glowing on a carpet, storybook illustration"  # edited by hand: as written
    assert [p for i, p in enumerate(prompts) if i not in (2, 4)] == [
        s["prompt"] for i, s in enumerate(breakdown["scenes"]) if i not in (2, 4)
    ]
    assert any(w.startswith("frame 5: its prompt is rendered as given") for w in rendered["warnings"])
    assert not any(w.startswith("frame 3: its prompt") for w in rendered["warnings"])
    assert [s["duration_seconds"] for s in rendered["scenes"]] == [2.0, 3.5, 2.0, 2.0, 2.0, 2.0]

    # The animatic holds each frame for its scene's duration; the other exports come the same way.
    storyboard_id = json.loads(result.stdout)["id"]
    exported = _in(tmp_path, "export", storyboard_id, "--gateway", stack.address, "--format", "mp4", "--crossfade")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"wrote {tmp_path / 'animatic.mp4'} (")
    with av.open(str(tmp_path / "animatic.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == round(13.5 * 24)
    for export_format in ("gif", "zip", "csv"):
        output = tmp_path / f"mine.{export_format}"
        written = storyboard("export", storyboard_id, "--gateway", stack.address, "--format", export_format.upper(),
                             "--output", str(output))  # fmt: skip
        assert written.returncode == 0 and output.stat().st_size > 0, written.stderr
    with zipfile.ZipFile(tmp_path / "mine.zip") as archive:
        assert f"{storyboard_id}/scene_breakdown.json" in archive.namelist()
    assert "3.5" in (tmp_path / "mine.csv").read_text(encoding="utf-8-sig").splitlines()[2].split(",")


def test_exports_are_refused_with_their_reason_and_saved_beside_a_folder_by_the_sdk(stack, tmp_path):
    unknown = storyboard("export", "20990101-000000-00000000", "--gateway", stack.address, "--format", "csv")
    assert unknown.returncode == 1 and unknown.stderr.startswith("storyboard: NOT_FOUND"), unknown.stderr
    bad = storyboard("export", "20990101-000000-00000000", "--gateway", stack.address, "--format", "avi")
    assert bad.returncode == 2 and "--format: invalid choice: 'avi'" in bad.stderr
    with Client(stack.address) as client:
        run = client.generate(story=STORY, num_frames=6, num_inference_steps=2, width=256, height=256)
        saved = run.wait().save(tmp_path / "out", exports=["mp4", "gif", "zip", "csv"])
        with pytest.raises(ValueError, match="format: 'avi' is not one of mp4, gif, zip, csv"):
            client.export(run.storyboard_id, "avi")
        assert client.export(run.storyboard_id, "csv") == (tmp_path / "out" / "shots.csv").read_bytes()
    assert saved[-4:] == ["animatic.mp4", "animatic.gif", "storyboard.zip", "shots.csv"]
    assert "frame_006.png" in saved and not any(name.startswith("exports/") for name in saved)
    with av.open(str(tmp_path / "out" / "animatic.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6 * 2 * 24


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--plan", "missing.json"], "storyboard: --plan: missing.json: cannot read a plan"),
        (["--plan", "{bad}"], "storyboard: --plan: {bad}: cannot read a plan"),
        (["--plan", "list.json"], "storyboard: --plan: list.json: a plan is a JSON object"),
        (["--plan", "plan.json", "--character", "Aldar Kose"], "storyboard: --character: a plan names its characters"),
    ],
)
def test_a_plan_that_cannot_be_read_is_refused_before_anything_starts(tmp_path, flags, message):
    (tmp_path / "{bad}").write_text("{not json")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "plan.json").write_text(json.dumps({"scenes": [{"description": "a fox"}] * 6}))
    result = subprocess.run(
        [sys.executable, "-m", "storyboard.cli", "generate", *flags], capture_output=True, text=True, timeout=30,
        cwd=tmp_path, env={**os.environ, "STORYBOARD_GATEWAY": "127.0.0.1:1"},
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert "starting a local stack" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["--num-frames", "11"], "--num-frames"),
        (["--num-frames", "0"], "--num-frames"),
        (["--guidance-scale", "-1"], "--guidance-scale"),
        (["--base-seed", "-5"], "--base-seed"),
        (["--num-inference-steps", "lots"], "--num-inference-steps"),
    ],
)
def test_bad_flags_fail_fast_naming_the_flag(flags, name):
    result = storyboard("generate", "--story", STORY, *flags, timeout=30)
    assert result.returncode == 2
    assert name in result.stderr and "Traceback" not in result.stderr


def test_cancel_answers_with_the_storyboard_as_cancelled(tmp_path):
    renderer = BlockingRenderer()
    renderer_server, renderer_port = serve_renderer(renderer)
    try:
        with in_process_stack(tmp_path / "outputs", renderer_address=f"127.0.0.1:{renderer_port}") as stack:
            with Client(stack.address) as client:
                storyboard_id = client.create(story=STORY, num_frames=6).id
            assert renderer.started.wait(60)
            cancelled = storyboard("cancel", storyboard_id, "--gateway", stack.address)
            assert cancelled.returncode == 0, cancelled.stderr
            assert cancelled.stdout.startswith(f"{storyboard_id}: cancelled\n"), cancelled.stdout
    finally:
        renderer_server.stop(0)


def test_a_failed_storyboard_is_reported_once_with_its_reason(tmp_path):
    renderer_server, renderer_port = serve_renderer(RefusingRenderer("this renderer refuses every frame"))
    try:
        with in_process_stack(tmp_path / "outputs", renderer_address=f"127.0.0.1:{renderer_port}") as stack:
            for json_flag in ([], ["--json"]):
                result = storyboard("generate", "--gateway", stack.address, "--story", STORY, *FAST, *json_flag)
                output = result.stdout + result.stderr
                assert result.returncode == 1, output
                [storyboard_id] = re.findall(r"storyboard (\S+) accepted", output)
                assert output.count("failed") == 1, output
                assert result.stderr.endswith(
                    f"storyboard: storyboard {storyboard_id} failed: FAILED_PRECONDITION: this renderer refuses every "
                    "frame\n"
                )
                assert "Traceback" not in output
    finally:
        renderer_server.stop(0)


def _into_a_closed_pipe(*args: str, lines_read: int) -> tuple[int, str]:
    """Run the CLI with stdout a pipe whose reader reads ``lines_read`` lines and closes it, as ``| head -n`` does;
    its exit status and stderr. The pipe holds one page, so that output longer than that meets the closed pipe
    whatever the timing."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    cli = subprocess.Popen(
        [sys.executable, "-m", "storyboard.cli", *args],
        stdout=write_end, stderr=subprocess.PIPE, text=True, env={**os.environ, "STORYBOARD_GATEWAY": ""},
    )  # fmt: skip
    os.close(write_end)
    for _ in range(lines_read):
        while os.read(read_end, 1) not in (b"\n", b""):
            pass
    os.close(read_end)
    _, err = cli.communicate(timeout=120)
    return cli.returncode, err


@pytest.mark.parametrize(
    ("command", "lines_read"),
    [
        (["plan", "--story", STORY, "--num-frames", "10", "--json"], 1),  # longer than the pipe holds
        (["plan", "--story", STORY], 0),
        (["generate", "--story", STORY, "--num-frames", "6", *FAST, "--gateway"], 0),
        (["status", "--json", "--gateway"], 0),
    ],
)
def test_a_closed_stdout_ends_the_command_quietly(stack, command, lines_read):
    if command[-1] == "--gateway":
        command = [*command, stack.address]
    if command[0] == "status":
        with Client(stack.address) as client:
            command.append(client.create(story=STORY, num_frames=6, num_inference_steps=2).id)
    status, err = _into_a_closed_pipe(*command, lines_read=lines_read)
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert status == 141, err  # 128 + SIGPIPE, as a shell shows for a writer whose reader left


def test_ctrl_c_cancels_the_storyboard_on_the_gateway(tmp_path):
    renderer = BlockingRenderer()
    renderer_server, renderer_port = serve_renderer(renderer)
    try:
        with in_process_stack(tmp_path / "outputs", renderer_address=f"127.0.0.1:{renderer_port}") as stack:
            cli = subprocess.Popen(
                [sys.executable, "-m", "storyboard.cli", "generate", "--gateway", stack.address, "--story", STORY],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert renderer.started.wait(60)
            time.sleep(0.3)
            cli.send_signal(signal.SIGINT)
            _, err = cli.communicate(timeout=30)
            assert cli.returncode == 130, err
            assert "cancelled storyboard" in err
            with Client(stack.address) as client:
                (job,) = client.list().storyboards
                for _ in range(100):
                    if job.state == storyboards_pb2.STORYBOARD_STATE_CANCELLED:
                        break
                    time.sleep(0.05)
                    job = client.get(job.id)
            assert job.state == storyboards_pb2.STORYBOARD_STATE_CANCELLED
            assert renderer.cancelled.wait(10)
    finally:
        renderer_server.stop(0)


def test_reference_pictures_given_on_the_command_line_are_kept_with_the_storyboard(tmp_path):
    from PIL import Image

    Image.new("RGB", (96, 96), "saddlebrown").save(tmp_path / "front.png")
    registry = {"characters_file": REPO / "examples" / "characters.toml"}
    with in_process_stack(tmp_path / "outputs", planner=registry) as running:
        result = storyboard("generate", "--gateway", running.address, "--story", STORY, "--num-frames", "6", *FAST,
                            "--reference", f"aldar_kose_man={tmp_path / 'front.png'}", "--json")  # fmt: skip
        refused = storyboard("generate", "--gateway", running.address, "--story", STORY, *FAST,
                             "--reference", f"nobody_here={tmp_path / 'front.png'}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["output_dir"])
    assert (folder / "references" / "aldar_kose_man_1.png").read_bytes() == (tmp_path / "front.png").read_bytes()
    assert refused.returncode != 0
    assert "spec.character_references[0].trigger_token: unknown trigger token 'nobody_here'" in refused.stderr
    missing = storyboard("generate", "--story", STORY, "--reference", "aldar_kose_man=/no/such.png")
    assert missing.returncode == 2 and "--reference: /no/such.png is not a file" in missing.stderr
