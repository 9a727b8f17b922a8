"""The DESIGN's rules that code review alone would let slip: dependency direction and time."""

from __future__ import annotations

import ast
from pathlib import Path

APPLIANCE = Path(__file__).resolve().parents[2] / "appliance"


def _modules():
    for path in sorted(APPLIANCE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _package(path: Path) -> str:
    return path.relative_to(APPLIANCE).parts[0].removesuffix(".py")


def test_model_and_kernels_import_nothing_else_of_the_appliance():
    for path, tree in _modules():
        if _package(path) in ("model", "kernels"):
            own = f"appliance.{_package(path)}"
            bad = {m for m in _imports(tree) if m.startswith("appliance") and not m.startswith(own)}
            assert not bad, f"{path.relative_to(APPLIANCE)} imports {bad}"


def test_nothing_imports_the_server_but_the_server_and_the_entry_point():
    for path, tree in _modules():
        if _package(path) in ("server", "cli"):
            continue
        bad = {m for m in _imports(tree) if m.startswith("appliance.server")}
        assert not bad, f"{path.relative_to(APPLIANCE)} imports {bad}"


def test_domain_time_comes_from_the_clock():
    """Only the clock (and the replay driver's wall-clock pacing at the edge) may read system time."""
    allowed = {"engine/clock.py", "telemetry/logging.py"}
    forbidden = {("time", "time"), ("time", "time_ns"), ("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}
    for path, tree in _modules():
        rel = str(path.relative_to(APPLIANCE))
        if rel in allowed:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in forbidden, f"{rel}:{node.lineno} reads {node.value.id}.{node.attr}"
