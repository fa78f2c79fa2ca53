"""posedge.protocol: the id helpers, the fingerprint, the models' attempt fields, and purity."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from pydantic import ValidationError

from posedge.protocol.idempotency import (
    authorization_fingerprint,
    fingerprint,
    forward_attempt,
    online_attempt,
    reversal_id,
)
from posedge.protocol.models import AuthorizationRequest, ReversalRequest


def test_attempt_and_reversal_ids() -> None:
    assert online_attempt("s-91f2") == "s-91f2:online"
    assert forward_attempt("s-91f2") == "s-91f2:forward"
    assert reversal_id(online_attempt("s-91f2")) == "s-91f2:online:reversal"
    assert reversal_id(forward_attempt("s-91f2")) == "s-91f2:forward:reversal"


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    doc = {"b": 1, "a": "é", "c": [1, {"z": None, "y": True}]}
    canonical = '{"a":"é","b":1,"c":[1,{"y":true,"z":null}]}'
    assert fingerprint(doc) == hashlib.sha256(canonical.encode()).hexdigest()
    assert fingerprint(dict(reversed(doc.items()))) == fingerprint(doc)


def test_authorization_fingerprint_ignores_card_and_attempt() -> None:
    body = {"txn": "s-1", "attempt": "s-1:online", "amount": 5, "card": {"pan": "4111"}}
    assert authorization_fingerprint(body) == fingerprint({"txn": "s-1", "amount": 5})
    assert authorization_fingerprint({**body, "amount": 6}) != authorization_fingerprint(body)


def test_attempt_fields_are_required_and_bounded() -> None:
    auth = {
        "terminal": "lane1",
        "txn": "s-1",
        "attempt": "s-1:online",
        "amount": 100,
        "currency": "EUR",
        "masked_pan": "411111******1111",
    }
    assert AuthorizationRequest.model_validate(auth).attempt == "s-1:online"
    for bad in ("", "x" * 161):
        with pytest.raises(ValidationError):
            AuthorizationRequest.model_validate({**auth, "attempt": bad})
    with pytest.raises(ValidationError):
        AuthorizationRequest.model_validate({k: v for k, v in auth.items() if k != "attempt"})
    rev = {
        "terminal": "lane1",
        "txn": "s-1",
        "attempt": "s-1:online",
        "reversal": "s-1:online:reversal",
        "amount": 100,
        "currency": "EUR",
        "reason": "timeout",
    }
    assert ReversalRequest.model_validate(rev).reversal == "s-1:online:reversal"
    for field in ("attempt", "reversal"):
        with pytest.raises(ValidationError):
            ReversalRequest.model_validate({k: v for k, v in rev.items() if k != field})
    with pytest.raises(ValidationError):
        ReversalRequest.model_validate({**rev, "reversal": "x" * 256})


def test_the_protocol_imports_neither_the_agent_nor_the_simulator() -> None:
    code = (
        "import sys, posedge.protocol.models, posedge.protocol.idempotency\n"
        "bad = sorted(m for m in sys.modules"
        " if m.startswith(('posedge.agent', 'posedge.simulator')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
