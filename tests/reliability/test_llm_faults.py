"""LLM faults: the planner (``--backend openai``) talks to a local OpenAI-compatible server (tests/support/
fake_openai.py) that answers with 429 storms, 5xx, hangs and garbage. Each storyboard ends within its deadline with
a clear error (a specific code and a message naming the model's fault; never INTERNAL or UNKNOWN), the REST dry run
answers a 4xx or 503/504 with the same kind of message (never 500), no process crashes and no job is left unfinished.
A storm that clears up within the planner's retries, and a good reply after all the faults, complete.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc
from tests.reliability.checks import watch_to_end
from tests.reliability.conftest import Tally
from tests.support.fake_openai import FakeOpenAI, Reply, error_reply, plan_reply
from tests.support.processes import ROOT, ProcessGroup, ServiceProcess
from tests.unit.test_planner_openai import GOOD_PLAN, STORY

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(300)]
SCENARIO = "LLM faults (OpenAI-compatible server)"
PLANNER_TIMEOUT, PLANNER_RETRIES, GATEWAY_PLAN_TIMEOUT = 2.0, 2, 8.0
DEADLINE = GATEWAY_PLAN_TIMEOUT + 7  # a storyboard must have ended by then, whatever the model did
CLEAN_CODES = {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION", "UNAUTHENTICATED"}
CLEAN_HTTP = {400, 401, 429, 503, 504}

FAULTS: dict[str, list[Reply]] = {
    "429 storm": [error_reply(429, "Rate limit reached for requests", code="rate_limit_exceeded")],
    "429 with Retry-After: 3600": [error_reply(429, "slow down", headers={"retry-after": "3600"})],
    "429 insufficient_quota": [error_reply(429, "You exceeded your current quota", code="insufficient_quota")],
    "500s": [error_reply(500, "The server had an error while processing your request")],
    "502 with a non-OpenAI body": [Reply(status=502, body={"html": "<html><body>Bad Gateway</body></html>"})],
    "503 overloaded": [error_reply(503, "The engine is currently overloaded")],
    "hang (longer than every timeout)": [Reply(delay_seconds=120, content="{}")],
    "garbage text": [plan_reply("Sure! Here is your storyboard: frame one, a fox... {{{ not json")],
    "JSON of the wrong shape": [plan_reply({"frames": "none", "scenes": 7})],
    "truncated JSON": [plan_reply('{"scenes": [{"frame": 1, "description": "aldar_kose_man rid')],
    "empty content": [Reply(content="")],
    "not a chat completion": [Reply(body={"unexpected": True, "choices": "no"})],
    "choices of the wrong shape": [Reply(body={"choices": ["a", 1, None], "model": "fake"})],
    "a message without content": [Reply(body={"choices": [{"index": 0, "message": None}]})],
    "content that is not text": [Reply(body={"choices": [{"index": 0, "message": {"content": {"scenes": []}}}]})],
    "a 2 MB reply": [plan_reply("x" * 2_000_000)],
    "401 bad key": [error_reply(401, "Incorrect API key provided", code="invalid_api_key")],
}
RECOVERIES: dict[str, list[Reply]] = {
    "500, 429, then a good plan": [error_reply(500), error_reply(429), plan_reply(GOOD_PLAN)],
    "a good plan after all the faults": [plan_reply(GOOD_PLAN)],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("llm-faults")
    key_file = folder / "openai_api_key"
    key_file.write_text("sk-reliability-test-key")
    with FakeOpenAI() as fake, ProcessGroup(folder / "logs") as group:
        planner = group.planner(
            "--backend", "openai", "--openai-base-url", fake.base_url, "--openai-api-key-file", str(key_file),
            "--characters-file", str(ROOT / "examples" / "characters.toml"),
            "--request-timeout-seconds", str(PLANNER_TIMEOUT), "--max-retries", str(PLANNER_RETRIES),
            "--feedback-rounds", "1",
        )  # fmt: skip
        renderer = group.sketch_renderer()
        gateway = group.gateway(planner.address, renderer.address, folder / "outputs",
                                "--plan-timeout-seconds", str(GATEWAY_PLAN_TIMEOUT))  # fmt: skip
        yield {"fake": fake, "planner": planner, "renderer": renderer, "gateway": gateway}


def _script(fake: FakeOpenAI, replies: list[Reply]) -> None:
    """Answer with ``replies`` in order, the last one for good."""
    with fake._lock:
        fake._script.clear()
    fake.add(*replies[:-1])
    fake.default = replies[-1]


def _storyboard(gateway: ServiceProcess) -> tuple[list[storyboards_pb2.StoryboardEvent], float]:
    spec = storyboards_pb2.StoryboardSpec(story=STORY, num_frames=6, num_inference_steps=2, width=256, height=256)
    started = time.monotonic()
    with grpc.insecure_channel(gateway.address) as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        created = stub.Create(storyboards_pb2.CreateRequest(spec=spec), timeout=10)
        events = watch_to_end(stub, created.id, timeout=DEADLINE + 30)
    return events, time.monotonic() - started


def _dry_run(gateway: ServiceProcess) -> tuple[int, dict, float]:
    started = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=DEADLINE + 30) as http:
        response = http.post("/v1/plan", json={"spec": {"story": STORY, "num_frames": 6}})
    return response.status_code, response.json(), time.monotonic() - started


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_model_fault_ends_the_storyboard_cleanly_within_its_deadline(stack, tally: Tally, fault: str):
    _script(stack["fake"], FAULTS[fault])
    events, seconds = _storyboard(stack["gateway"])
    last = events[-1] if events else None
    problems = []
    if last is None or not last.HasField("failed"):
        problems.append(f"did not fail cleanly: {last}")
    else:
        if last.failed.code not in CLEAN_CODES:
            problems.append(f"code {last.failed.code}: {last.failed.message}")
        if len(last.failed.message) < 10:
            problems.append(f"no clear message: {last.failed.message!r}")
    if seconds > DEADLINE:
        problems.append(f"took {seconds:.1f} s, the deadline is {DEADLINE:.0f} s")
    status, body, dry_seconds = _dry_run(stack["gateway"])
    if status not in CLEAN_HTTP or not body.get("error", {}).get("message"):
        problems.append(f"dry run answered {status} {body}")
    if dry_seconds > DEADLINE:
        problems.append(f"dry run took {dry_seconds:.1f} s")
    for name in ("planner", "gateway"):
        if not stack[name].alive():
            problems.append(f"the {name} process died: {stack[name].log_tail()}")
    tally.record(SCENARIO, "lost" if problems else "refused", f"{fault}: {problems}")
    assert not problems, problems


@pytest.mark.parametrize("recovery", list(RECOVERIES))
def test_the_planner_recovers_when_the_model_answers_well_again(stack, tally: Tally, recovery: str):
    _script(stack["fake"], RECOVERIES[recovery])
    events, _ = _storyboard(stack["gateway"])
    completed = bool(events) and events[-1].HasField("completed")
    tally.record(SCENARIO, "completed" if completed else "lost", f"{recovery}: {events[-1] if events else None}")
    assert completed, events[-1] if events else "no events"


def test_no_storyboard_is_left_unfinished_after_the_faults(stack):
    with grpc.insecure_channel(stack["gateway"].address) as channel:
        listed = storyboards_pb2_grpc.StoryboardsStub(channel).List(
            storyboards_pb2.ListRequest(page_size=100), timeout=10
        )
    terminal = {storyboards_pb2.STORYBOARD_STATE_COMPLETED, storyboards_pb2.STORYBOARD_STATE_FAILED}
    stuck = [s.id for s in listed.storyboards if s.state not in terminal]
    assert listed.storyboards and not stuck, stuck
