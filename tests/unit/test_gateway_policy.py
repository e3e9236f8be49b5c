"""The gateway's policy on in-process services: retries and the best attempt, regeneration, resume after a stop,
API keys and limits, CORS, bad input over REST and gRPC, cancel over REST, metrics and the OpenAPI document.

The real planner plans; scripted renderers and validators (tests/support/scripted.py) make rendering and scoring
whatever a test needs, and count what they were asked to do.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import grpc
import httpx
import pypdf
import pytest
import schemathesis

from gateway import service
from gateway.auth import ApiKeys, hash_key
from gateway.auth import main as auth_main
from gateway.decisions import frame_seed
from gateway.server import create_server as create_gateway
from gateway.settings import GatewaySettings
from services.planner.server import create_server as create_planner
from services.planner.settings import PlannerSettings
from storyboard.v1 import common_pb2, storyboards_pb2, storyboards_pb2_grpc
from storyboard_common.errors import Unauthenticated
from storyboard_common.settings import ServiceSettings
from tests.support.scripted import BlockingRenderer, ScriptedRenderer, ScriptedValidator, serve

STORY = "Aldar Kose tricks a wealthy merchant by selling him a magical pot at the bazaar, then rides home at sunset"
SPEC_JSON = {"story": STORY, "num_frames": 6, "num_inference_steps": 2, "width": 256, "height": 256}
ALICE, BOB = "sbk_alice-test-key-0123456789abcdef", "sbk_bob-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def planner():
    server, port = create_planner(PlannerSettings(port=0))
    server.start()
    assert server.ready.wait(60), server.not_ready_reason
    yield f"127.0.0.1:{port}"
    server.stop(0)


class Stack:
    """A gateway on in-process services, with gRPC and REST clients; stops everything it started."""

    def __init__(
        self, planner: str, outputs: Path, renderer=None, validator=None, renderer_settings=None, **settings
    ) -> None:
        """``renderer``: one servicer or a list of replicas (default: one ScriptedRenderer), each served with
        ``renderer_settings``."""
        self.renderers = renderer if isinstance(renderer, list) else [renderer or ScriptedRenderer()]
        self.renderer = self.renderers[0]
        self.validator = validator
        self._servers = [serve(replica, renderer_settings)[0] for replica in self.renderers]
        renderer_addresses = ",".join(f"127.0.0.1:{server.port}" for server in self._servers)
        validator_address = ""
        if validator is not None:
            server, port = serve(validator)
            self._servers.append(server)
            validator_address = f"127.0.0.1:{port}"
        self.outputs = outputs
        self.settings = GatewaySettings(
            port=0,
            http_port=0,
            planner=planner,
            renderers=renderer_addresses,
            validator=validator_address,
            outputs=outputs,
            **settings,
        )
        self.start_gateway()

    def start_gateway(self) -> None:
        self.gateway, port = create_gateway(self.settings)
        self.gateway.start()
        assert self.gateway.ready.wait(30), self.gateway.not_ready_reason
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = storyboards_pb2_grpc.StoryboardsStub(self.channel)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.gateway.endpoints['http']}", timeout=60)

    def stop_gateway(self) -> None:
        self.http.close()
        self.channel.close()
        self.gateway.stop(0)

    def stop(self) -> None:
        self.stop_gateway()
        for server in self._servers:
            server.stop(0)

    def generate(self, metadata=(), **fields) -> list[storyboards_pb2.StoryboardEvent]:
        spec = storyboards_pb2.StoryboardSpec(**{**SPEC_JSON, **fields})
        return list(self.stub.Generate(storyboards_pb2.GenerateRequest(spec=spec), timeout=60, metadata=metadata))

    def sse(self, job_id: str, last_event_id: int = 0, headers=None) -> list[tuple[int, str, dict]]:
        """Every server-sent event of a storyboard after ``last_event_id``, until it ends."""
        received, event_id, kind = [], 0, ""
        headers = {**(headers or {}), "Last-Event-ID": str(last_event_id)}
        with self.http.stream("GET", f"/v1/storyboards/{job_id}/events", headers=headers) as stream:
            assert stream.status_code == 200, stream.read()
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    event_id = int(line.removeprefix("id: "))
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    received.append((event_id, kind, json.loads(line.removeprefix("data: "))))
        return received


@pytest.fixture
def stacks(planner, tmp_path):
    started: list[Stack] = []

    def make(**options) -> Stack:
        stack = Stack(planner, tmp_path / f"outputs{len(started)}", **options)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()


def _of(events, kind):
    return [getattr(e, kind) for e in events if e.HasField(kind)]


def _folder(events) -> Path:
    return Path(events[-1].completed.storyboard.output_dir)


# -- retries --------------------------------------------------------------------------------------------------------


def test_a_frame_failing_validation_once_is_rendered_again_with_a_new_recorded_seed(stacks):
    stack = stacks(validator=ScriptedValidator({3: [0.4]}))
    events = stack.generate()
    assert events[-1].HasField("completed"), events[-1]
    new_seed = frame_seed(42, 3, 2)
    assert [(r.frame, r.attempt, r.seed) for r in _of(events, "retry")] == [(3, 2, new_seed)]
    assert [(r.attempt, r.seed) for r in _of(events, "frame_rendered") if r.frame == 3] == [(1, 44), (2, new_seed)]
    frame3 = events[-1].completed.storyboard.frames[2]
    assert (frame3.seed, list(frame3.seeds_tried), frame3.attempts) == (new_seed, [44, new_seed], 2)
    assert frame3.verdict == common_pb2.VERDICT_PASS
    assert sorted(stack.renderer.renders) == sorted([(n, 41 + n) for n in range(1, 7)] + [(3, new_seed)])

    folder = _folder(events)
    metadata = json.loads((folder / "frames.json").read_text())["frames"][2]
    assert metadata["kept_attempt"] == 2 and metadata["seed"] == new_seed
    assert [(a["seed"], a["verdict"], a["scores"]["consistency"]) for a in metadata["attempts"]] == [
        (44, "LOW_CONSISTENCY", 0.4),
        (new_seed, "PASS", 0.9),
    ]
    assert (folder / "frame_003.png").read_bytes() == (folder / metadata["attempts"][1]["file"]).read_bytes()
    report = json.loads((folder / "report.json").read_text())
    assert report["retries"] == 1 and report["attempts"] == 7
    assert report["thresholds"]["consistency"] == pytest.approx(0.7)
    assert report["consistency"]["min"] == pytest.approx(0.9) and report["consistency"]["frames_below_threshold"] == []
    assert report["validator_model"] == "scripted" and report["renderer_backends"] == ["scripted"]
    assert set(report["timings"]) >= {"planning_seconds", "rendering_seconds", "assembling_seconds", "total_seconds"}
    assert (folder / "storyboard.pdf").read_bytes().startswith(b"%PDF")
    # Each attempt scored on its own, then one repetition check over the kept frames, last, naming them by digest.
    # Frame 1's own call names it by digest alone too when another frame's call carried its bytes (as that frame's
    # reference) first: every image's bytes travel once.
    assert stack.validator.digest_only_calls[-1:] == [[1, 2, 3, 4, 5, 6]] == stack.validator.calls[-1:]
    assert stack.validator.digest_only_calls[:-1] in ([], [[1]])
    assert sorted(call for call in stack.validator.calls[:-1]) == [[1], [2], [3], [3], [4], [5], [6]]


def test_when_every_attempt_is_weak_the_best_one_is_kept(stacks):
    stack = stacks(validator=ScriptedValidator({3: [0.4, 0.6, 0.5]}))
    events = stack.generate()
    frame3 = events[-1].completed.storyboard.frames[2]
    assert frame3.attempts == 3 and frame3.seed == frame3.seeds_tried[1] == frame_seed(42, 3, 2)
    assert frame3.verdict == common_pb2.VERDICT_LOW_CONSISTENCY
    assert frame3.score.consistency == pytest.approx(0.6)
    report = json.loads((_folder(events) / "report.json").read_text())
    assert report["consistency"]["frames_below_threshold"] == [3] and report["retries"] == 2


def test_frame_one_is_never_rendered_again_it_is_the_reference(stacks):
    # Frame 1 is measured against itself, and the other frames are scored against its first attempt as soon as it
    # arrives: a second attempt would leave them scored against a picture that is not kept.
    stack = stacks(validator=ScriptedValidator({1: [0.4]}))
    events = stack.generate()
    assert events[-1].HasField("completed"), events[-1]
    assert not _of(events, "retry")
    frame1 = events[-1].completed.storyboard.frames[0]
    assert (frame1.attempts, frame1.seed) == (1, frame_seed(42, 1, 1))
    assert sorted(stack.renderer.renders) == sorted((n, 41 + n) for n in range(1, 7))


def test_replicas_are_asked_for_the_progress_interval_and_one_that_ignores_it_is_thinned_by_the_gateway(stacks):
    # The scripted renderer reports all 20 steps of a frame, 10 ms apart, whatever it is asked.
    renderer = ScriptedRenderer(delay=0.2)
    stack = stacks(renderer=renderer, progress_interval_seconds=0.4)
    events = stack.generate(num_frames=6, num_inference_steps=20)
    assert renderer.progress_intervals and set(renderer.progress_intervals) == {0.4}
    steps: dict[int, list[int]] = {}
    for progress in _of(events, "frame_progress"):
        steps.setdefault(progress.frame, []).append(progress.step)
    assert sorted(steps) == list(range(1, 7))
    frames = json.loads((_folder(events) / "frames.json").read_text())["frames"]
    for frame, reported in steps.items():
        # The first and last, and at most one per 0.2 s (half the interval) between, over the time the frame took
        # (~0.2 s, but longer on a busy machine): against 20 unthinned.
        seconds = frames[frame - 1]["timings"]["render_seconds"]
        assert reported[0] == 1 and reported[-1] == 20 and len(reported) <= 2 + seconds / 0.2, (reported, seconds)


# -- replicas -------------------------------------------------------------------------------------------------------


class LosesTheFirstCalls(ScriptedRenderer):
    """Goes away (UNAVAILABLE) after the first step of its first ``losses`` calls, as a replica that is stopped or
    restarted while at work on a frame."""

    def __init__(self, losses: int, **options) -> None:
        super().__init__(**options)
        self.losses = losses

    def Render(self, request, context):
        for event in super().Render(request, context):
            yield event
            with self._lock:
                lose, self.losses = self.losses > 0, self.losses - 1
            if lose:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the replica is going away")


class RecordsRequests(ScriptedRenderer):
    """Keeps every FrameSpec it is sent."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.specs: list = []

    def Render(self, request, context):
        with self._lock:
            self.specs.extend(request.frames)
        yield from super().Render(request, context)


def test_a_deterministic_storyboard_asks_the_renderers_for_frames_rendered_alone(stacks):
    renderer = RecordsRequests()
    stack = stacks(renderer=renderer)
    created = stack.http.post("/v1/storyboards", json={"spec": {**SPEC_JSON, "deterministic": True}})
    assert created.status_code == 202 and created.json()["spec"]["deterministic"] is True
    assert stack.sse(created.json()["id"])[-1][1] == "completed"
    assert len(renderer.specs) == 6 and all(spec.deterministic for spec in renderer.specs)
    stack.generate()  # not asked for: frames may be batched
    assert len(renderer.specs) == 12 and not any(spec.deterministic for spec in renderer.specs[6:])


def test_a_render_longer_than_the_replicas_connection_age_is_never_cut(stacks):
    # The replica ends connections a second after they open; each frame takes four. Calls already open on an aged
    # connection go on until they end, so every frame is rendered once, on its first call.
    aged_quickly = ServiceSettings(port=0, max_connection_age_seconds=1, grace_seconds=0)
    stack = stacks(renderer=ScriptedRenderer(delay=4), renderer_settings=aged_quickly, render_unavailable_retries=0)
    events = stack.generate()
    assert events[-1].HasField("completed"), events[-1]
    assert sorted(stack.renderer.renders) == sorted((n, 41 + n) for n in range(1, 7))


def test_renders_lost_while_at_work_are_sent_again_without_spending_the_retries(stacks):
    # Eight losses on the way, where no retry is allowed for a render that no replica took up.
    stack = stacks(renderer=LosesTheFirstCalls(losses=8), render_unavailable_retries=0)
    events = stack.generate()
    assert events[-1].HasField("completed"), events[-1]
    assert not _of(events, "retry")  # losses are not attempts: every frame keeps its first seed
    assert sorted(stack.renderer.renders) == sorted((n, 41 + n) for n in range(1, 7))


def test_a_frame_that_takes_every_replica_down_fails_the_storyboard_instead_of_looping(stacks):
    stack = stacks(renderer=LosesTheFirstCalls(losses=1000), render_unavailable_retries=0)
    events = stack.generate()
    assert events[-1].HasField("failed") and events[-1].failed.code == "UNAVAILABLE", events[-1]


def test_the_first_storyboard_after_start_is_spread_evenly_over_the_replicas(stacks):
    replicas = [ScriptedRenderer(delay=0.3) for _ in range(3)]
    stack = stacks(renderer=replicas)
    events = stack.generate()  # at once: the gateway has just said it is ready
    assert events[-1].HasField("completed"), events[-1]
    assert [len(replica.renders) for replica in replicas] == [2, 2, 2]


# -- regeneration ---------------------------------------------------------------------------------------------------


def test_regenerate_renders_one_frame_again_with_a_new_seed_and_prompt(stacks):
    renderer = ScriptedRenderer(delay=0.05, held_from=2)
    renderer.release.set()
    stack = stacks(renderer=renderer, validator=ScriptedValidator())
    created = stack.http.post("/v1/storyboards", json={"spec": SPEC_JSON})
    assert created.status_code == 202
    job_id = created.json()["id"]
    first = stack.sse(job_id)
    assert first[-1][1] == "completed"

    renderer.release.clear()  # the regeneration is held in flight until the second request is answered
    response = stack.http.post(f"/v1/storyboards/{job_id}/frames/2:regenerate", json={"prompt": "a brand new prompt"})
    assert response.status_code == 202 and response.json()["state"] == "STORYBOARD_STATE_QUEUED"
    busy = stack.http.post(f"/v1/storyboards/{job_id}/frames/3:regenerate")
    assert busy.status_code == 400 and busy.json()["error"]["code"] == "FAILED_PRECONDITION"
    renderer.release.set()
    later = stack.sse(job_id, last_event_id=first[-1][0])
    kinds = [kind for _, kind, _ in later]
    assert kinds[0] == "retry" and kinds[-1] == "completed" and "frame_rendered" in kinds
    assert later[0][2]["retry"] == {"frame": 2, "attempt": 2, "seed": str(frame_seed(42, 2, 2)),
                                    "reason": "regeneration requested"}  # fmt: skip
    assert later[0][0] == first[-1][0] + 1  # the numbering goes on

    storyboard = stack.http.get(f"/v1/storyboards/{job_id}").json()
    frame2 = storyboard["frames"][1]
    assert frame2["seed"] == str(frame_seed(42, 2, 2)) and frame2["attempts"] == 2 and frame2["rendered"]
    assert storyboard["plan"]["scenes"][1]["prompt"] == "a brand new prompt"
    folder = Path(storyboard["output_dir"])
    assert json.loads((folder / "sdxl_prompts.json").read_text())[1] == "a brand new prompt"
    metadata = json.loads((folder / "frames.json").read_text())["frames"][1]
    assert metadata["kept_attempt"] == 2 and metadata["prompt"] == "a brand new prompt"
    assert stack.renderer.renders.count((2, frame_seed(42, 2, 2))) == 1
    assert len(stack.renderer.renders) == 7  # no other frame was drawn again

    chosen = stack.http.post(f"/v1/storyboards/{job_id}/frames/2:regenerate", json={"seed": 7})
    assert chosen.status_code == 202
    assert stack.sse(job_id, last_event_id=later[-1][0])[-1][1] == "completed"
    assert stack.http.get(f"/v1/storyboards/{job_id}").json()["frames"][1]["seed"] == "7"
    assert stack.http.get(f"/v1/storyboards/{job_id}/frames/2").status_code == 200


def test_a_regenerated_prompt_is_what_the_frame_shows_and_the_storyboard_still_counts_as_one(stacks):
    renderer = RecordsRequests()
    stack = stacks(renderer=renderer)
    job_id = stack.generate()[-1].storyboard_id
    answer = stack.http.post(f"/v1/storyboards/{job_id}/frames/2:regenerate", json={"prompt": "a camel at a well"})
    assert answer.status_code == 202
    assert stack.sse(job_id)[-1][1] == "completed"
    assert renderer.specs[-1].frame == 2 and renderer.specs[-1].scene.description == "a camel at a well"
    scene = stack.http.get(f"/v1/storyboards/{job_id}").json()["plan"]["scenes"][1]
    assert scene["prompt"] == scene["description"] == "a camel at a well"  # the caption says what is drawn
    folder = Path(stack.http.get(f"/v1/storyboards/{job_id}").json()["output_dir"])
    words = "\n".join(page.extract_text() for page in pypdf.PdfReader(folder / "storyboard.pdf").pages)
    assert "a camel at a well" in words
    metrics = stack.http.get("/metrics").text
    assert 'storyboard_gateway_storyboards_total{state="completed"} 1.0' in metrics
    assert 'storyboard_gateway_retries_total{reason="regenerate"} 1.0' in metrics


def test_the_renderers_are_sent_scenes_that_name_the_characters_not_their_tokens(tmp_path):
    registry = Path(__file__).resolve().parents[2] / "examples" / "characters.toml"
    planner, port = create_planner(PlannerSettings(port=0, characters_file=registry))
    planner.start()
    renderer = RecordsRequests()
    try:
        assert planner.ready.wait(60), planner.not_ready_reason
        stack = Stack(f"127.0.0.1:{port}", tmp_path / "outputs", renderer=renderer)
        try:
            assert stack.generate()[-1].HasField("completed")
        finally:
            stack.stop()
    finally:
        planner.stop(0)
    descriptions = [spec.scene.description for spec in renderer.specs]
    assert any("Aldar Kose" in text for text in descriptions), descriptions  # a sketch panel prints it
    assert not any("aldar_kose_man" in text for text in descriptions)
    assert all(spec.prompt.startswith("aldar_kose_man") for spec in renderer.specs)  # prompts keep the token


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("frames/0:regenerate", {}, "frame"),
        ("frames/7:regenerate", {}, "frame"),
        ("frames/1:regenerate", {"seed": -1}, "seed"),
        ("frames/1:regenerate", {"prompt": " "}, "prompt"),
        ("frames/1:regenerate", {"prompt": "x" * 1001}, "prompt"),
        ("frames/1:regenerate", {"colour": "red"}, "colour"),
    ],
)
def test_bad_regeneration_requests_name_the_field(completed_job, path, body, field):
    stack, job_id = completed_job
    response = stack.http.post(f"/v1/storyboards/{job_id}/{path}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(field)


# -- resume ---------------------------------------------------------------------------------------------------------


def test_a_gateway_stopped_mid_job_resumes_it_without_rendering_kept_frames_again(stacks):
    stack = stacks(renderer=ScriptedRenderer(delay=0.3, held_from=5), frames_in_flight=2)
    created = stack.stub.Create(
        storyboards_pb2.CreateRequest(spec=storyboards_pb2.StoryboardSpec(**SPEC_JSON), idempotency_key="resume-me"),
        timeout=10,
    )
    folder = Path(created.output_dir)
    deadline = time.monotonic() + 30
    while len(list(folder.glob("frame_*.png"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stack.stop_gateway()
    kept_before = sorted(int(p.stem[-3:]) for p in folder.glob("frame_*.png"))
    assert 2 <= len(kept_before) <= 4  # frames 5 and 6 are held in flight
    renders_before = list(stack.renderer.renders)

    stack.renderer.release.set()
    stack.start_gateway()
    again = stack.stub.Create(
        storyboards_pb2.CreateRequest(spec=storyboards_pb2.StoryboardSpec(**SPEC_JSON), idempotency_key="resume-me"),
        timeout=10,
    )
    assert again.id == created.id  # the idempotency key outlived the restart
    events = list(stack.stub.Watch(storyboards_pb2.WatchRequest(id=created.id), timeout=60))
    assert events[-1].HasField("completed"), events[-1]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.sequence for e in stack.stub.Watch(storyboards_pb2.WatchRequest(id=created.id, after_sequence=5))] == [
        e.sequence for e in events[5:]
    ]
    renders_after = stack.renderer.renders[len(renders_before) :]
    assert not {frame for frame, _ in renders_after} & set(kept_before)
    assert sorted(int(p.stem[-3:]) for p in folder.glob("frame_*.png")) == list(range(1, 7))
    report = json.loads((folder / "report.json").read_text())
    assert report["timings"]["rendering_seconds"] > 0


# -- API keys, limits, CORS -----------------------------------------------------------------------------------------


@pytest.fixture
def secured(stacks):
    keys = f"alice:{hash_key(ALICE)}:1,bob:{hash_key(BOB)}"
    return stacks(renderer=BlockingRenderer(), auth="required", api_keys=keys, cors_origins="https://app.example.com",
                  max_queued_per_key=0)  # fmt: skip


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_calls_without_a_valid_key_are_refused_and_the_key_is_never_echoed(secured, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sbk_not-a-key-SECRETSECRET"
    for headers in ({}, _bearer(wrong), {"Authorization": f"Basic {wrong}"}):
        response = secured.http.post("/v1/storyboards", json={"spec": SPEC_JSON}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
        assert response.headers["www-authenticate"] == "Bearer" and wrong not in response.text
        assert secured.http.get("/v1/storyboards", headers=headers).status_code == 401
    for metadata in ((), (("authorization", f"Bearer {wrong}"),)):
        with pytest.raises(grpc.RpcError) as caught:
            secured.stub.List(storyboards_pb2.ListRequest(), timeout=5, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED and wrong not in caught.value.details()
    assert secured.http.get("/healthz").status_code == 200 and secured.http.get("/metrics").status_code == 200
    assert wrong not in caplog.text and ALICE not in caplog.text


def test_each_key_has_its_own_storyboards_and_a_limit(secured):
    alice, bob = _bearer(ALICE), _bearer(BOB)
    first = secured.http.post("/v1/storyboards", json={"spec": SPEC_JSON, "idempotency_key": "one"}, headers=alice)
    assert first.status_code == 202
    job_id = first.json()["id"]
    over = secured.http.post("/v1/storyboards", json={"spec": SPEC_JSON}, headers=alice)
    assert over.status_code == 429 and over.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    with pytest.raises(grpc.RpcError) as caught:
        secured.stub.Create(
            storyboards_pb2.CreateRequest(spec=storyboards_pb2.StoryboardSpec(**SPEC_JSON)),
            timeout=5,
            metadata=(("authorization", f"Bearer {ALICE}"),),
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retried = secured.http.post("/v1/storyboards", json={"spec": SPEC_JSON, "idempotency_key": "one"}, headers=alice)
    assert retried.status_code == 202 and retried.json()["id"] == job_id  # a retry is not a new storyboard

    assert secured.http.get(f"/v1/storyboards/{job_id}", headers=bob).status_code == 404
    assert secured.http.get("/v1/storyboards", headers=bob).json() == {}
    with pytest.raises(grpc.RpcError) as caught:
        secured.stub.Get(
            storyboards_pb2.GetRequest(id=job_id), timeout=5, metadata=(("authorization", f"Bearer {BOB}"),)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert secured.http.post(f"/v1/storyboards/{job_id}:cancel", headers=bob).status_code == 404
    others = secured.http.get(f"/v1/storyboards/{job_id}/animatic.mp4", headers=bob)
    assert others.status_code == 404 and others.json()["error"]["message"] == f"no storyboard with id {job_id}"
    unfinished = secured.http.get(f"/v1/storyboards/{job_id}/animatic.mp4", headers=alice)
    assert unfinished.status_code == 404
    assert unfinished.json()["error"]["message"].endswith("its exports are made once it has completed")

    assert secured.http.post(f"/v1/storyboards/{job_id}:cancel", headers=alice).status_code == 200
    assert secured.http.post("/v1/storyboards", json={"spec": SPEC_JSON}, headers=alice).status_code == 202


def test_cors_allows_only_listed_origins_and_never_credentials(secured):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = secured.http.options("/v1/storyboards", headers={"Origin": "https://app.example.com", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-credentials" not in allowed.headers
    other = secured.http.options("/v1/storyboards", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"host": "0.0.0.0"}, "API keys are required"),
        ({"auth": "required"}, "API keys are required"),
        ({"host": "0.0.0.0", "auth": "optional", "api_keys": f"a:{'0' * 64}"}, "only allowed on loopback"),
        ({"api_keys": "alice:sbk_the-raw-key-by-mistake"}, "entry 1 is not NAME:SHA256HEX"),
        ({"cors_origins": "*"}, "no wildcards"),
        ({"tls_cert": __file__}, "go together"),
    ],
)
def test_unsafe_settings_stop_the_start(settings, problem):
    with pytest.raises(ValueError, match=problem) as caught:
        GatewaySettings(planner="127.0.0.1:1", renderers="127.0.0.1:2", **settings)
    assert "sbk_the-raw-key" not in str(caught.value).split("[type=")[0]


def test_beyond_loopback_with_keys_is_allowed_and_requires_them():
    settings = GatewaySettings(planner="a:1", renderers="b:2", host="0.0.0.0", api_keys=f"alice:{hash_key(ALICE)}")
    assert settings.auth_required
    keys = settings.api_key_set()
    assert keys.authenticate(f"Bearer {ALICE}").owner == "alice"
    with pytest.raises(Unauthenticated):
        keys.authenticate(None)
    loopback = GatewaySettings(planner="a:1", renderers="b:2", api_keys=f"alice:{hash_key(ALICE)}")
    assert not loopback.auth_required and loopback.api_key_set().authenticate(None).owner == ""


def test_without_configured_keys_on_loopback_a_presented_key_is_ignored(plain):
    assert plain.http.get("/v1/storyboards", headers=_bearer("sbk_anything")).status_code == 200


def test_the_key_tool_prints_a_new_key_once_and_its_entry(capsys):
    assert auth_main(["new", "carol"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[0].rsplit(" ", 1)[1]
    entry = lines[1].rsplit(" ", 1)[1]
    assert entry == f"carol:{hash_key(key)}" and key.startswith("sbk_") and len(key) > 40
    keys = ApiKeys.from_config(entry, None, required=True, default_max_active=3)
    assert keys.authenticate(f"Bearer {key}").max_active == 3


# -- bad input over both faces --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(planner, tmp_path_factory):
    stack = Stack(planner, tmp_path_factory.mktemp("plain"), renderer=ScriptedRenderer(adapters=["ink-style"]))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def completed_job(plain):
    job_id = plain.http.post("/v1/storyboards", json={"spec": SPEC_JSON}).json()["id"]
    assert plain.sse(job_id)[-1][1] == "completed"
    return plain, job_id


BAD_SPECS = [
    ({"story": ""}, "spec.story"),
    ({"story": "x" * 4001}, "spec.story"),
    ({"story": "bad \x00 byte"}, "spec.story"),
    ({"num_frames": 5}, "spec.num_frames"),
    ({"num_frames": 11}, "spec.num_frames"),
    ({"base_seed": -1}, "spec.base_seed"),
    ({"num_inference_steps": 0}, "spec.num_inference_steps"),
    ({"num_inference_steps": 151}, "spec.num_inference_steps"),
    ({"guidance_scale": 31.0}, "spec.guidance_scale"),
    ({"width": 100}, "spec.width"),
    ({"height": 1001}, "spec.height"),
    ({"temperature": 1.5}, "spec.temperature"),
    ({"characters": ["../../etc/passwd"]}, "spec.characters[0]"),
    ({"characters": [f"c{n}" for n in range(9)]}, "spec.characters"),
    ({"adapters": [{"name": "no-such-adapter", "weight": 1.0}]}, "spec.adapters[0].name"),
    ({"adapters": [{"name": "ink-style", "weight": 9.0}]}, "spec.adapters[0].weight"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_SPECS)
def test_bad_specs_are_400_over_rest_and_invalid_argument_over_grpc_naming_the_field(plain, fields, field):
    spec = {**SPEC_JSON, **fields}
    for path, body in (("/v1/storyboards", {"spec": spec}), ("/v1/plan", {"spec": spec})):
        response = plain.http.post(path, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"].startswith(field), response.text
    message = storyboards_pb2.StoryboardSpec(**spec)
    for call in (
        lambda: plain.stub.Create(storyboards_pb2.CreateRequest(spec=message), timeout=10),
        lambda: list(plain.stub.Generate(storyboards_pb2.GenerateRequest(spec=message), timeout=10)),
        lambda: plain.stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=message), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/storyboards", {"spec": {**SPEC_JSON, "num_frames": "six"}}, "spec.num_frames"),
        ("POST", "/v1/storyboards", {"spec": {**SPEC_JSON, "colour": "red"}}, "spec.colour"),
        ("POST", "/v1/storyboards", {}, "spec"),
        ("POST", "/v1/storyboards", {"spec": SPEC_JSON, "idempotency_key": "k" * 129}, "idempotency_key"),
        ("POST", "/v1/storyboards", {"spec": {**SPEC_JSON, "story": "x" * 70_000}}, "body"),
        ("GET", "/v1/storyboards?page_size=500", None, "page_size"),
        ("GET", "/v1/storyboards?page_size=ten", None, "page_size"),
        ("GET", "/v1/storyboards/not-an-id", None, "id"),
        ("GET", "/v1/storyboards/{job}/events?after=-1", None, "after"),
        ("GET", "/v1/storyboards/{job}/frames/0", None, "frame"),
    ],
)
def test_malformed_rest_requests_are_400_naming_the_field(completed_job, method, path, body, field):
    stack, job_id = completed_job
    response = stack.http.request(method, path.format(job=job_id), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(field), response.text


def test_unknown_storyboards_and_files_are_404(completed_job):
    stack, job_id = completed_job
    assert stack.http.get("/v1/storyboards/20990101-000000-00000000").status_code == 404
    assert stack.http.get("/v1/storyboards/20990101-000000-00000000/storyboard.pdf").status_code == 404
    for name, media_type in (("storyboard.pdf", "application/pdf"), ("report.json", "application/json"),
                             ("frames.json", "application/json"), ("grid.png", "image/png")):  # fmt: skip
        response = stack.http.get(f"/v1/storyboards/{job_id}/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    assert stack.http.get(f"/v1/storyboards/{job_id}/storyboard.pdf").content.startswith(b"%PDF")


def test_not_json_at_all_is_400(plain):
    response = plain.http.post("/v1/storyboards", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("body")


def test_an_unknown_character_is_invalid_argument_naming_spec_characters(plain):
    spec = {**SPEC_JSON, "characters": ["Nobody Known"]}
    response = plain.http.post("/v1/plan", json={"spec": spec})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("spec.characters")
    with pytest.raises(grpc.RpcError) as caught:
        plain.stub.Plan(storyboards_pb2.StoryboardsPlanRequest(spec=storyboards_pb2.StoryboardSpec(**spec)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Creating one is refused at the edge too: the gateway asks the planner for its characters (ListCharacters).
    response = plain.http.post("/v1/storyboards", json={"spec": spec})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("spec.characters[0]")


def test_a_known_adapter_is_accepted(plain):
    events = plain.generate(adapters=[common_pb2.AdapterRef(name="ink-style", weight=0.8)])
    assert events[-1].HasField("completed")


# -- cancel, metrics, OpenAPI ---------------------------------------------------------------------------------------


def test_cancel_over_rest_stops_the_renders(stacks):
    stack = stacks(renderer=BlockingRenderer())
    job_id = stack.http.post("/v1/storyboards", json={"spec": SPEC_JSON}).json()["id"]
    assert stack.renderer.started.wait(10)
    cancelled = stack.http.post(f"/v1/storyboards/{job_id}:cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "STORYBOARD_STATE_CANCELLED" and cancelled.json()["cancel_requested"]
    assert stack.renderer.cancelled.wait(10)
    events = stack.sse(job_id)
    assert events[-1][1] == "failed" and events[-1][2]["failed"]["code"] == "CANCELLED"
    assert stack.http.get(f"/v1/storyboards/{job_id}").json()["state"] == "STORYBOARD_STATE_CANCELLED"


def test_a_cancel_that_takes_longer_answers_with_the_storyboard_as_cancelling(stacks, monkeypatch):
    monkeypatch.setattr(service, "CANCEL_WAIT_SECONDS", 0.0)  # as if its work took longer to stop than Cancel waits
    stack = stacks(renderer=BlockingRenderer())
    job_id = stack.http.post("/v1/storyboards", json={"spec": SPEC_JSON}).json()["id"]
    assert stack.renderer.started.wait(10)
    cancelling = stack.stub.Cancel(storyboards_pb2.CancelRequest(id=job_id), timeout=10)
    assert cancelling.cancel_requested and cancelling.state == storyboards_pb2.STORYBOARD_STATE_RENDERING
    assert stack.sse(job_id)[-1][2]["failed"]["code"] == "CANCELLED"
    ended = stack.stub.Get(storyboards_pb2.GetRequest(id=job_id), timeout=10)
    assert ended.state == storyboards_pb2.STORYBOARD_STATE_CANCELLED and ended.cancel_requested


def test_metrics_count_requests_stages_frames_retries_and_the_queue(stacks):
    stack = stacks(validator=ScriptedValidator({2: [0.1]}))
    stack.generate()
    stack.http.get("/v1/storyboards")
    completed = 'storyboard_gateway_storyboards_total{state="completed"} 1.0'
    # The storyboard is counted just after its Completed event is out, which the client may see first.
    deadline = time.monotonic() + 10
    while completed not in (text := stack.http.get("/metrics").text) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 'storyboard_gateway_requests_total{code="OK",face="grpc",method="Generate"} 1.0' in text
    assert 'storyboard_gateway_requests_total{code="200",face="rest",method="GET /v1/storyboards"} 1.0' in text
    assert 'storyboard_gateway_stage_seconds_count{stage="render"} 7.0' in text
    assert 'storyboard_gateway_stage_seconds_count{stage="plan"} 1.0' in text
    assert 'storyboard_gateway_frames_total{outcome="kept"} 6.0' in text
    assert 'storyboard_gateway_retries_total{reason="low_consistency"} 1.0' in text
    assert completed in text
    assert "storyboard_gateway_queue_depth 0.0" in text


ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize(("page", "kinds"), [("/docs", {".js", ".css", ".png"}), ("/redoc", {".js", ".png"})])
def test_the_docs_pages_load_their_scripts_and_styles_from_the_gateway_itself(plain, page, kinds):
    response = plain.http.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "://" not in html and "cdn" not in html.lower(), "no asset from another host: the page works offline"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {Path(asset).suffix for asset in assets} == kinds
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        served = plain.http.get(asset)
        assert served.status_code == 200 and served.content, asset
        assert served.headers["content-type"].startswith(ASSET_TYPES[Path(asset).suffix]), served.headers
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    paths = plain.http.get("/openapi.json").json()["paths"]
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values()), "the bridge's document"


def test_the_openapi_document_describes_every_route_and_body(plain):
    document = plain.http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert {
        ("POST", "/v1/storyboards"),
        ("GET", "/v1/storyboards/{job_id}/events"),
        ("POST", "/v1/storyboards/{job_id}/frames/{frame}:regenerate"),
        ("GET", "/v1/storyboards/{job_id}/storyboard.pdf"),
        ("GET", "/metrics"),
    } <= operations
    components = document["components"]["schemas"]
    spec = components["StoryboardSpecIn"]["properties"]
    assert spec["num_frames"]["maximum"] == 10 and "story" in spec and "plan" in spec
    assert "required" not in components["StoryboardSpecIn"]  # a story, or a plan to render instead
    assert components["PlanIn"]["properties"]["scenes"]["minItems"] == 6 and components["SceneIn"]["required"] == [
        "description"
    ]
    assert document["paths"]["/v1/storyboards"]["post"]["responses"]["202"]["content"]["application/json"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    documented = [set(op["responses"]) for ops in document["paths"].values() for op in ops.values()]
    assert all("422" not in codes for codes in documented)  # bad requests are answered 400, as documented
    assert "400" in document["paths"]["/v1/storyboards/{job_id}/frames/{frame}:regenerate"]["post"]["responses"]


# -- waiting for a turn ---------------------------------------------------------------------------------------------


def test_storyboards_beyond_a_keys_limit_wait_in_line_told_their_place_and_all_complete(stacks):
    stack = stacks(max_active_per_key=2, max_queued_per_key=100)
    created = [
        stack.stub.Create(storyboards_pb2.CreateRequest(spec=storyboards_pb2.StoryboardSpec(**SPEC_JSON)), timeout=10)
        for _ in range(40)
    ]
    last = created[-1].id
    waiting = stack.stub.Get(storyboards_pb2.GetRequest(id=last), timeout=10)
    assert waiting.state == storyboards_pb2.STORYBOARD_STATE_QUEUED and 1 <= waiting.queue_position <= 38
    followed = {}
    for storyboard in created:
        followed[storyboard.id] = list(stack.stub.Watch(storyboards_pb2.WatchRequest(id=storyboard.id), timeout=120))
    assert all(events[-1].HasField("completed") for events in followed.values())
    places = [event.queued.position for event in followed[last] if event.HasField("queued")]
    assert places and places == sorted(places, reverse=True) and places[-1] == 1, places  # it moves up to the front
    assert not any(event.HasField("queued") for event in followed[created[0].id])  # the first never waited
    assert stack.stub.Get(storyboards_pb2.GetRequest(id=last), timeout=10).queue_position == 0


def test_only_a_full_line_refuses_naming_the_limit(stacks):
    stack = stacks(renderer=BlockingRenderer(), max_active_per_key=1, max_queued_per_key=2)
    for _ in range(3):  # one at work, two waiting
        assert stack.http.post("/v1/storyboards", json={"spec": SPEC_JSON}).status_code == 202
    full = stack.http.post("/v1/storyboards", json={"spec": SPEC_JSON})
    assert full.status_code == 429 and full.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert "3 unfinished storyboards, at work or waiting (the limit is 3)" in full.json()["error"]["message"]
