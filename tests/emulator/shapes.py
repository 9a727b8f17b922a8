"""Compare an emulator payload with a captured exchange payload (ccxt static fixtures)."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any


def load_fixture(shared_data: Path, exchange: str, method: str, description: str | None = None) -> dict[str, Any]:
    """One ``methods.<method>[i]`` entry of ``exchange_responses/<exchange>.json``."""
    data = json.loads((shared_data / "exchange_responses" / f"{exchange}.json").read_text())
    entries = data["methods"][method]
    if description is None:
        return entries[0]
    for e in entries:
        if e["description"] == description:
            return e
    raise KeyError(f"{exchange}.{method}: no entry {description!r}")


def _numeric(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, str):
        try:
            Decimal(v)
            return True
        except InvalidOperation:
            return False
    return False


def shape_mismatches(captured: Any, ours: Any, path: str = "$") -> list[str]:
    """Differences in keys and JSON types, recursively.

    The ccxt fixtures store most numbers as strings (``"orderId": "3397148653"``) where the
    exchange sends JSON numbers, so a numeric string in the capture matches a number or a
    numeric string; ``null`` in the capture matches anything (the field is optional-valued).
    Lists are compared element 0 against element 0.
    """
    out: list[str] = []
    if captured is None:
        return out
    if isinstance(captured, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected object, got {type(ours).__name__}"]
        missing = sorted(set(captured) - set(ours))
        extra = sorted(set(ours) - set(captured))
        if missing:
            out.append(f"{path}: missing keys {missing}")
        if extra:
            out.append(f"{path}: extra keys {extra}")
        for k in set(captured) & set(ours):
            out += shape_mismatches(captured[k], ours[k], f"{path}.{k}")
        return out
    if isinstance(captured, list):
        if not isinstance(ours, list):
            return [f"{path}: expected array, got {type(ours).__name__}"]
        if captured and ours:
            out += shape_mismatches(captured[0], ours[0], f"{path}[0]")
        return out
    if isinstance(captured, bool):
        return [] if isinstance(ours, bool) else [f"{path}: expected bool, got {ours!r}"]
    if _numeric(captured):
        return [] if _numeric(ours) else [f"{path}: expected number-like, got {ours!r}"]
    if isinstance(captured, str):
        return [] if isinstance(ours, str) else [f"{path}: expected string, got {ours!r}"]
    return []
