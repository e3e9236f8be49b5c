"""The client SDK against a real gateway on loopback: typed events, save(), sync and async, resuming watches."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import grpc
import pypdf
import pytest

from storyboard import AsyncClient, Client, documents, outputs
from storyboard import events as ev
from storyboard.local_stack import LocalStack, StackError, StackOptions
from storyboard.v1 import storyboards_pb2
from tests.support.scripted import BlockingRenderer, serve_renderer
from tests.support.stack import in_process_stack
from tests.support.tcp_proxy import TcpProxy

STORY = "A fox crosses a frozen river at dawn, finds its den under an old oak and falls asleep"
SMALL = {"num_inference_steps": 3, "width": 256, "height": 256}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with in_process_stack(tmp_path_factory.mktemp("outputs")) as running:
        yield running


def test_generate_yields_typed_events_and_save_writes_the_gateway_files(stack, tmp_path):
    with Client(stack.address) as client:
        run = client.generate(story=STORY, num_frames=6, **SMALL)
        events = list(run)
    assert isinstance(events[0], ev.Accepted) and isinstance(events[-1], ev.Completed)
    assert any(isinstance(e, ev.PlanReady) for e in events)
    rendered = [e for e in events if isinstance(e, ev.FrameRendered)]
    assert len(rendered) == 6 and rendered[0].image().size == (256, 256)
    written = run.result.save(tmp_path / "mine")
    gateway_folder = events[-1].output_dir
    gateway_files = set(events[-1].files)
    assert gateway_files <= set(written), "save() writes every file the gateway wrote"
    mine, theirs = tmp_path / "mine", Path(gateway_folder)
    prompts = "sdxl_prompts.json"
    assert json.loads((mine / prompts).read_text()) == json.loads((theirs / prompts).read_text())
    for n in range(1, 7):
        assert (mine / f"frame_{n:03d}.png").read_bytes() == (theirs / f"frame_{n:03d}.png").read_bytes()
    mine_frames = json.loads((mine / "frames.json").read_text())["frames"]
    theirs_frames = json.loads((theirs / "frames.json").read_text())["frames"]
    for key in ("seed", "seeds_tried", "verdict", "prompt"):
        assert [f[key] for f in mine_frames] == [f[key] for f in theirs_frames]
    grid = "storyboard_grid.png"
    assert (mine / grid).read_bytes() == (theirs / grid).read_bytes(), "the same frames make the same contact sheet"
    mine_pdf, theirs_pdf = (pypdf.PdfReader(folder / "storyboard.pdf") for folder in (mine, theirs))
    assert len(mine_pdf.pages) == len(theirs_pdf.pages) == 1 + 3
    [plan] = [e.plan for e in events if isinstance(e, ev.PlanReady)]
    for reader in (mine_pdf, theirs_pdf):
        text = "".join(page.extract_text() for page in reader.pages[1:])
        assert all(f"Frame {scene.frame} · " in text and scene.description[:30] in text for scene in plan.scenes)


class Folder:
    """A path-like that is neither str nor Path, as a caller's own path type would be."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_save_and_the_file_writers_take_str_and_path_like_folders(stack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Client(stack.address) as client:
        result = client.generate(story=STORY, num_frames=6, **SMALL).wait()
    written = result.save("some/str/folder")  # the README's call
    assert sorted(written) == sorted(os.listdir("some/str/folder"))
    assert {"frame_006.png", "frames.json", "report.json", "storyboard_grid.png", "storyboard.pdf"} <= set(written)
    assert result.save(Folder(tmp_path / "path-like")) == written

    plan, final = result.plan, result.final
    assert plan is not None and final is not None
    outputs.write_plan_files("parts", plan)
    outputs.write_frames_metadata(Folder("parts"), plan, final.frames, [])
    outputs.write_report("parts", {})
    outputs.write_bytes_atomic("parts/bytes.bin", b"bytes")
    outputs.link_atomic("parts/bytes.bin", Folder("parts/linked.bin"))
    frames = [Folder(f"some/str/folder/frame_{scene.frame:03d}.png") for scene in plan.scenes]
    documents.write_documents("parts", plan, frames, documents.document_text(final, []))
    assert sorted(os.listdir("parts")) == [
        "bytes.bin", "frames.json", "linked.bin", "report.json", "scene_breakdown.json", "sdxl_prompts.json",
        "storyboard.pdf", "storyboard_grid.png",
    ]  # fmt: skip
    assert Path("parts/storyboard_grid.png").read_bytes() == Path("some/str/folder/storyboard_grid.png").read_bytes()


def test_a_local_stack_takes_str_paths_for_its_files_and_logs(tmp_path):
    options = StackOptions(
        planner="offline", characters=str(tmp_path / "missing.toml"), outputs=str(tmp_path / "out"),
        grpc_port=0, http_port=0, planner_port=0, renderer_port=0, validator_port=0,
    )  # fmt: skip
    with pytest.raises(StackError) as caught, LocalStack(options, log_dir=str(tmp_path / "logs")):
        pass
    assert "planner exited with status 2 while starting" in str(caught.value)
    assert "missing.toml does not exist" in str(caught.value)  # the tail of the log written under the str log_dir
    assert (tmp_path / "logs" / "planner.log").exists()


def test_create_get_list_plan_cancel_and_fetch(stack, tmp_path):
    with Client(stack.address, timeout=30) as client:
        created = client.create(story=STORY, num_frames=6, **SMALL)
        result = client.fetch(created.id)
        assert result.final is not None and result.final.id == created.id
        assert client.get(created.id).state == storyboards_pb2.STORYBOARD_STATE_COMPLETED
        assert created.id in [s.id for s in client.list(page_size=100).storyboards]
        assert len(client.plan(story=STORY, num_frames=7).scenes) == 7
        assert client.cancel(created.id).state == storyboards_pb2.STORYBOARD_STATE_COMPLETED  # already done
        assert "frame_006.png" in result.save(tmp_path / "fetched")
        client.regenerate(created.id, 3, seed=99)
        again = client.fetch(created.id)
        assert again.final is not None and again.final.frames[2].seed == 99


def test_the_same_idempotency_key_never_makes_a_second_storyboard(stack):
    with Client(stack.address) as client:
        first = client.create(story=STORY, num_frames=6, idempotency_key="same-key", **SMALL)
        second = client.create(story=STORY, num_frames=6, idempotency_key="same-key", **SMALL)
    assert first.id == second.id


def test_bad_input_raises_invalid_argument_naming_the_field(stack):
    with Client(stack.address) as client, pytest.raises(grpc.RpcError) as caught:
        client.create(story=STORY, num_frames=11)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("spec.num_frames")


def test_async_client_generates_and_plans(stack):
    async def scenario() -> tuple[list[ev.StoryboardEvent], int]:
        async with AsyncClient(stack.address) as client:
            events = [event async for event in client.generate(story=STORY, num_frames=6, **SMALL)]
            plan = await client.plan(story=STORY, num_frames=8)
            return events, len(plan.scenes)

    events, planned = asyncio.run(scenario())
    assert isinstance(events[-1], ev.Completed) and planned == 8
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


def _blocking_stack(tmp_path):
    renderer = BlockingRenderer()
    server, port = serve_renderer(renderer)
    return renderer, server, in_process_stack(tmp_path / "outputs", renderer_address=f"127.0.0.1:{port}")


def test_watch_resumes_after_the_connection_is_cut(tmp_path):
    renderer, renderer_server, stack_cm = _blocking_stack(tmp_path)
    with stack_cm as stack:
        proxy = TcpProxy(stack.gateway_port)
        try:
            with Client(f"127.0.0.1:{proxy.port}") as client:
                created = client.create(story=STORY, num_frames=6, **SMALL)
                seen: list[int] = []
                done = threading.Event()

                def follow() -> None:
                    for event in client.watch(created.id):
                        seen.append(event.sequence)
                    done.set()

                threading.Thread(target=follow, daemon=True).start()
                assert renderer.started.wait(10)
                for _ in range(100):  # until the watcher has received a few events
                    if len(seen) >= 3:
                        break
                    threading.Event().wait(0.05)
                before = len(seen)
                proxy.cut()  # the stream breaks mid-storyboard
                with Client(stack.address) as direct:
                    direct.cancel(created.id)  # ends the storyboard, so the resumed watch can finish
                assert done.wait(30)
        finally:
            proxy.close()
    renderer_server.stop(0)
    assert before >= 3
    assert seen == list(range(1, len(seen) + 1)), "no event lost or repeated across the reconnect"


def test_link_atomic_puts_the_same_file_in_place_without_copying(tmp_path):
    from storyboard import outputs

    source = tmp_path / "attempts" / "frame_001_attempt_2.png"
    source.parent.mkdir()
    source.write_bytes(b"new frame")
    target = tmp_path / "frame_001.png"
    target.write_bytes(b"old frame")
    outputs.link_atomic(source, target)
    assert target.read_bytes() == b"new frame"
    assert target.stat().st_ino == source.stat().st_ino  # a hard link: no bytes were read or written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts", "frame_001.png"]  # no temporary left


def test_link_atomic_onto_the_same_file_again_leaves_no_temporary_link(tmp_path):
    # A gateway killed between keeping a frame and recording it keeps the same attempt again when it resumes. rename(2)
    # of one hard link onto another of the same file does nothing and succeeds, which left the temporary link behind.
    from storyboard import outputs

    source = tmp_path / "attempts" / "frame_001_attempt_1.png"
    source.parent.mkdir()
    source.write_bytes(b"frame")
    target = tmp_path / "frame_001.png"
    outputs.link_atomic(source, target)
    outputs.link_atomic(source, target)
    assert target.read_bytes() == b"frame" and target.stat().st_ino == source.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts", "frame_001.png"]


def test_link_atomic_copies_where_no_hard_link_can_be_made(tmp_path):
    from storyboard import outputs

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) to make os.link fail across devices")
    source = shm / f"storyboard-test-{tmp_path.name}.png"
    source.write_bytes(b"frame bytes")
    try:
        target = tmp_path / "frame_001.png"
        outputs.link_atomic(source, target)
        assert target.read_bytes() == b"frame bytes"
        assert target.stat().st_ino != source.stat().st_ino
        assert [p.name for p in tmp_path.iterdir()] == ["frame_001.png"]
    finally:
        source.unlink()
