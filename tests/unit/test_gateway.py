"""The gateway end to end on in-process services: the real planner, sketch renderer and validator on port 0."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import threading
import zipfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import av
import grpc
import httpx
import pypdf
import pytest
from google.protobuf import json_format
from PIL import Image, ImageSequence

from gateway import documents, frames
from gateway.document_frames import DocumentFrames
from gateway.server import create_server as create_gateway
from gateway.settings import GatewaySettings
from services.planner.server import create_server as create_planner
from services.planner.settings import PlannerSettings
from services.renderer.server import create_server as create_renderer
from services.renderer.settings import RendererSettings
from services.validator.server import create_server as create_validator
from services.validator.settings import ValidatorSettings
from storyboard.v1 import common_pb2, storyboards_pb2, storyboards_pb2_grpc
from tests.support.scripted import BlockingRenderer, ScriptedRenderer, serve_renderer
from tests.support.tcp_proxy import TcpProxy
from tests.support.tiny_clip import build_tiny_clip

STORY = "Aldar Kose tricks a wealthy merchant by selling him a magical pot at the bazaar, then rides home at sunset"


def _start(factory, settings):
    server, port = factory(settings)
    server.start()
    return server, port


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Planner, sketch renderer, an unconfigured validator and a validator on a tiny CLIP, shared by the module."""
    tiny = build_tiny_clip(tmp_path_factory.mktemp("clip"))
    started = {
        "planner": _start(create_planner, PlannerSettings(port=0)),
        "renderer": _start(create_renderer, RendererSettings(port=0, backend="sketch")),
        "validator_none": _start(create_validator, ValidatorSettings(port=0)),
        "validator_tiny": _start(create_validator, ValidatorSettings(port=0, **tiny.settings())),
        # Keeps no embeddings: every image named by digest alone is one it does not have.
        "validator_forgetful": _start(
            create_validator, ValidatorSettings(port=0, embedding_cache_size=0, **tiny.settings())
        ),
    }
    # The unconfigured validator never becomes ready.
    for name in ("planner", "renderer", "validator_tiny", "validator_forgetful"):
        assert started[name][0].ready.wait(60), started[name][0].not_ready_reason
    yield {name: f"127.0.0.1:{port}" for name, (_, port) in started.items()}
    for server, _ in started.values():
        server.stop(0)


def _gateway(services, outputs: Path, validator: str, validator_address: str = ""):
    settings = GatewaySettings(
        port=0,
        http_port=0,
        planner=services["planner"],
        renderers=services["renderer"],
        validator=validator_address or services[validator],
        outputs=outputs,
    )
    server, port = _start(create_gateway, settings)
    assert server.ready.wait(30), server.not_ready_reason
    return server, port


EXAMPLE_REGISTRY = Path(__file__).resolve().parents[2] / "examples" / "characters.toml"


@contextmanager
def _gateway_with(services, tmp_path, registry: Path, adapters: Sequence[str] | None = None):
    """A gateway (server, gRPC port) whose planner reads ``registry``; with ``adapters``, on a sketch renderer of its
    own whose adapters folder holds those."""
    planner, planner_port = _start(create_planner, PlannerSettings(port=0, characters_file=registry))
    started = [planner]
    found = {**services, "planner": f"127.0.0.1:{planner_port}"}
    if adapters is not None:
        for name in adapters:
            (tmp_path / "adapters" / name).mkdir(parents=True)
        settings = RendererSettings(port=0, backend="sketch", adapters_dir=tmp_path / "adapters")
        renderer, renderer_port = _start(create_renderer, settings)
        started.append(renderer)
        found["renderer"] = f"127.0.0.1:{renderer_port}"
    try:
        for server in started:
            assert server.ready.wait(60), server.not_ready_reason
        gateway, port = _gateway(found, tmp_path / "outputs", "validator_none")
        try:
            yield gateway, port
        finally:
            gateway.stop(0)
    finally:
        for server in started:
            server.stop(0)


def _registry_with_aldar(tmp_path, adapter: str) -> Path:
    registry = tmp_path / "characters.toml"
    registry.write_text(
        f'[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_kose_man"\nadapter = "{adapter}"\n'
    )
    return registry


@pytest.fixture
def gateway(services, tmp_path):
    server, port = _gateway(services, tmp_path / "outputs", "validator_none")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield storyboards_pb2_grpc.StoryboardsStub(channel), server, tmp_path / "outputs"
    channel.close()
    server.stop(0)


def _spec(**fields) -> storyboards_pb2.StoryboardSpec:
    fields.setdefault("story", STORY)
    fields.setdefault("num_inference_steps", 4)
    fields.setdefault("width", 256)
    fields.setdefault("height", 256)
    return storyboards_pb2.StoryboardSpec(**fields)


def _spec_json() -> dict[str, object]:
    return {"story": STORY, "num_inference_steps": 4, "width": 256, "height": 256}


def _generate(stub, **fields) -> list[storyboards_pb2.StoryboardEvent]:
    return list(stub.Generate(storyboards_pb2.GenerateRequest(spec=_spec(**fields)), timeout=120))


def _rest_storyboard(http: httpx.Client, body: dict[str, object]) -> tuple[str, list[str]]:
    """A storyboard created over REST and followed to its end: its id and the kinds of its events."""
    created = http.post("/v1/storyboards", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    with http.stream("GET", f"/v1/storyboards/{job_id}/events") as events:
        kinds = [line.removeprefix("event: ") for line in events.iter_lines() if line.startswith("event: ")]
    return job_id, kinds


def test_generate_streams_every_stage_and_writes_the_seed_folder(gateway):
    stub, _, outputs = gateway
    events = _generate(stub, num_frames=6)
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "accepted" and kinds[1] == "plan_ready" and kinds[-1] == "completed"
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert kinds.count("frame_rendered") == 6 and kinds.count("frame_validated") == 6
    progress: dict[tuple[int, int], list[int]] = {}
    for event in events:
        if event.HasField("frame_progress"):
            step = event.frame_progress
            progress.setdefault((step.frame, step.attempt), []).append(step.step)
            total_steps = step.total_steps
    assert len(progress) == 6, "every frame reports progress"
    for steps in progress.values():  # throttled (--progress-interval-seconds), but the first and last always go out
        assert steps[0] == 1 and steps[-1] == total_steps and steps == sorted(set(steps))

    final = events[-1].completed.storyboard
    assert final.state == storyboards_pb2.STORYBOARD_STATE_COMPLETED
    folder = Path(final.output_dir)
    assert folder.parent == outputs.resolve()
    breakdown = json.loads((folder / "scene_breakdown.json").read_text())
    assert breakdown["story"] == STORY and breakdown["num_frames"] == 6
    assert {"frame", "description", "camera", "mood"} <= set(breakdown["scenes"][0])
    prompts = json.loads((folder / "sdxl_prompts.json").read_text())
    assert len(prompts) == 6 and all(isinstance(p, str) and p for p in prompts)
    for frame in range(1, 7):
        with Image.open(folder / f"frame_{frame:03d}.png") as image:
            assert image.size == (256, 256)
    with Image.open(folder / "storyboard_grid.png") as grid:
        assert grid.width > 256
    assert set(events[-1].completed.files) >= {"scene_breakdown.json", "sdxl_prompts.json", "storyboard_grid.png"}


def test_each_frame_file_is_its_kept_attempt_linked_not_copied(gateway):
    stub, _, outputs = gateway
    storyboard = _generate(stub, num_frames=6)[-1].completed.storyboard
    folder = outputs / storyboard.id
    for frame in storyboard.frames:
        attempt = folder / "attempts" / f"frame_{frame.frame:03d}_attempt_{frame.attempts}.png"
        kept = folder / frame.file_name
        assert kept.read_bytes() == attempt.read_bytes()
        assert kept.stat().st_ino == attempt.stat().st_ino


def test_frames_arrive_with_their_images_and_recorded_seeds(gateway):
    stub, _, _ = gateway
    events = _generate(stub, num_frames=6, base_seed=1000)
    rendered = {e.frame_rendered.frame: e.frame_rendered for e in events if e.HasField("frame_rendered")}
    assert {frame: r.seed for frame, r in rendered.items()} == {f: 1000 + f - 1 for f in range(1, 7)}
    assert all(r.image.mime_type == "image/png" and r.image.data[:4] == b"\x89PNG" for r in rendered.values())
    final = events[-1].completed.storyboard
    assert [f.seed for f in final.frames] == [1000 + f for f in range(6)]


def test_without_a_validator_model_frames_are_marked_not_validated(gateway):
    stub, _, _ = gateway
    events = _generate(stub, num_frames=6)
    validated = [e.frame_validated for e in events if e.HasField("frame_validated")]
    assert {v.verdict for v in validated} == {common_pb2.VERDICT_NOT_VALIDATED}
    assert all("not ready" in v.reason for v in validated)


def test_with_a_validator_model_frames_are_scored_against_frame_one(services, tmp_path):
    server, port = _gateway(services, tmp_path / "outputs", "validator_tiny")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6)
    finally:
        server.stop(0)
    assert events[-1].HasField("completed"), events[-1]
    first = [e.frame_validated for e in events if e.HasField("frame_validated") and e.frame_validated.frame == 1]
    assert first and first[0].score.consistency == pytest.approx(1.0, abs=1e-4)
    final = events[-1].completed.storyboard
    assert all(f.verdict != common_pb2.VERDICT_NOT_VALIDATED for f in final.frames)


def test_frame_one_is_the_reference_from_the_moment_it_arrives(services, tmp_path, monkeypatch):
    # Frame 1's first attempt is kept whatever it scores, so the other frames are scored against it as soon as it
    # arrives: here keeping it waits until they all were. Had they waited for it to be kept, this would deadlock.
    others_scored = threading.Event()
    waited = {}
    real_keep = frames.keep_as_png

    def keep(attempt: Path, frame: Path) -> None:
        if frame.name == "frame_001.png":
            waited["scored"] = others_scored.wait(20)
        real_keep(attempt, frame)

    monkeypatch.setattr(frames, "keep_as_png", keep)
    server, port = _gateway(services, tmp_path / "outputs", "validator_tiny")
    scored: set[int] = set()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = storyboards_pb2_grpc.StoryboardsStub(channel).Generate(
                storyboards_pb2.GenerateRequest(spec=_spec(num_frames=6)), timeout=120
            )
            for event in stream:
                if event.HasField("frame_validated"):
                    scored.add(event.frame_validated.frame)
                    if scored >= {2, 3, 4, 5, 6}:
                        others_scored.set()
                last = event
    finally:
        server.stop(0)
    assert last.HasField("completed"), last
    assert waited == {"scored": True}


def _storyboard_through(services, outputs: Path, validator: str, validator_address: str = ""):
    server, port = _gateway(services, outputs, validator, validator_address)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6, base_seed=77)
    finally:
        server.stop(0)
    assert events[-1].HasField("completed"), events[-1]
    return events[-1].completed.storyboard


def test_the_documents_name_the_characters_and_the_plan_files_keep_their_tokens(services, tmp_path, monkeypatch):
    # The plan's descriptions carry the LoRAs' trigger tokens; the contact sheet and the PDF are read by people.
    captions = []
    real_sheet = documents.contact_sheet
    monkeypatch.setattr(
        documents, "contact_sheet", lambda frames, texts: captions.extend(texts) or real_sheet(frames, texts)
    )
    with (
        _gateway_with(services, tmp_path, EXAMPLE_REGISTRY) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6)
    folder = Path(events[-1].completed.storyboard.output_dir)
    assert "aldar_kose_man" in json.loads((folder / "scene_breakdown.json").read_text())["scenes"][0]["description"]
    assert len(captions) == 6 and any("Aldar Kose" in caption for caption in captions)
    assert not any("aldar_kose_man" in caption for caption in captions), captions
    words = "\n".join(page.extract_text() for page in pypdf.PdfReader(folder / "storyboard.pdf").pages)
    assert "Aldar Kose" in words and "aldar_kose_man" not in words


def test_an_adapter_named_by_the_request_and_the_character_is_applied_once(services, tmp_path):
    # The registry draws Aldar Kose with the adapter "aldar", and the request names "aldar" too (--lora-path aldar):
    # one adapter, not one the renderer refuses as listed twice after the storyboard was accepted.
    registry = _registry_with_aldar(tmp_path, "aldar")
    with (
        _gateway_with(services, tmp_path, registry, adapters=["aldar"]) as (server, _),
        httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=60) as http,
    ):
        aldar = {"name": "aldar", "weight": 0.8}
        spec = {**_spec_json(), "adapters": [aldar, aldar]}
        created = http.post("/v1/storyboards", json={"spec": spec})
        assert created.status_code == 202, created.text
        assert created.json()["spec"]["adapters"] == [aldar]
        job_id = created.json()["id"]
        with http.stream("GET", f"/v1/storyboards/{job_id}/events") as stream:
            last = [line for line in stream.iter_lines() if line.startswith("event: ")][-1]
        assert last == "event: completed", http.get(f"/v1/storyboards/{job_id}").json()
        twice = {**spec, "adapters": [aldar, {"name": "aldar", "weight": 1.0}]}
        refused = http.post("/v1/storyboards", json={"spec": twice})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"].startswith("spec.adapters[1].weight: 'aldar' is listed twice")


def test_a_character_whose_adapter_the_renderers_lack_is_drawn_from_its_prompt_with_a_warning(services, tmp_path):
    # The default registry names an adapter a renderer may not have: the storyboard is drawn without it, not failed.
    registry = _registry_with_aldar(tmp_path, "aldar")
    with (
        _gateway_with(services, tmp_path, registry, adapters=["style"]) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6)
    assert events[-1].HasField("completed"), events[-1]
    plan = events[-1].completed.storyboard.plan
    assert [(c.name, c.adapter) for c in plan.characters] == [("Aldar Kose", "")]
    assert "the renderers have no adapter 'aldar', so Aldar Kose is drawn from the prompt alone" in plan.warnings[-1]
    assert all(scene.prompt.startswith("aldar_kose_man") for scene in plan.scenes)


def test_the_documents_are_made_once_after_the_last_frame_with_the_final_scores(services, tmp_path, monkeypatch):
    layouts = []
    real = documents.storyboard_pdf
    monkeypatch.setattr(documents, "storyboard_pdf", lambda *args: layouts.append(args) or real(*args))
    storyboard = _storyboard_through(services, tmp_path / "outputs", "validator_tiny")
    assert len(layouts) == 1
    reader = pypdf.PdfReader(tmp_path / "outputs" / storyboard.id / "storyboard.pdf")
    words = "\n".join(page.extract_text() for page in reader.pages)
    for frame in storyboard.frames:
        assert f"seed {frame.seed} · consistency {frame.score.consistency:.2f}" in words


def test_each_kept_frame_is_prepared_for_the_documents_when_kept_and_decoded_once(services, tmp_path, monkeypatch):
    prepared, reads = [], []
    real_prepare, real_read = DocumentFrames.prepare, documents.DocumentFrame.read
    monkeypatch.setattr(DocumentFrames, "prepare", lambda self, path: prepared.append(path) or real_prepare(self, path))
    monkeypatch.setattr(documents.DocumentFrame, "read", lambda frame: reads.append(frame) or real_read(frame))
    storyboard = _storyboard_through(services, tmp_path / "outputs", "validator_tiny")
    folder = tmp_path / "outputs" / storyboard.id
    expected = sorted(folder / frame.file_name for frame in storyboard.frames)
    assert sorted(prepared) == sorted(reads) == expected


def test_the_validator_is_sent_each_image_once_and_named_by_digest_after(services, tmp_path):
    # Sent naively, each frame would go with a copy of frame 1 and the repetition check would send every kept frame
    # again: about three times the frames' bytes.
    proxy = TcpProxy(int(services["validator_tiny"].rsplit(":", 1)[1]))
    try:
        storyboard = _storyboard_through(
            services, tmp_path / "outputs", "validator_tiny", validator_address=f"127.0.0.1:{proxy.port}"
        )
    finally:
        proxy.close()
    assert all(frame.verdict != common_pb2.VERDICT_NOT_VALIDATED for frame in storyboard.frames)
    attempts = sorted((tmp_path / "outputs" / storyboard.id / "attempts").iterdir())
    assert len(attempts) == 6  # one attempt per frame (so the bound below counts every image sent)
    images = sum(path.stat().st_size for path in attempts)
    assert images < proxy.bytes_sent < images * 1.15 + 30_000, (proxy.bytes_sent, images)


def test_a_validator_that_forgets_images_is_sent_them_again_and_scores_the_same(services, tmp_path):
    remembering = _storyboard_through(services, tmp_path / "a", "validator_tiny")
    forgetting = _storyboard_through(services, tmp_path / "b", "validator_forgetful")
    for forgot, remembered in zip(forgetting.frames, remembering.frames, strict=True):
        assert forgot.verdict == remembered.verdict
        assert forgot.score.most_similar_index == remembered.score.most_similar_index
        for name in ("consistency", "alignment", "repetition"):  # embedded in other batches: float noise only
            assert getattr(forgot.score, name) == pytest.approx(getattr(remembered.score, name), abs=1e-5)
    assert all(frame.verdict != common_pb2.VERDICT_NOT_VALIDATED for frame in forgetting.frames)
    assert forgetting.state == storyboards_pb2.STORYBOARD_STATE_COMPLETED


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"story": ""}, "spec.story"),
        ({"story": "   \n "}, "spec.story"),
        ({"num_frames": 0}, "spec.num_frames"),
        ({"num_frames": 11}, "spec.num_frames"),
        ({"base_seed": -1}, "spec.base_seed"),
        ({"num_inference_steps": 0}, "spec.num_inference_steps"),
        ({"guidance_scale": -1.0}, "spec.guidance_scale"),
        ({"width": 100}, "spec.width"),
        ({"characters": ["../../etc/passwd"]}, "spec.characters[0]"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(gateway, fields, field_name):
    stub, _, _ = gateway
    for call in (
        lambda: list(stub.Generate(storyboards_pb2.GenerateRequest(spec=_spec(**fields)), timeout=10)),
        lambda: stub.Create(storyboards_pb2.CreateRequest(spec=_spec(**fields)), timeout=10),
        lambda: stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(**fields)), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field_name)


def test_create_get_list_watch_and_idempotency(gateway):
    stub, _, _ = gateway
    created = stub.Create(storyboards_pb2.CreateRequest(spec=_spec(num_frames=6), idempotency_key="k1"), timeout=10)
    again = stub.Create(storyboards_pb2.CreateRequest(spec=_spec(num_frames=6), idempotency_key="k1"), timeout=10)
    assert again.id == created.id
    events = list(stub.Watch(storyboards_pb2.WatchRequest(id=created.id), timeout=120))
    assert events[-1].HasField("completed")
    replay = list(stub.Watch(storyboards_pb2.WatchRequest(id=created.id, after_sequence=3), timeout=10))
    assert [e.sequence for e in replay] == [e.sequence for e in events[3:]]
    got = stub.Get(storyboards_pb2.GetRequest(id=created.id), timeout=10)
    assert got.state == storyboards_pb2.STORYBOARD_STATE_COMPLETED and len(got.frames) == 6
    listed = stub.List(storyboards_pb2.ListRequest(page_size=100), timeout=10)
    assert created.id in [s.id for s in listed.storyboards]


def test_an_idempotency_key_reused_for_another_request_is_refused_naming_the_key(gateway):
    stub, server, _ = gateway
    created = stub.Create(storyboards_pb2.CreateRequest(spec=_spec(num_frames=6), idempotency_key="k2"), timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Create(storyboards_pb2.CreateRequest(spec=_spec(num_frames=7), idempotency_key="k2"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.value.details().startswith("idempotency_key: 'k2' was used for another request")
    assert created.id in refused.value.details()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=30) as http:
        body = {"spec": {**_spec_json(), "num_frames": 8}}
        conflict = http.post("/v1/storyboards", json=body, headers={"Idempotency-Key": "k2"})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "ALREADY_EXISTS"
        assert "'k2'" in conflict.json()["error"]["message"]
        # The same key with the same request is still the same storyboard, whichever face sends it.
        same = http.post("/v1/storyboards", json={"spec": {**_spec_json(), "num_frames": 6}, "idempotency_key": "k2"})
        assert same.status_code in (200, 202) and same.json()["id"] == created.id


def test_unknown_and_malformed_ids(gateway):
    stub, _, _ = gateway
    with pytest.raises(grpc.RpcError) as caught:
        stub.Get(storyboards_pb2.GetRequest(id="20990101-000000-00000000"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.Get(storyboards_pb2.GetRequest(id="../../etc"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_stops_the_renders_and_ends_the_storyboard(services, tmp_path):
    renderer = BlockingRenderer()
    renderer_server, renderer_port = serve_renderer(renderer)
    gateway_services = {**services, "renderer": f"127.0.0.1:{renderer_port}"}
    server, port = _gateway(gateway_services, tmp_path / "outputs", "validator_none")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = storyboards_pb2_grpc.StoryboardsStub(channel)
            stream = stub.Generate(storyboards_pb2.GenerateRequest(spec=_spec(num_frames=6)), timeout=60)
            first = next(stream)
            assert renderer.started.wait(10)
            answer = stub.Cancel(storyboards_pb2.CancelRequest(id=first.storyboard_id), timeout=10)
            assert answer.state == storyboards_pb2.STORYBOARD_STATE_CANCELLED and answer.cancel_requested
            rest = list(stream)
            assert rest[-1].HasField("failed") and rest[-1].failed.code == "CANCELLED"
            assert renderer.cancelled.wait(10)
            state = stub.Get(storyboards_pb2.GetRequest(id=first.storyboard_id), timeout=10).state
            assert state == storyboards_pb2.STORYBOARD_STATE_CANCELLED
            folder = Path(first.accepted.storyboard.output_dir)
            assert (folder / "scene_breakdown.json").exists()  # what was made before the cancel stays
            with pytest.raises(grpc.RpcError) as caught:
                _export(stub, first.storyboard_id, storyboards_pb2.EXPORT_FORMAT_CSV)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert caught.value.details().endswith("is cancelled: its exports are made once it has completed")
    finally:
        server.stop(0)
        renderer_server.stop(0)


def test_plan_is_a_dry_run(gateway):
    stub, _, outputs = gateway
    plan = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(num_frames=7)), timeout=30).plan
    assert len(plan.scenes) == 7 and all(scene.prompt for scene in plan.scenes)
    assert not list(outputs.glob("*/frame_001.png"))


def test_rest_bridge_creates_follows_and_serves_files(gateway):
    _, server, _ = gateway
    base = f"http://127.0.0.1:{server.endpoints['http']}"
    with httpx.Client(base_url=base, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        bad = http.post("/v1/storyboards", json={"spec": {"story": "x", "num_frames": 11}})
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("spec.num_frames")
        spec = {"story": STORY, "num_frames": 6, "num_inference_steps": 2, "width": 256, "height": 256}
        created = http.post("/v1/storyboards", json={"spec": spec})
        assert created.status_code == 202
        job_id = created.json()["id"]
        kinds = []
        with http.stream("GET", f"/v1/storyboards/{job_id}/events") as events:
            for line in events.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
        assert kinds[0] == "accepted" and kinds[-1] == "completed"
        frame = http.get(f"/v1/storyboards/{job_id}/frames/1")
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
        assert http.get(f"/v1/storyboards/{job_id}/grid.png").status_code == 200
        assert http.get(f"/v1/storyboards/{job_id}/frames/99").status_code == 400
        assert http.get("/v1/storyboards/20990101-000000-00000000").status_code == 404
        assert http.post("/v1/storyboards", content=b"{not json").status_code == 400


def test_regenerate_frame_over_grpc_keeps_the_new_attempt(gateway):
    stub, _, _ = gateway
    events = _generate(stub, num_frames=6)
    job_id = events[0].storyboard_id
    stub.RegenerateFrame(storyboards_pb2.RegenerateFrameRequest(id=job_id, frame=2, seed=12345), timeout=10)
    after = list(stub.Watch(storyboards_pb2.WatchRequest(id=job_id, after_sequence=events[-1].sequence), timeout=60))
    assert after[-1].HasField("completed")
    assert [e.frame_rendered.seed for e in after if e.HasField("frame_rendered")] == [12345]
    assert stub.Get(storyboards_pb2.GetRequest(id=job_id), timeout=10).frames[1].seed == 12345
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegenerateFrame(storyboards_pb2.RegenerateFrameRequest(id=job_id, frame=9), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith("frame")


def _export(stub, job_id: str, export_format: int, **options: bool) -> tuple[set[str], bytes]:
    request = storyboards_pb2.ExportRequest(
        id=job_id, format=export_format, options=storyboards_pb2.ExportOptions(**options)
    )
    chunks = list(stub.Export(request, timeout=120))
    assert chunks[-1].last
    return {chunk.name for chunk in chunks}, b"".join(chunk.data for chunk in chunks)


def test_a_storyboard_is_exported_over_grpc_and_rest_and_made_again_when_a_frame_changes(gateway):
    stub, server, _ = gateway
    plan = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(num_frames=6)), timeout=30).plan
    for scene, seconds in zip(plan.scenes, (1.0, 2.5, 0, 1.5, 3.0, 0.5), strict=True):
        scene.duration_seconds = seconds
    held = [1.0, 2.5, 2.0, 1.5, 3.0, 0.5]
    job_id = _generate(stub, plan=plan, width=384, height=256)[-1].completed.storyboard.id
    names, mp4 = _export(stub, job_id, storyboards_pb2.EXPORT_FORMAT_MP4, captions=True)
    assert names == {"animatic.mp4"}
    with av.open(io.BytesIO(mp4)) as container:
        decoded = list(container.decode(video=0))
    assert (decoded[0].width, decoded[0].height) == (384, 256) and len(decoded) == round(sum(held) * 24)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=120) as http:
        video = http.get(f"/v1/storyboards/{job_id}/animatic.mp4", params={"captions": "true"})
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content == mp4  # the one made for gRPC, kept
        with Image.open(io.BytesIO(http.get(f"/v1/storyboards/{job_id}/animatic.gif").content)) as gif:
            assert [frame.info["duration"] for frame in ImageSequence.Iterator(gif)] == [s * 1000 for s in held]
        archive = zipfile.ZipFile(io.BytesIO(http.get(f"/v1/storyboards/{job_id}/storyboard.zip").content))
        assert f"{job_id}/frame_006.png" in archive.namelist() and f"{job_id}/storyboard.pdf" in archive.namelist()
        shots = http.get(f"/v1/storyboards/{job_id}/exports/csv")
        assert shots.status_code == 200 and shots.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(shots.content.decode("utf-8-sig"))))
        assert [float(row["duration (s)"]) for row in rows] == held
        unknown = http.get(f"/v1/storyboards/{job_id}/exports/avi")
        assert unknown.status_code == 400 and unknown.json()["error"]["message"].startswith("format: 'avi' is not")
        bad = http.get(f"/v1/storyboards/{job_id}/animatic.mp4", params={"crossfade": "maybe"})
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("crossfade")
        assert http.get("/v1/storyboards/20990101-000000-00000000/shots.csv").status_code == 404
    for export_format, code in ((0, grpc.StatusCode.INVALID_ARGUMENT), (9, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as caught:
            _export(stub, job_id, export_format)
        assert caught.value.code() == code and caught.value.details().startswith("format: "), caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        _export(stub, "20990101-000000-00000000", storyboards_pb2.EXPORT_FORMAT_CSV)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # A frame regenerated: the shot list is made again, with its new seed.
    last = stub.Get(storyboards_pb2.GetRequest(id=job_id), timeout=10).last_event_sequence
    stub.RegenerateFrame(storyboards_pb2.RegenerateFrameRequest(id=job_id, frame=2, seed=4242), timeout=10)
    assert list(stub.Watch(storyboards_pb2.WatchRequest(id=job_id, after_sequence=last), timeout=60))[-1].completed
    _, after = _export(stub, job_id, storyboards_pb2.EXPORT_FORMAT_CSV)
    assert list(csv.DictReader(io.StringIO(after.decode("utf-8-sig"))))[1]["seed"] == "4242"


def test_unknown_characters_are_refused_at_the_edge(gateway):
    stub, _, _ = gateway
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(storyboards_pb2.CreateRequest(spec=_spec(characters=["Nobody"])), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("spec.characters[0]: unknown character 'Nobody'")


# -- a storyboard from a plan -------------------------------------------------------------------------------------


@pytest.fixture
def registry_gateway(services, tmp_path):
    """A gateway whose planner has the example registry (Aldar Kose, aldar_kose_man): (stub, server)."""
    with (
        _gateway_with(services, tmp_path, EXAMPLE_REGISTRY) as (server, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield storyboards_pb2_grpc.StoryboardsStub(channel), server


def test_a_storyboard_renders_the_plan_it_is_given_edited_and_never_plans_again(registry_gateway):
    stub, _ = registry_gateway
    planned = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(num_frames=6)), timeout=30).plan
    edited = common_pb2.Plan()
    edited.CopyFrom(planned)
    edited.scenes[2].description = "aldar_kose_man hides the pot under a cart of melons"
    edited.scenes[2].prompt = ""  # the planner writes it from the edited description
    edited.scenes[4].duration_seconds = 4.5
    # Another story in the spec: a storyboard that planned again would draw that one.
    events = _generate(stub, story="A fox steals a lantern in the snow", plan=edited)
    plan = events[1].plan_ready.plan
    assert [scene.description for scene in plan.scenes] == [scene.description for scene in edited.scenes]
    assert plan.scenes[2].prompt.startswith("aldar_kose_man hides the pot under a cart of melons")
    assert [scene.prompt for i, scene in enumerate(plan.scenes) if i != 2] == [
        scene.prompt for i, scene in enumerate(planned.scenes) if i != 2
    ]
    final = events[-1].completed.storyboard
    assert final.state == storyboards_pb2.STORYBOARD_STATE_COMPLETED and len(final.frames) == 6
    folder = Path(final.output_dir)
    breakdown = json.loads((folder / "scene_breakdown.json").read_text())
    assert breakdown["scenes"][2]["description"] == "aldar_kose_man hides the pot under a cart of melons"
    assert [scene["duration_seconds"] for scene in breakdown["scenes"]] == [2.0, 2.0, 2.0, 2.0, 4.5, 2.0]
    assert json.loads((folder / "sdxl_prompts.json").read_text()) == [scene.prompt for scene in plan.scenes]
    assert final.spec.num_frames == 6 and final.plan.characters[0].trigger_token == "aldar_kose_man"
    # A frame of it is regenerated like any other.
    stub.RegenerateFrame(storyboards_pb2.RegenerateFrameRequest(id=final.id, frame=3, seed=777), timeout=10)
    after = list(stub.Watch(storyboards_pb2.WatchRequest(id=final.id, after_sequence=events[-1].sequence), timeout=60))
    assert after[-1].HasField("completed") and stub.Get(storyboards_pb2.GetRequest(id=final.id)).frames[2].seed == 777


def test_a_given_plan_is_checked_and_its_problems_are_warnings_not_rewrites(registry_gateway):
    stub, _ = registry_gateway
    plan = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(num_frames=6)), timeout=30).plan
    plan.scenes[1].description = "aldar_kose_man in a red silk robe waits"  # the description changed, its prompt not
    reviewed = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(plan=plan)), timeout=30).plan
    assert reviewed.scenes[1].description == "aldar_kose_man in a red silk robe waits"
    assert reviewed.scenes[1].prompt == plan.scenes[1].prompt
    assert any(w.startswith("frame 2: uses clothing or appearance words (robe") for w in reviewed.warnings)
    assert any(w.startswith("frame 2: its prompt is rendered as given") for w in reviewed.warnings)


def _six_scenes() -> common_pb2.Plan:
    return common_pb2.Plan(
        scenes=[
            common_pb2.Scene(
                description=f"aldar_kose_man at the market, beat {n}",
                camera="wide shot",
                trigger_tokens=["aldar_kose_man"],
            )
            for n in range(6)
        ]
    )


@pytest.mark.parametrize(
    ("edit", "fields", "field_name"),
    [
        (lambda plan: plan.scenes.pop(), {}, "spec.plan.scenes: has 5 scenes"),
        (lambda plan: setattr(plan.scenes[4], "description", " "), {}, "spec.plan.scenes[4].description"),
        (lambda plan: setattr(plan.scenes[1], "prompt", "x\x00"), {}, "spec.plan.scenes[1].prompt"),
        (lambda plan: setattr(plan.scenes[2], "duration_seconds", -1), {}, "spec.plan.scenes[2].duration_seconds"),
        (lambda plan: setattr(plan.scenes[0], "duration_seconds", 61), {}, "spec.plan.scenes[0].duration_seconds"),
        (
            lambda plan: setattr(plan.scenes[5], "duration_seconds", math.nan),
            {},
            "spec.plan.scenes[5].duration_seconds",
        ),
        (
            lambda plan: setattr(plan.scenes[1], "duration_seconds", math.inf),
            {},
            "spec.plan.scenes[1].duration_seconds",
        ),
        (lambda plan: None, {"num_frames": 8}, "spec.num_frames: is 8, but the plan has 6 scenes"),
        (lambda plan: None, {"characters": ["Aldar Kose"]}, "spec.characters: must be empty with a plan"),
        (
            lambda plan: plan.scenes[3].trigger_tokens.append("nobody_man"),
            {},
            "spec.plan.scenes[3].trigger_tokens[1]: unknown trigger token 'nobody_man'",
        ),
    ],
)
def test_a_plan_that_cannot_be_drawn_is_refused_at_the_edge_naming_the_field(
    registry_gateway, edit, fields, field_name
):
    stub, server = registry_gateway
    plan = _six_scenes()
    edit(plan)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(storyboards_pb2.CreateRequest(spec=_spec(story="", plan=plan, **fields)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field_name), caught.value.details()
    assert not stub.List(storyboards_pb2.ListRequest(page_size=10), timeout=10).storyboards  # nothing accepted
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=30) as http:
        body = {
            "spec": {
                **_spec_json(),
                "story": "",
                **fields,
                "plan": json_format.MessageToDict(plan, preserving_proto_field_name=True),
            }
        }
        refused = http.post("/v1/storyboards", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["message"].startswith(field_name)


def test_rest_takes_a_plan_in_the_proto3_json_body(registry_gateway):
    _, server = registry_gateway
    body = {"spec": {"num_inference_steps": 2, "width": 256, "height": 256,
                     "plan": json_format.MessageToDict(_six_scenes(), preserving_proto_field_name=True)}}  # fmt: skip
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=60) as http:
        job_id, kinds = _rest_storyboard(http, body)
        assert kinds[-1] == "completed"
        storyboard = http.get(f"/v1/storyboards/{job_id}").json()
    assert [scene["description"] for scene in storyboard["plan"]["scenes"]] == [
        f"aldar_kose_man at the market, beat {n}" for n in range(6)
    ]
    assert storyboard["spec"]["story"].startswith("aldar_kose_man at the market, beat 0 aldar_kose_man")


# -- the picture's shape and the negative prompt ---------------------------------------------------------------------


def test_a_widescreen_storyboard_has_frames_cells_and_pages_of_its_shape_and_the_negative_prompt_given(gateway):
    stub, _, _ = gateway
    spec = storyboards_pb2.StoryboardSpec(
        story=STORY, num_frames=6, num_inference_steps=2, aspect="16:9", negative_prompt="text, watermark, frame"
    )
    events = list(stub.Generate(storyboards_pb2.GenerateRequest(spec=spec), timeout=120))
    final = events[-1].completed.storyboard
    assert (final.spec.width, final.spec.height, final.spec.aspect) == (1344, 768, "16:9")
    folder = Path(final.output_dir)
    with Image.open(folder / "frame_001.png") as frame:
        assert frame.size == (1344, 768)
    with Image.open(folder / "storyboard_grid.png") as grid:  # 3 columns of 384x219 cells, two rows
        assert grid.size == (3 * (384 + 16) + 16, 2 * (219 + 4 * 19 + 12 + 16) + 16)
    pages = pypdf.PdfReader(folder / "storyboard.pdf").pages
    assert {(image.image.width, image.image.height) for page in pages for image in page.images} == {(1344, 768)}
    assert events[1].plan_ready.plan.negative_prompt == "text, watermark, frame"
    assert json.loads((folder / "frames.json").read_text())["negative_prompt"] == "text, watermark, frame"
    assert json.loads((folder / "scene_breakdown.json").read_text())["negative_prompt"] == "text, watermark, frame"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aspect": "5:4"}, "spec.aspect: '5:4' is not one of 1:1, 16:9, 9:16, 4:3, 3:4, 2.39:1"),
        ({"aspect": "16:9", "width": 1024}, "spec.width: is 1024, but aspect 16:9 is 1344x768; give one"),
        ({"negative_prompt": "x" * 1001}, "spec.negative_prompt: is 1001 characters long"),
    ],
)
def test_a_shape_or_negative_prompt_that_cannot_be_drawn_is_refused_naming_the_field(gateway, fields, message):
    stub, server, _ = gateway
    spec = storyboards_pb2.StoryboardSpec(story=STORY, **fields)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(storyboards_pb2.CreateRequest(spec=spec), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith(message)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=30) as http:
        refused = http.post("/v1/storyboards", json={"spec": {"story": STORY, **fields}})
        assert refused.status_code == 400 and refused.json()["error"]["message"].startswith(message)


# -- another attempt kept, the characters, the prompts' token counts ------------------------------------------------


def _watch_to_end(stub, job_id: str, after: int) -> list[storyboards_pb2.StoryboardEvent]:
    return list(stub.Watch(storyboards_pb2.WatchRequest(id=job_id, after_sequence=after), timeout=60))


def test_another_attempt_is_kept_over_grpc_without_rendering_and_the_files_follow(gateway):
    stub, _, outputs = gateway
    events = _generate(stub, num_frames=6)
    job_id = events[0].storyboard_id
    stub.RegenerateFrame(storyboards_pb2.RegenerateFrameRequest(id=job_id, frame=2, prompt="a red kite"), timeout=10)
    regenerated = _watch_to_end(stub, job_id, events[-1].sequence)
    folder = next(outputs.glob(f"{job_id}*"))
    original = json.loads((folder / "scene_breakdown.json").read_text())["scenes"][1]
    assert json.loads((folder / "frames.json").read_text())["frames"][1]["kept_attempt"] == 2

    kept = stub.KeepAttempt(storyboards_pb2.KeepAttemptRequest(id=job_id, frame=2, attempt=1), timeout=10)
    assert kept.state == storyboards_pb2.STORYBOARD_STATE_QUEUED
    after = _watch_to_end(stub, job_id, regenerated[-1].sequence)
    assert after[-1].HasField("completed")
    assert not [event for event in after if event.HasField("frame_rendered")]  # nothing was rendered
    metadata = json.loads((folder / "frames.json").read_text())["frames"][1]
    assert metadata["kept_attempt"] == 1 and metadata["seed"] == int(metadata["attempts"][0]["seed"])
    assert (folder / "frame_002.png").read_bytes() == (folder / metadata["attempts"][0]["file"]).read_bytes()
    # The scene says again what attempt 1 was drawn from: its prompt and its description.
    scene = stub.Get(storyboards_pb2.GetRequest(id=job_id), timeout=10).plan.scenes[1]
    assert (scene.prompt, scene.description) == (original["prompt"], original["description"])
    assert metadata["description"] == original["description"]


@pytest.mark.parametrize(
    ("frame", "attempt", "field"),
    [(9, 1, "frame: must be between 1 and 6"), (2, 5, "attempt: frame 2 has no attempt 5")],
)
def test_an_attempt_that_does_not_exist_is_refused_naming_the_field(gateway, frame, attempt, field):
    stub, _, _ = gateway
    job_id = _generate(stub, num_frames=6)[0].storyboard_id
    with pytest.raises(grpc.RpcError) as caught:
        stub.KeepAttempt(storyboards_pb2.KeepAttemptRequest(id=job_id, frame=frame, attempt=attempt), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field)
    assert (
        stub.Get(storyboards_pb2.GetRequest(id=job_id), timeout=10).state == storyboards_pb2.STORYBOARD_STATE_COMPLETED
    )


def test_rest_keeps_another_attempt_serves_attempts_and_lists_the_characters(registry_gateway):
    _, server = registry_gateway
    with httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=60) as http:
        characters = http.get("/v1/characters").json()["characters"]
        assert [(c["name"], c["trigger_token"]) for c in characters] == [("Aldar Kose", "aldar_kose_man")]
        spec = {**_spec_json(), "num_frames": 6}
        job_id = http.post("/v1/storyboards", json={"spec": spec}).json()["id"]
        with http.stream("GET", f"/v1/storyboards/{job_id}/events") as events:
            last = [line for line in events.iter_lines() if line.startswith("id: ")][-1]
        attempt = http.get(f"/v1/storyboards/{job_id}/frames/3/attempts/1")
        assert attempt.status_code == 200 and attempt.headers["content-type"] == "image/png"
        assert attempt.content == http.get(f"/v1/storyboards/{job_id}/frames/3").content
        missing = http.get(f"/v1/storyboards/{job_id}/frames/3/attempts/2")
        assert missing.status_code == 404 and "no attempt 2" in missing.json()["error"]["message"]
        refused = http.post(f"/v1/storyboards/{job_id}/frames/3:keep", json={"attempt": 4})
        assert refused.status_code == 400 and refused.json()["error"]["message"].startswith("attempt: frame 3 has")
        no_body = http.post(f"/v1/storyboards/{job_id}/frames/3:keep", json={})
        assert no_body.status_code == 400 and no_body.json()["error"]["message"].startswith("attempt")
        kept = http.post(f"/v1/storyboards/{job_id}/frames/3:keep", json={"attempt": 1})
        assert kept.status_code == 202 and kept.json()["state"] == "STORYBOARD_STATE_QUEUED"
        after = last.removeprefix("id: ")
        with http.stream("GET", f"/v1/storyboards/{job_id}/events", headers={"Last-Event-ID": after}) as events:
            kinds = [line.removeprefix("event: ") for line in events.iter_lines() if line.startswith("event: ")]
        assert kinds[-1] == "completed" and "frame_rendered" not in kinds


def test_plans_made_and_reviewed_count_each_prompts_clip_tokens(registry_gateway):
    stub, _ = registry_gateway
    plan = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=_spec(num_frames=6)), timeout=30).plan
    assert all(0 < scene.prompt_tokens <= 77 for scene in plan.scenes)
    long_prompt = ", ".join(["a very detailed painted wooden bowl"] * 20)
    given = common_pb2.Plan()
    given.CopyFrom(plan)
    given.scenes[0].prompt, given.scenes[0].prompt_tokens = long_prompt, 1  # a count given is not believed
    given.scenes[1].prompt = ""
    reviewed = stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=storyboards_pb2.StoryboardSpec(plan=given)),
                         timeout=30).plan  # fmt: skip
    assert reviewed.scenes[0].prompt_tokens > 77
    assert reviewed.scenes[1].prompt == plan.scenes[1].prompt
    assert reviewed.scenes[1].prompt_tokens == plan.scenes[1].prompt_tokens


def test_rest_serves_a_characters_reference_pictures_from_the_planners_registry(services, tmp_path):
    Image.new("RGB", (24, 16), "green").save(tmp_path / "aldar.png")
    registry = tmp_path / "characters.toml"
    registry.write_text('[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_kose_man"\n'
                        'reference_images = ["aldar.png"]\n')  # fmt: skip
    with (
        _gateway_with(services, tmp_path, registry) as (server, _port),
        httpx.Client(base_url=f"http://127.0.0.1:{server.endpoints['http']}", timeout=30) as http,
    ):
        (aldar,) = http.get("/v1/characters").json()["characters"]
        picture = http.get("/v1/characters/aldar_kose_man/references/1")
        beyond = http.get("/v1/characters/aldar_kose_man/references/2")
        nobody = http.get("/v1/characters/nobody/references/1")
        huge = http.get(f"/v1/characters/aldar_kose_man/references/{2**40}")
    assert aldar["reference_images"] == 1
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content == (tmp_path / "aldar.png").read_bytes()
    assert beyond.status_code == 404 and "no reference picture 2 (it has 1)" in beyond.json()["error"]["message"]
    assert nobody.status_code == 404 and nobody.json()["error"]["message"].startswith("trigger_token")
    assert huge.status_code == 400 and huge.json()["error"]["message"].startswith("number")


# -- characters' reference pictures ----------------------------------------------------------------------------------


def _png_base64(colour: str, size: tuple[int, int] = (96, 96)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def pictured_gateway(services, tmp_path):
    """A gateway whose planner's registry gives Aldar Kose a reference picture, on a scripted renderer that records
    the references it is sent and the validator on a tiny CLIP: (REST client, renderer, outputs)."""
    Image.new("RGB", (80, 80), "saddlebrown").save(tmp_path / "aldar.png")
    registry = tmp_path / "characters.toml"
    registry.write_text('[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_kose_man"\n'
                        'reference_images = ["aldar.png"]\nreference_scale = 0.5\n')  # fmt: skip
    planner, planner_port = _start(create_planner, PlannerSettings(port=0, characters_file=registry))
    renderer = ScriptedRenderer()
    renderer_server, renderer_port = serve_renderer(renderer)
    assert planner.ready.wait(60), planner.not_ready_reason
    found = {**services, "planner": f"127.0.0.1:{planner_port}", "renderer": f"127.0.0.1:{renderer_port}"}
    gateway, _port = _gateway(found, tmp_path / "outputs", "validator_tiny")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.endpoints['http']}", timeout=60) as http:
            yield http, renderer, tmp_path / "outputs"
    finally:
        for server in (gateway, renderer_server, planner):
            server.stop(0)


def test_reference_pictures_condition_the_frames_of_their_character_and_score_them(pictured_gateway):
    http, renderer, outputs = pictured_gateway
    upload = {"trigger_token": "aldar_kose_man", "pictures": [{"data": _png_base64("navy")}], "scale": 0.7}
    spec = {**_spec_json(), "num_frames": 6, "character_references": [upload]}
    job_id, kinds = _rest_storyboard(http, {"spec": spec})
    assert kinds[-1] == "completed"
    storyboard = http.get(f"/v1/storyboards/{job_id}").json()
    showing = [s["frame"] for s in storyboard["plan"]["scenes"] if "aldar_kose_man" in s.get("trigger_tokens", [])]
    assert showing, "the story's hero is in some frames"
    # The registry's picture and the uploaded one, to the frames that show him, and to no other.
    assert all(renderer.references[frame] == [("aldar_kose_man", 2)] for frame in showing)
    assert all(renderer.references[frame] == [] for frame in renderer.references if frame not in showing)
    # Stored and read back without the picture's bytes; the picture itself is in the folder.
    (stored,) = storyboard["spec"]["character_references"][0]["pictures"]
    assert "data" not in stored and stored["mime_type"] == "image/png" and stored["width"] == 96
    folder = outputs / job_id
    assert (folder / "references" / "aldar_kose_man_1.png").read_bytes() == base64.b64decode(
        upload["pictures"][0]["data"]
    )
    # Each frame showing him is scored against his pictures, in frames.json and report.json.
    frames = http.get(f"/v1/storyboards/{job_id}/frames.json").json()["frames"]
    for entry in frames:
        scored = entry["scores"].get("characters", {})
        assert set(scored) == ({"aldar_kose_man"} if entry["frame"] in showing else set()), entry
    report = http.get(f"/v1/storyboards/{job_id}/report.json").json()
    assert report["reference_consistency"]["aldar_kose_man"]["frames"] == showing
    assert "reference_consistency" in report["thresholds"]


@pytest.mark.parametrize(
    ("upload", "field"),
    [
        (
            {"trigger_token": "nobody_man", "pictures": [{"data": _png_base64("red")}]},
            "spec.character_references[0].trigger_token",
        ),
        (
            {"trigger_token": "aldar_kose_man", "pictures": [{"data": _png_base64("red")}] * 5},
            "spec.character_references[0].pictures",
        ),
        (
            {"trigger_token": "aldar_kose_man", "pictures": [{"data": base64.b64encode(b"not a picture").decode()}]},
            "spec.character_references[0].pictures[0]",
        ),
        (
            {"trigger_token": "aldar_kose_man", "pictures": [{"data": _png_base64("red", (32, 32))}]},
            "spec.character_references[0].pictures[0]",
        ),
        (
            {"trigger_token": "aldar_kose_man", "pictures": [{"data": _png_base64("red")}], "scale": 2},
            "spec.character_references[0].scale",
        ),
    ],
)
def test_an_upload_that_cannot_serve_is_refused_at_the_edge_naming_it(pictured_gateway, upload, field):
    http, _, outputs = pictured_gateway
    refused = http.post("/v1/storyboards", json={"spec": {**_spec_json(), "character_references": [upload]}})
    assert refused.status_code == 400 and refused.json()["error"]["message"].startswith(field), refused.text
    assert not list(outputs.glob("*/references"))


@pytest.mark.parametrize(
    ("backend", "consistency", "calls"),
    [
        ("scripted", "shared-attention", [[1, 2, 3, 4, 5, 6]]),  # drawn together, to be drawn alike
        ("scripted", "off", [[n] for n in range(1, 7)]),  # a renderer that gains nothing from batches
        ("diffusers", "off", [[1, 2, 3, 4], [5, 6]]),  # one replica: batched, at most its batch a request
    ],
)
def test_a_storyboards_first_attempts_reach_a_renderer_in_the_batches_it_makes(
    services, tmp_path, backend, consistency, calls
):
    renderer = ScriptedRenderer(
        consistency=consistency, backend=backend, max_batch_size=4 if consistency == "off" else 8
    )
    renderer_server, renderer_port = serve_renderer(renderer)
    gateway, port = _gateway({**services, "renderer": f"127.0.0.1:{renderer_port}"}, tmp_path / "out", "validator_none")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6)
    finally:
        gateway.stop(0)
        renderer_server.stop(0)
    assert events[-1].HasField("completed")
    assert sorted(renderer.requests) == calls
    progress = {e.frame_progress.frame for e in events if e.HasField("frame_progress")}
    assert progress == set(range(1, 7))  # each frame's steps reach its own bar, from one call or six


def test_a_frame_with_two_characters_carries_both_tokens_both_adapters_and_both_pictures(services, tmp_path):
    for name, colour in (("aldar", "saddlebrown"), ("merchant", "gold")):
        Image.new("RGB", (80, 80), colour).save(tmp_path / f"{name}.png")
    registry = tmp_path / "characters.toml"
    registry.write_text(
        '[[characters]]\nname = "Aldar Kose"\ntrigger_token = "aldar_kose_man"\nadapter = "aldar"\n'
        'reference_images = ["aldar.png"]\n'
        '[[characters]]\nname = "the merchant"\naliases = ["merchant"]\ntrigger_token = "rich_merchant"\n'
        'adapter = "merchant"\nadapter_weight = 0.6\nreference_images = ["merchant.png"]\n'
    )
    planner, planner_port = _start(create_planner, PlannerSettings(port=0, characters_file=registry))
    renderer = ScriptedRenderer(adapters=["aldar", "merchant"])
    renderer_server, renderer_port = serve_renderer(renderer)
    assert planner.ready.wait(60), planner.not_ready_reason
    found = {**services, "planner": f"127.0.0.1:{planner_port}", "renderer": f"127.0.0.1:{renderer_port}"}
    gateway, port = _gateway(found, tmp_path / "outputs", "validator_tiny")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            story = "Aldar Kose tricks the merchant at the bazaar and sells him a magical pot"
            events = _generate(storyboards_pb2_grpc.StoryboardsStub(channel), num_frames=6, story=story)
    finally:
        for server in (gateway, renderer_server, planner):
            server.stop(0)
    plan = next(e.plan_ready.plan for e in events if e.HasField("plan_ready"))
    both = [s for s in plan.scenes if {"aldar_kose_man", "rich_merchant"} <= set(s.trigger_tokens)]
    assert both, [list(s.trigger_tokens) for s in plan.scenes]
    for scene in both:
        assert "aldar_kose_man" in scene.prompt and "rich_merchant" in scene.prompt and scene.prompt_tokens <= 77
        assert sorted(renderer.adapters_of[scene.frame]) == [("aldar", 1.0), ("merchant", 0.6)]
        assert sorted(renderer.references[scene.frame]) == [("aldar_kose_man", 1), ("rich_merchant", 1)]
    final = events[-1].completed.storyboard.frames
    for scene in both:
        tokens = {c.trigger_token for c in final[scene.frame - 1].score.characters}
        assert tokens == {"aldar_kose_man", "rich_merchant"}  # a score per character


@pytest.mark.parametrize(("adapters", "busy", "spread"), [(["style"], False, False), ([], False, True),
                                                          (["style"], True, True)])  # fmt: skip
def test_frames_with_an_adapter_set_go_to_its_replica_while_it_has_room(services, tmp_path, adapters, busy, spread):
    replicas = [ScriptedRenderer(adapters=["style"], queue_depth=8 if busy else 0) for _ in range(2)]
    served = [serve_renderer(replica) for replica in replicas]
    addresses = ",".join(f"127.0.0.1:{port}" for _, port in served)
    gateway, port = _gateway({**services, "renderer": addresses}, tmp_path / "out", "validator_none")
    refs = [common_pb2.AdapterRef(name=name, weight=0.5) for name in adapters]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = storyboards_pb2_grpc.StoryboardsStub(channel)
            for _ in range(2):  # two storyboards with the same set
                assert _generate(stub, num_frames=6, adapters=refs)[-1].HasField("completed")
    finally:
        gateway.stop(0)
        for server, _ in served:
            server.stop(0)
    used = [len(replica.renders) for replica in replicas]
    assert sum(used) == 12
    assert (min(used) > 0) == spread, used  # one replica drew all of a set's frames, from both storyboards
