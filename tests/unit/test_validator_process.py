"""The validator as its own process (``python -m services.validator``), loading the tiny CLIP by its settings alone."""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from storyboard.v1 import common_pb2
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc

try:
    from tests.support.tiny_clip import build_tiny_clip
except ModuleNotFoundError:  # pytest puts tests/unit on sys.path, not the repository root, unless told to
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.tiny_clip import build_tiny_clip

pytestmark = pytest.mark.integration

SERVICE = "storyboard.v1.Validator"
START_TIMEOUT = 120  # importing torch and open_clip in a fresh process takes a while on a small machine


@contextmanager
def validator_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    """A validator process on a free port, and that port (read from its log)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "services.validator", "--port", "0", "--device", "cpu", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        yield process, _port_from_log(lines, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _port_from_log(lines: queue.Queue[str], process: subprocess.Popen) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert process.poll() is None, f"the validator exited early: {''.join(seen)}"
            continue
        seen.append(line)
        match = re.search(r"listening on port (\d+)", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"the validator did not start listening: {''.join(seen)}")


def _wait_for_status(channel: grpc.Channel, wanted: int) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"the validator did not report status {wanted}")


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_separate_process_loads_the_tiny_model_and_stops_on_sigterm(tmp_path: Path) -> None:
    tiny = build_tiny_clip(tmp_path / "clip")
    with validator_process(*tiny.cli_args()) as (process, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        _wait_for_status(channel, health_pb2.HealthCheckResponse.SERVING)
        stub = validator_pb2_grpc.ValidatorStub(channel)
        assert stub.Info(validator_pb2.ValidatorInfoRequest(), timeout=5).model == tiny.clip_model
        frame = common_pb2.Image(data=_png((200, 40, 40)), mime_type="image/png")
        response = stub.Score(validator_pb2.ScoreRequest(frames=[frame], references=[frame]), timeout=30)
        assert response.scores[0].consistency == pytest.approx(1.0, abs=1e-4)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_separate_process_without_weights_says_why_at_once(tmp_path: Path) -> None:
    env = {"STORYBOARD_VALIDATOR_CLIP_MODEL": "ViT-L-14", "STORYBOARD_VALIDATOR_CLIP_PRETRAINED": ""}
    with validator_process(env=env) as (process, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        info = validator_pb2_grpc.ValidatorStub(channel).Info(validator_pb2.ValidatorInfoRequest(), timeout=5)
        assert not info.ready and "--clip-pretrained" in info.reason
        _wait_for_status(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_missing_checkpoint_exits_at_start_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.validator", "--clip-pretrained", str(tmp_path / "gone.safetensors")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--clip-pretrained" in result.stderr and "no such checkpoint file" in result.stderr
