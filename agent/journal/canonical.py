"""Canonical JSON: the one byte form of a payload that the chain signs.

Sorted keys, no insignificant white space, UTF-8, no NaN or infinity, only
JSON types (dict with string keys, list/tuple, str, int, float, bool, None).
The same value always gives the same text, on every machine and version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any


class NotCanonical(ValueError):
    """The value cannot be written as canonical JSON."""


def _refuse(value: Any) -> Any:
    raise NotCanonical(f"{type(value).__name__} is not a JSON value")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
)
# The same settings as one reusable C encoder: JSONEncoder.encode builds a new
# one (and a closure) on every call, which costs on the journal's append path.
# Without markers a cyclic value recurses until RecursionError, refused below.
_MAKE_C_ENCODER: Callable[..., Callable[[Any, int], tuple[str, ...]]] | None = getattr(
    json_encoder, "c_make_encoder", None
)  # CPython's C accelerator (not in the typing stubs); None on other interpreters
_C_ENCODER = (
    _MAKE_C_ENCODER(
        None, _refuse, json_encoder.encode_basestring, None, ":", ",", True, False, False
    )
    if _MAKE_C_ENCODER is not None
    else None
)


def canonical_json(value: Any) -> str:
    """The canonical text of ``value``; raises :class:`NotCanonical`."""
    try:
        _check_keys(value)
        if _C_ENCODER is not None and isinstance(value, dict):
            return "".join(_C_ENCODER(value, 0))
        return _ENCODER.encode(value)
    except NotCanonical:
        raise
    except RecursionError:
        raise NotCanonical("the value is nested too deeply or refers to itself") from None
    except ValueError as exc:  # NaN or infinity
        raise NotCanonical(f"not a finite number ({exc})") from None
    except TypeError as exc:
        raise NotCanonical(str(exc)) from None


# Built once: ``isinstance(v, dict | list)`` builds a union on every call (hot path).
_CONTAINERS = (dict, list, tuple)
_SEQUENCES = (list, tuple)


def _check_keys(value: Any) -> None:
    """json would quietly turn 1 into "1"; canonical form needs string keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"object keys must be strings, got {type(key).__name__}")
            if isinstance(item, _CONTAINERS):
                _check_keys(item)
    elif isinstance(value, _SEQUENCES):
        for item in value:
            if isinstance(item, _CONTAINERS):
                _check_keys(item)
