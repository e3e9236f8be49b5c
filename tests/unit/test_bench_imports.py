"""Every benchmark module imports: they reach into the services' code, and only `make bench` runs them whole, so a
rename there must fail `make test` rather than the next `make bench`."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("module", sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__"))
def test_the_benchmark_module_imports(module):
    importlib.import_module(f"bench.{module}")
