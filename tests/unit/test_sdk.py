"""The client SDK against a real gateway on loopback: typed events, save(), sync and async, resuming watches."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import grpc
import pypdf
import pytest
from google.protobuf import json_format

from storyboard import AsyncClient, Client, plans
from storyboard import events as ev
from storyboard.client import make_spec
from storyboard.progress import describe
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
    mine, theirs = tmp_path / "mine", Path(events[-1].output_dir)
    gateway_files = sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*") if p.is_file())
    assert sorted(written) == gateway_files and set(events[-1].files) <= set(written)
    assert "attempts/frame_001_attempt_1.png" in written
    for name in gateway_files:  # the gateway's folder, byte for byte
        assert (mine / name).read_bytes() == (theirs / name).read_bytes(), name
    assert len(pypdf.PdfReader(mine / "storyboard.pdf").pages) == 1 + 3


def test_a_client_reads_or_downloads_chosen_files_and_a_bad_name_is_refused(stack, tmp_path):
    with Client(stack.address) as client:
        storyboard_id = client.generate(story=STORY, num_frames=6, **SMALL).wait().storyboard_id
        files = client.read_files(storyboard_id, ["sdxl_prompts.json", "frame_002.png"])
        assert (
            sorted(files) == ["frame_002.png", "sdxl_prompts.json"] and len(json.loads(files["sdxl_prompts.json"])) == 6
        )
        assert client.download(storyboard_id, tmp_path, ["report.json"]) == ["report.json"]
        assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
        for name, code in (
            ("nope.png", grpc.StatusCode.NOT_FOUND),
            ("../../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                client.read_files(storyboard_id, [name])
            assert refused.value.code() == code and refused.value.details().startswith("names[0]")


def test_a_result_that_names_no_storyboard_on_a_gateway_has_nothing_to_save(tmp_path):
    from storyboard import StoryboardResult

    with pytest.raises(ValueError, match="nothing to save"):
        StoryboardResult().save(tmp_path)


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
    assert sorted(written) == sorted(p.relative_to("some/str/folder").as_posix()
                                     for p in Path("some/str/folder").rglob("*") if p.is_file())  # fmt: skip
    assert {"frame_006.png", "frames.json", "report.json", "storyboard_grid.png", "storyboard.pdf"} <= set(written)
    assert result.save(Folder(tmp_path / "path-like")) == written


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


def test_async_client_exports_what_the_blocking_one_does(stack):
    with Client(stack.address) as client:
        storyboard_id = client.generate(story=STORY, num_frames=6, **SMALL).wait().storyboard_id
        shots = client.export(storyboard_id, "csv")

    async def scenario() -> bytes:
        async with AsyncClient(stack.address) as client:
            return await client.export(storyboard_id, "CSV")

    assert asyncio.run(scenario()) == shots and shots.decode("utf-8-sig").startswith("frame,shot type,duration (s)")


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


def test_generate_takes_a_plan_as_a_message_its_json_or_its_file_and_renders_it_as_given(stack, tmp_path):
    with Client(stack.address) as client:
        plan = client.plan(story=STORY, num_frames=6)
        plan.scenes[1].description = "the fox sniffs a fallen pine cone on the ice"
        plan.scenes[1].prompt = ""
        (tmp_path / "plan.json").write_text(
            json.dumps(json_format.MessageToDict(plan, preserving_proto_field_name=True))
        )
        for given in (plan, json_format.MessageToDict(plan), tmp_path / "plan.json", str(tmp_path / "plan.json")):
            run = client.generate(plan=given, **SMALL)
            ready = next(e for e in run if isinstance(e, ev.PlanReady))
            assert ready.plan.scenes[1].description == "the fox sniffs a fallen pine cone on the ice"
            assert ready.plan.scenes[1].prompt.startswith("the fox sniffs a fallen pine cone on the ice, ")
            assert [s.prompt for s in ready.plan.scenes][2:] == [s.prompt for s in plan.scenes][2:]
            list(run)
            assert run.result.final.state == storyboards_pb2.STORYBOARD_STATE_COMPLETED


def test_a_plan_files_durations_are_read_and_a_saved_plan_file_round_trips(tmp_path):
    breakdown = {"scenes": [{"frame": n, "description": f"beat {n}", "duration_seconds": n / 2} for n in range(1, 7)]}
    (tmp_path / "scene_breakdown.json").write_text(json.dumps(breakdown))
    plan = plans.read_plan(tmp_path / "scene_breakdown.json")
    assert [scene.duration_seconds for scene in plan.scenes] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert make_spec(plan=plan).plan.scenes[5].duration_seconds == 3.0


def test_a_plan_file_that_is_not_a_plan_is_a_value_error_naming_the_file(tmp_path):
    (tmp_path / "bad.json").write_text('{"scenes": [{"frame": "one"}]}')
    with pytest.raises(ValueError, match=r"bad\.json: not a plan"):
        plans.read_plan(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="a plan needs a list of scenes"):
        plans.as_plan({"story": "x"})
    with pytest.raises(ValueError, match=r"nowhere\.json: cannot read a plan"):
        make_spec(plan=tmp_path / "nowhere.json")


def test_a_waiting_storyboard_is_a_typed_event_and_a_line_of_progress():
    raw = storyboards_pb2.StoryboardEvent(storyboard_id="s", sequence=2, queued=storyboards_pb2.Queued(position=3))
    event = ev.from_proto(raw)
    assert isinstance(event, ev.Queued) and event.position == 3
    assert describe(event) == ["waiting to start: 3 in line"]


def test_a_client_keeps_another_attempt_and_lists_the_characters(stack):
    with Client(stack.address) as client:
        run = client.generate(story=STORY, num_frames=6, **SMALL)
        last = list(run)[-1].sequence
        storyboard_id = run.storyboard_id
        client.regenerate(storyboard_id, 4, seed=99)
        last = list(client.watch(storyboard_id, after_sequence=last))[-1].sequence
        assert client.get(storyboard_id).frames[3].seed == 99
        queued = client.keep_attempt(storyboard_id, 4, 1)
        assert queued.state == storyboards_pb2.STORYBOARD_STATE_QUEUED
        events = list(client.watch(storyboard_id, after_sequence=last))
        assert isinstance(events[-1], ev.Completed)
        frame = client.get(storyboard_id).frames[3]
        assert frame.seed == frame.seeds_tried[0] and list(frame.seeds_tried)[1] == 99
        assert client.characters() == []  # the in-process planner has no registry

    async def keep_again() -> int:
        async with AsyncClient(stack.address) as client:
            await client.keep_attempt(storyboard_id, 4, 2)
            async for _event in client.watch(storyboard_id, after_sequence=events[-1].sequence):
                pass
            return (await client.get(storyboard_id)).frames[3].seed

    assert asyncio.run(keep_again()) == 99


def test_reference_pictures_are_given_as_files_or_bytes_by_character(tmp_path):
    (tmp_path / "front.png").write_bytes(b"front picture")
    spec = make_spec(story=STORY, character_references={"aldar_kose_man": [tmp_path / "front.png", b"side picture"]})
    (given,) = spec.character_references
    assert given.trigger_token == "aldar_kose_man"
    assert [picture.data for picture in given.pictures] == [b"front picture", b"side picture"]
    with pytest.raises(ValueError, match="cannot read the reference picture"):
        make_spec(story=STORY, character_references={"aldar_kose_man": [tmp_path / "missing.png"]})
