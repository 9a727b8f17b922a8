"""Conversions between protobuf messages and plain Python / JSON values.

* :func:`to_dict` turns any lyra.v1 message into a JSON-ready ``dict``: field names as in the
  .proto, decimal strings kept as strings, enums as short names (``ORDER_STATUS_OPEN`` ->
  ``"OPEN"``), Timestamps as RFC 3339 UTC strings, Durations as seconds (float), int64 as int.
* :func:`enum_value` / :func:`enum_short_name` map between short names and enum numbers.
* :func:`to_decimal_str` validates decimal inputs (str, Decimal or int; never float).
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message

_FD = _descriptor.FieldDescriptor


def _enum_prefix(enum_desc: _descriptor.EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_desc.name).upper() + "_"


def enum_short_name(enum_desc: _descriptor.EnumDescriptor, number: int) -> str:
    """Short name of an enum value: ``SIDE_BUY`` -> ``"BUY"``; unknown numbers -> ``str(number)``."""
    value = enum_desc.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = _enum_prefix(enum_desc)
    return value.name[len(prefix):] if value.name.startswith(prefix) else value.name


def enum_value(enum_desc: _descriptor.EnumDescriptor, value: Any, *, field: str) -> int:
    """Enum number for ``value``: an int, a full name (``"ORDER_TYPE_LIMIT"``) or a short
    name in any case (``"limit"``).

    Raises:
        ValueError: the value is not a member (the message names ``field`` and the choices).
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: invalid value {value!r}")
    if isinstance(value, int):
        if value in enum_desc.values_by_number and value != 0:
            return value
    elif isinstance(value, str):
        text = value.strip().upper().replace("-", "_")
        prefix = _enum_prefix(enum_desc)
        for candidate in (text, prefix + text):
            member = enum_desc.values_by_name.get(candidate)
            if member is not None and member.number != 0:
                return member.number
    choices = ", ".join(enum_short_name(enum_desc, v.number).lower() for v in enum_desc.values if v.number != 0)
    raise ValueError(f"{field}: invalid value {value!r} (choose from {choices})")


def enum_choices(enum_desc: _descriptor.EnumDescriptor) -> list[str]:
    """Lower-case short names of an enum's members, without the UNSPECIFIED value."""
    return [enum_short_name(enum_desc, v.number).lower() for v in enum_desc.values if v.number != 0]


def to_decimal_str(value: Any, *, field: str, allow_empty: bool = False) -> str:
    """Validate a decimal input and return it as a string (``Decimal``/``int``/``str``).

    Raises:
        TypeError: ``value`` is a float (binary floats lose precision; pass a string).
        ValueError: ``value`` is not a finite decimal number (the message names ``field``).
    """
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if allow_empty:
            return ""
        raise ValueError(f"{field}: required")
    if isinstance(value, float):
        raise TypeError(f"{field}: pass decimals as str or decimal.Decimal, not float")
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise TypeError(f"{field}: expected str, int or Decimal, got {type(value).__name__}")
    text = str(value).strip()
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{field}: not a decimal number: {text!r}") from None
    if not dec.is_finite():
        raise ValueError(f"{field}: not a finite decimal number: {text!r}")
    return text


def _is_timestamp(desc: _descriptor.Descriptor) -> bool:
    return desc.full_name == "google.protobuf.Timestamp"


def _is_duration(desc: _descriptor.Descriptor) -> bool:
    return desc.full_name == "google.protobuf.Duration"


def timestamp_to_str(ts: Any) -> str | None:
    """RFC 3339 UTC string (``2018-01-10T04:55:00Z``) of a Timestamp, ``None`` if unset/zero."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToJsonString()


def timestamp_to_datetime(ts: Any) -> _dt.datetime | None:
    """Aware UTC datetime of a Timestamp, ``None`` if unset/zero."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


def _scalar(field: _FD, value: Any) -> Any:
    if field.type == _FD.TYPE_ENUM:
        return enum_short_name(field.enum_type, value)
    if field.type == _FD.TYPE_MESSAGE:
        return to_dict(value)
    if field.type == _FD.TYPE_BYTES:
        return value.hex()
    return value


def to_dict(msg: Message) -> Any:
    """JSON-ready representation of a protobuf message (see the module docstring).

    Every field is present (unset strings as ``""``, unset Timestamps as ``None``), so the
    shape of the output does not depend on the values.
    """
    desc = msg.DESCRIPTOR
    if _is_timestamp(desc):
        return timestamp_to_str(msg)
    if _is_duration(desc):
        return msg.seconds + msg.nanos / 1e9
    if desc.full_name == "google.protobuf.FieldMask":
        return list(msg.paths)
    out: dict[str, Any] = {}
    for field in desc.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _scalar(value_field, v) for k, v in sorted(value.items())}
        elif field.is_repeated:
            out[field.name] = [_scalar(field, v) for v in value]
        elif field.type == _FD.TYPE_MESSAGE and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _scalar(field, value)
    return out
