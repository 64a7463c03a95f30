"""JSON <-> protobuf for the HTTP API, with proto field names.

Out: every field is present (unset messages and optional scalars as null), 64-bit integers as JSON
numbers, times as RFC 3339 in Asia/Shanghai. In: a JSON object that does not fit the message is a
400 naming the field (unknown field, wrong type, out of range) before anything is sent to a service;
`null` leaves a field unset. The JSON is then read with google.protobuf.json_format.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, StrictInt

from gateway.errors import ApiError

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIMESTAMP = Timestamp.DESCRIPTOR.full_name
M = TypeVar("M", bound=Message)
F = FieldDescriptor
# Descriptors are typed loosely: protobuf's stubs mix the upb and pure-Python classes and mark most
# attributes optional, though a field of message type always has its message_type.
FieldDesc = Any
MessageDesc = Any
INT_RANGES = {
    F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: (0, 2**32 - 1),
    F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# A request model's integer that goes into an int32 / int64 field: out of range is the caller's 400 naming the
# field (pydantic), not a ValueError from the message's constructor (a 500); the document shows the range.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
StrictInt32 = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]
StrictInt64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]


def time_json(ts: Timestamp) -> str:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=SHANGHAI).isoformat(timespec="seconds")


def _is_map(fd: FieldDesc) -> bool:
    return fd.type == F.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _out(fd: FieldDesc, value: Any) -> Any:
    if fd.type == F.TYPE_MESSAGE:
        return time_json(value) if fd.message_type.full_name == TIMESTAMP else to_json(value)
    if fd.type == F.TYPE_ENUM:
        found = fd.enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    if fd.type == F.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def to_json(msg: Message) -> dict[str, Any]:
    """The message as a JSON-ready dict with proto field names."""
    out: dict[str, Any] = {}
    fd: FieldDesc
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {k: _out(value_fd, v) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.name] = [_out(fd, v) for v in value]
        elif fd.has_presence and not msg.HasField(fd.name):
            out[fd.name] = None
        else:
            out[fd.name] = _out(fd, value)
    return out


# ---------------------------------------------------------------- in


def _bad(path: str, expected: str) -> ApiError:
    return ApiError(400, "invalid_argument", f"{path} must be {expected}", field=path)


def _check_value(fd: FieldDesc, value: Any, path: str) -> None:
    cpp = fd.cpp_type
    if cpp == F.CPPTYPE_MESSAGE:
        if fd.message_type.full_name == TIMESTAMP:
            if not isinstance(value, str):
                raise _bad(path, "an RFC 3339 time such as 2025-05-01T09:30:00+08:00 (时间格式)")
            return
        if not isinstance(value, dict):
            raise _bad(path, "a JSON object (应为对象)")
        check(value, fd.message_type, f"{path}.")
    elif cpp == F.CPPTYPE_STRING:
        if not isinstance(value, str):
            raise _bad(path, "a string (应为文本)")
    elif cpp == F.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            raise _bad(path, "true or false (应为布尔值)")
    elif cpp in INT_RANGES:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise _bad(path, "a whole number (应为整数)")
        lo, hi = INT_RANGES[cpp]
        if not lo <= value <= hi:
            raise _bad(path, f"within {lo}..{hi} (超出范围)")
    elif cpp in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(path, "a number (应为数字)")
    elif cpp == F.CPPTYPE_ENUM and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise _bad(path, f"one of: {', '.join(v.name for v in fd.enum_type.values)}")


def check(data: Mapping[str, Any], desc: MessageDesc, prefix: str = "") -> None:
    """A 400 naming the first field of `data` that does not fit the message `desc`."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        fd = desc.fields_by_name.get(key)
        if fd is None:
            known = ", ".join(f.name for f in desc.fields)
            raise ApiError(
                400, "invalid_argument", f"{path} is not a known field (未知字段); fields: {known}", field=path
            )
        if value is None:
            continue
        if _is_map(fd):
            if not isinstance(value, dict):
                raise _bad(path, "a JSON object (应为对象)")
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                _check_value(value_fd, v, f"{path}.{k}")
        elif fd.is_repeated:
            if not isinstance(value, list):
                raise _bad(path, "a list (应为列表)")
            for i, item in enumerate(value):
                _check_value(fd, item, f"{path}[{i}]")
        else:
            _check_value(fd, value, path)


def from_json(data: Mapping[str, Any], cls: type[M], *, drop: Collection[str] = ()) -> M:
    """The message `cls` from a JSON object, or a 400 naming the field that does not fit.

    `drop`: top-level keys to ignore (read-only fields a client may send back as it read them)."""
    body = {k: v for k, v in data.items() if k not in drop}
    check(body, cls.DESCRIPTOR)
    try:
        return json_format.ParseDict(body, cls())
    except json_format.ParseError as exc:
        raise ApiError(
            400, "invalid_argument", f"the body does not fit {cls.DESCRIPTOR.name}: {exc} (请求内容不符合格式)"
        ) from None
