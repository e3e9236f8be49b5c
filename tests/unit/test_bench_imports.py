"""Every benchmark module imports: they reach into the services' code, and only `make bench` runs them whole, so a
rename there must fail `make test` rather than the next `make bench`. And they reach only for public names (that they
import nothing from tests/ is an import-linter contract in pyproject.toml)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_the_benchmark_module_imports(module):
    importlib.import_module(f"bench.{module}")


@pytest.mark.parametrize("module", MODULES)
def test_the_benchmark_module_imports_no_private_name(module):
    tree = ast.parse((BENCH / f"{module}.py").read_text())
    imported = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        for alias in node.names
    ]
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    private = [name for name in imported + modules if any(part.startswith("_") for part in name.split("."))]
    assert private == []
