"""The client SDK installs on its own: a clean virtual environment with only ``pip install ./sdk`` has the client and
none of the server's weight (reportlab, numpy, isal, torch), and its CLI says what to install for server commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"


@pytest.fixture(scope="module")
def sdk_alone(tmp_path_factory) -> Path:
    """The python of a new virtual environment holding the SDK and what it requires, nothing else."""
    venv = tmp_path_factory.mktemp("sdk-alone") / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "--quiet", "--python", str(python), str(ROOT / "sdk")], check=True,
                   cwd=venv.parent)  # fmt: skip
    return python


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run away from the repository, so that its own packages are not on the path.
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=120, cwd=python.parent)


def test_the_sdk_alone_imports_the_client_without_the_servers_dependencies(sdk_alone):
    check = (
        "import importlib.util, storyboard; from storyboard import AsyncClient, Client, events; "
        "print(sorted(m for m in ('reportlab', 'numpy', 'isal', 'torch', 'PIL', 'rich', 'gateway', 'services', "
        "'storyboard_common', 'storyboard_server') if importlib.util.find_spec(m)))"
    )
    result = _run(sdk_alone, "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    stubs = _run(
        sdk_alone,
        "-c",
        "import storyboard.v1 as v1, pkgutil; print(sorted(m.name for m in pkgutil.iter_modules(v1.__path__)))",
    )
    assert stubs.stdout.strip() == str(["common_pb2", "common_pb2_grpc", "storyboards_pb2", "storyboards_pb2_grpc"])


def test_the_sdks_cli_says_what_to_install_for_the_commands_that_need_the_server(sdk_alone):
    storyboard = sdk_alone.parent / "storyboard"
    up = subprocess.run([str(storyboard), "up"], capture_output=True, text=True, timeout=60, cwd=sdk_alone.parent)
    assert up.returncode == 1 and "storyboard up needs the storyboard-server package" in up.stderr, up.stderr
    plan = subprocess.run([str(storyboard), "plan", "--story", "A fox crosses a river"], capture_output=True,
                          text=True, timeout=60, cwd=sdk_alone.parent)  # fmt: skip
    assert plan.returncode == 1 and "needs the storyboard-server package" in plan.stderr, plan.stderr
    assert "Traceback" not in up.stderr + plan.stderr
