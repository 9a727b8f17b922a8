"""The registry of shipped strategy types, keyed by ``Strategy.type_name``.

The strategy manager and the API look types up here (:func:`get_type`), list them
(:data:`STRATEGY_TYPES`), document their parameters (:func:`describe_params`) and validate the
API's ``map<string,string>`` parameters (:func:`parse_params`).
"""

from __future__ import annotations

import enum
import types
import typing
from decimal import Decimal
from typing import Any, Mapping, NamedTuple

import pydantic
from pydantic.fields import FieldInfo

from appliance.model.errors import NotFoundError, ValidationError
from appliance.model.money import dec_str
from appliance.strategies.base import Strategy
from appliance.strategies.trend_momentum import TrendMomentum

_SHIPPED: tuple[type[Strategy], ...] = (TrendMomentum,)

#: Every shipped strategy type by ``type_name`` (read-only).
STRATEGY_TYPES: Mapping[str, type[Strategy]] = types.MappingProxyType({cls.type_name: cls for cls in _SHIPPED})


class ParamInfo(NamedTuple):
    """One parameter of a strategy type, rendered for operators and the API.

    Attributes:
        name: the field name (the key in the API's params map).
        type: ``"int"``, ``"float"``, ``"decimal"``, ``"bool"``, ``"string"`` or
            ``"enum(a|b)"`` for a closed set of strings.
        default: the default as the API would pass it (``"12"``, ``"2.5"``, ``"true"``), or
            ``""`` when the field is required.
        description: the field's description followed by its bounds, e.g. ``"... Range: >= 2, <= 400."``.
    """

    name: str
    type: str
    default: str
    description: str


def known_types() -> list[str]:
    """The ``type_name`` of every shipped strategy, sorted."""
    return sorted(STRATEGY_TYPES)


def get_type(name: str) -> type[Strategy]:
    """The strategy class registered as ``name``.

    Raises:
        NotFoundError: no such type; the message lists the known types.
    """
    cls = STRATEGY_TYPES.get(name)
    if cls is None:
        raise NotFoundError(f"unknown strategy type {name!r}; known types: {', '.join(known_types())}")
    return cls


def describe_params(cls: type[Strategy]) -> list[ParamInfo]:
    """Describe the fields of ``cls.Params`` in declaration order.

    Returns:
        One :class:`ParamInfo` (a ``(name, type, default, description)`` tuple) per field.
    """
    out: list[ParamInfo] = []
    for name, field in cls.Params.model_fields.items():
        description = (field.description or "").strip()
        bounds = _bounds(field)
        if bounds:
            description = f"{description} Range: {bounds}." if description else f"Range: {bounds}."
        default = "" if field.is_required() else _render(field.get_default(call_default_factory=True))
        out.append(ParamInfo(name, _type_name(field.annotation), default, description))
    return out


def parse_params(cls: type[Strategy], raw: Mapping[str, Any]) -> Strategy.Params:
    """Validate parameters (the API's strings, or typed values) into ``cls.Params``.

    Missing keys take their defaults; unknown keys are refused.

    Raises:
        ValidationError: ``field`` is ``params.<name>`` of the first offending field and
            ``reason`` lists every problem found.
    """
    try:
        return cls.Params.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = []
        for err in errors:
            loc = ".".join(str(part) for part in err.get("loc", ())) or "params"
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        first = errors[0].get("loc", ()) if errors else ()
        field = "params." + ".".join(str(part) for part in first) if first else "params"
        raise ValidationError(field, "; ".join(problems)) from None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "enum(" + "|".join(str(v) for v in typing.get_args(annotation)) + ")"
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, enum.Enum):
            return "enum(" + "|".join(str(m.value) for m in annotation) + ")"
        if issubclass(annotation, int):
            return "int"
        if issubclass(annotation, float):
            return "float"
        if issubclass(annotation, Decimal):
            return "decimal"
        if issubclass(annotation, str):
            return "string"
    return str(annotation)


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None:
        return ""
    return str(value)


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{symbol} {_render(bound)}")
    return ", ".join(parts)
