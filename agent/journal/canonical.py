"""Canonical JSON: the one byte form of a payload that the chain signs.

Sorted keys, no insignificant white space, UTF-8, no NaN or infinity, only
JSON types (dict with string keys, list/tuple, str, int, float, bool, None).
The same value always gives the same text, on every machine and version.
"""

from __future__ import annotations

import json
from typing import Any


class NotCanonical(ValueError):
    """The value cannot be written as canonical JSON."""


def _refuse(value: Any) -> Any:
    raise NotCanonical(f"{type(value).__name__} is not a JSON value")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
)


def canonical_json(value: Any) -> str:
    """The canonical text of ``value``; raises :class:`NotCanonical`."""
    _check_keys(value)
    try:
        return _ENCODER.encode(value)
    except NotCanonical:
        raise
    except ValueError as exc:  # NaN or infinity
        raise NotCanonical(f"not a finite number ({exc})") from None
    except TypeError as exc:
        raise NotCanonical(str(exc)) from None


def _check_keys(value: Any) -> None:
    """json would quietly turn 1 into "1"; canonical form needs string keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"object keys must be strings, got {type(key).__name__}")
            if isinstance(item, dict | list | tuple):
                _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, dict | list | tuple):
                _check_keys(item)
