"""Dataclasses to JSON-friendly values and back, by field name and type.

One codec for every way in: a form's values (ui.forms), a `gr.api` payload and a CLI call through
`--app` are all turned into the same typed dataclasses here, so each rule runs once, on the
dataclass (its __post_init__), whichever face sent the values.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from qwen3arena.config import check_value, from_mapping


def plain(value: Any) -> Any:
    """A JSON-friendly copy: dataclasses as dicts, paths as str, dates as ISO strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def typed(cls: type, data: Mapping[str, Any] | None, where: str = "") -> Any:
    """The dataclass `cls` from a mapping: unknown keys refused, each value checked against its
    field's type (ConfigError names the field; dates come as ISO strings, tuples as lists). What a
    form cannot say is read here: an empty text or list is "not given" for an optional field, and a
    whole float is an int."""
    hints = typing.get_type_hints(cls)
    values = {name: _loosen(hints[name], value) if name in hints else value
              for name, value in dict(data or {}).items()}
    return from_mapping(cls, values, where or cls.__name__)


def decode_value(hint: Any, data: Any, where: str) -> Any:
    """One argument of type `hint` from JSON or a form: a dataclass through `typed`, anything
    else checked as a dataclass field would be."""
    if dataclasses.is_dataclass(hint):
        return typed(hint, data, where)
    return check_value(hint, _loosen(hint, data), where)


def _loosen(hint: Any, value: Any) -> Any:
    """What JSON and forms cannot say directly, made into what from_mapping checks."""
    args = typing.get_args(hint)
    if type(None) in args and (value == "" or value == []):
        return None
    kinds = [a for a in args if a is not type(None)] or [hint]
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        return int(value)  # a form's number field
    return value
