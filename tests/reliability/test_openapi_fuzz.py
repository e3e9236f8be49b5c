"""schemathesis against the gateway's own OpenAPI document (/openapi.json), on loopback: generated requests for every
operation (schema examples, boundary "coverage" cases, random fuzzing, and stateful sequences that follow the
document's links), checked for no 5xx and for responses that keep to the document (status codes, content types,
bodies). Two passes: any ids, then every id fixed to a storyboard that exists and has completed, so that the
routes behind an id (frames, files, events, regenerate, cancel) are reached with real data.

Bounded: ``--max-examples`` per operation and ``--max-time`` per pass. The renderer takes 600 s a frame, so the
storyboards the fuzzer creates stay unfinished (and beyond the per-caller limit creates get 429) instead of keeping
the CPU busy; the completed storyboard was made beforehand by a gateway on the same job store with a fast renderer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.checks import wait_for
from tests.reliability.conftest import Tally
from tests.support.processes import ProcessGroup

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(300)]
SCENARIO = "schemathesis on /openapi.json (cases)"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
STORY = "A fox crosses a frozen river at dawn to reach its den before the storm."


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("openapi-fuzz")
    store = ["--job-store", str(folder / "jobs.sqlite3")]
    with ProcessGroup(folder / "logs") as group:
        planner = group.planner()
        fast = group.scripted_renderer()
        first = group.gateway(planner.address, fast.address, folder / "outputs", *store)
        with httpx.Client(base_url=f"http://127.0.0.1:{first.http_port}", timeout=30) as http:
            spec = {"story": STORY, "num_frames": 6, "num_inference_steps": 2, "width": 256, "height": 256}
            done = http.post("/v1/storyboards", json={"spec": spec}).json()["id"]
            wait_for(lambda: http.get(f"/v1/storyboards/{done}").json()["state"] == "STORYBOARD_STATE_COMPLETED",
                     60, "a completed storyboard")  # fmt: skip
        first.terminate()
        slow = group.scripted_renderer("--delay", "600")
        second = group.gateway(planner.address, slow.address, folder / "outputs", *store)
        yield {"url": f"http://127.0.0.1:{second.http_port}", "done": done, "folder": folder, "process": second}


def _schemathesis(url: str, folder: Path, name: str, max_examples: int, max_time: int, config: str = "") -> dict:
    """One bounded schemathesis run; its JSON report."""
    report = folder / f"{name}.json"
    command = [sys.executable, "-m", "schemathesis.cli"]
    if config:
        config_file = folder / f"{name}.toml"
        config_file.write_text(config)
        command += ["--config-file", str(config_file)]
    command += [
        "run", f"{url}/openapi.json", "--checks", CHECKS, "--max-examples", str(max_examples),
        "--max-time", str(max_time), "--seed", "20261124", "--generation-database", "none", "--workers", "1",
        "--request-timeout", "10", "--no-color", "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 120, cwd=folder)
    (folder / f"{name}.log").write_text(finished.stdout + finished.stderr)
    assert report.exists(), finished.stdout[-5000:] + finished.stderr[-3000:]
    result = json.loads(report.read_text())
    result["output"] = finished.stdout[-8000:]
    return result


def _record(tally: Tally, result: dict, label: str) -> None:
    cases = result["test_cases"]
    failed = cases["with_failures"] + cases["errored"] + len(result["errors"])
    passed = max(0, cases["generated"] - failed)
    for _ in range(passed):
        tally.record(SCENARIO, "completed")
    for failure in result["failures"][:50] or ([] if not failed else [result["output"][-2000:]]):
        tally.record(SCENARIO, "lost", f"{label}: {json.dumps(failure)[:500]}")


@pytest.mark.parametrize(
    ("label", "fixed_id"), [("any ids", False), ("ids of a completed storyboard", True)], ids=["any-ids", "fixed-id"]
)
def test_every_generated_request_gets_a_documented_answer_and_never_a_5xx(gateway, tally: Tally, label, fixed_id):
    config = f'[parameters]\n"path.job_id" = "{gateway["done"]}"\n' if fixed_id else ""
    name = "fixed" if fixed_id else "any"
    result = _schemathesis(str(gateway["url"]), Path(str(gateway["folder"])), name, 8, 45, config)
    _record(tally, result, label)
    tally.note(f"schemathesis ({label}): {result['test_cases']['generated']} requests, "
               f"{result['operations']['tested']} operations, {result['running_time']:.0f} s")  # fmt: skip
    assert result["test_cases"]["generated"] > 100, result["output"]
    assert result["exit_code"] == 0 and not result["failures"] and not result["errors"], result["output"]
    assert gateway["process"].alive()  # type: ignore[attr-defined]
