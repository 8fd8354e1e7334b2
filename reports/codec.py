"""Dataclasses ↔ plain JSON for the facts (pure code).

``encode`` turns frozen dataclasses into JSON values (StrEnums as their value, datetimes
as ISO 8601 ``…Z``, tuples as lists); ``decode`` is its inverse, driven by the type hints
and strict about types (an integer field refuses ``"61"`` and ``true``). Converters are
built once per class, since facts can hold a million records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from reports.errors import FactsError

_Convert = typing.Callable[[Any], Any]
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def encode(value: Any) -> Any:
    """A dataclass (or any field value) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: enc(getattr(value, name)) for name, enc in _encoders(type(value))}
    return _encode_any(value)


def _encode_any(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value._value_  # the plain attribute: .value is a slow descriptor on enums
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    return encode(value) if dataclasses.is_dataclass(value) else value


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ENCODERS: dict[type, tuple[tuple[str, _Convert], ...]] = {}


def _encoders(cls: type) -> tuple[tuple[str, _Convert], ...]:
    """One encoder per field, chosen once per class from its type hints: encoding runs per
    record, so plain fields skip every type test."""
    found = _ENCODERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = tuple((name, _encoder(hints[name])) for name in _field_names(cls))
        _ENCODERS[cls] = found
    return found


def _identity(value: Any) -> Any:
    return value


def _encoder(hint: Any) -> _Convert:
    if hint in (str, int, bool):
        return _identity
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return lambda v: v._value_
    if hint is datetime:
        return _iso
    return _encode_any  # optional, tuple and nested fields: the general path


T = TypeVar("T")


class _Bad(Exception):
    """A decoding problem; each enclosing level prepends its path segment (cheap success
    path: no path strings are built for values that decode)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _decode(cls: type[T], data: Any) -> T:
    if not isinstance(data, Mapping):
        raise _Bad("expected an object")
    converters = _converters(cls)
    kwargs: dict[str, Any] = {}
    for name, raw in data.items():
        convert = converters.get(name)
        if convert is None:
            raise _Bad(f"unknown field {name!r}")
        try:
            kwargs[name] = convert(raw)
        except _Bad as bad:
            bad.path = f".{name}{bad.path}"
            raise
        except FactsError as exc:  # a nested dataclass's own check
            raise _Bad(exc.message, f".{name}") from exc
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise _Bad(str(exc)) from exc
    except FactsError as exc:
        raise _Bad(exc.message) from exc


_CONVERTERS: dict[type, dict[str, _Convert]] = {}


def _converters(cls: type) -> dict[str, _Convert]:
    """One converter per field, built once per class: decoding runs per record."""
    found = _CONVERTERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = {name: _converter(hints[name]) for name in _field_names(cls)}
        _CONVERTERS[cls] = found
    return found


def _converter(hint: Any) -> _Convert:
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        inner = _converter(next(a for a in typing.get_args(hint) if a is not type(None)))
        return lambda raw: None if raw is None else inner(raw)
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])

        def as_tuple(raw: Any) -> Any:
            if not isinstance(raw, list):
                raise _Bad("expected a list")
            out = []
            for i, v in enumerate(raw):
                try:
                    out.append(item(v))
                except _Bad as bad:
                    bad.path = f"[{i}]{bad.path}"
                    raise
            return tuple(out)

        return as_tuple
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        enum = hint

        def as_enum(raw: Any) -> Any:
            try:
                return enum(raw)
            except ValueError as exc:
                raise _Bad(f"{raw!r} is not one of {[m.value for m in enum]}") from exc

        return as_enum
    if hint is datetime:
        return _as_datetime
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls = hint
        return lambda raw: _decode(cls, raw)
    if hint in (int, bool, str):
        return _plain(hint)
    raise TypeError(f"unsupported field type {hint!r}")  # a programming error, at first use


def _as_datetime(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise _Bad("expected an ISO 8601 time")
    try:
        return datetime.fromisoformat(raw)  # Python 3.11 reads the trailing "Z"
    except ValueError as exc:
        raise _Bad(str(exc)) from exc


def _plain(kind: type) -> _Convert:
    names = {int: "an integer", bool: "true or false", str: "a string"}

    def check(raw: Any) -> Any:
        if type(raw) is not kind:  # bool is an int subclass: exact type only
            raise _Bad(f"expected {names[kind]}")
        return raw

    return check


def decode(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """``cls`` from ``data``; raises ``FactsError`` naming the first bad field."""
    try:
        return _decode(cls, data)
    except _Bad as bad:
        raise FactsError(f"{where}{bad.path}: {bad.message}") from None
