"""Canonical JSON: the one byte form of an event that the chain signs.

Sorted keys, no insignificant white space, UTF-8, no NaN or infinity. The
same value always gives the same bytes, on every machine and version.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NotCanonical(ValueError):
    """The value cannot be written as canonical JSON."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonical(f"{path}: {value!r} is not a finite number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{path}: object keys must be strings, got {type(key).__name__}")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise NotCanonical(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """The canonical text of ``value``; raises :class:`NotCanonical`."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
