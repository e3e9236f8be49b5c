"""The shape the house keeps: small parts in the gateway (no class over 300 lines, no function over 80)."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
LIMITS = {ast.ClassDef: 300, ast.FunctionDef: 80, ast.AsyncFunctionDef: 80}


def test_the_gateways_classes_and_functions_stay_small():
    too_long = []
    for path in sorted(GATEWAY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            limit = LIMITS.get(type(node))
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(
                    f"{path.relative_to(GATEWAY.parent)}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                )
    assert not too_long, too_long
