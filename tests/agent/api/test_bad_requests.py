"""Every class of bad request gets a 4xx problem naming the field, and never reaches the engine."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, BackgroundApi
from .fakes import FakeEngine
from .test_endpoints import SALE, problem_of

KEY = {"Idempotency-Key": "k-1"}
TEST_PAN = "4111111111111111"


def body(**changes: Any) -> dict[str, Any]:
    doc = {**SALE, **changes}
    return {k: v for k, v in doc.items() if v is not ...}


# (id, request kwargs, status, problem name, field)
CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("amount-zero", {"json": body(amount=0)}, 422, "validation", "amount"),
    ("amount-negative", {"json": body(amount=-5)}, 422, "validation", "amount"),
    ("amount-float", {"json": body(amount=12.5)}, 422, "validation", "amount"),
    ("amount-whole-float", {"json": body(amount=12.0)}, 422, "validation", "amount"),
    ("amount-string", {"json": body(amount="12")}, 422, "validation", "amount"),
    ("amount-bool", {"json": body(amount=True)}, 422, "validation", "amount"),
    ("amount-null", {"json": body(amount=None)}, 422, "validation", "amount"),
    ("amount-huge", {"json": body(amount=10**15)}, 422, "validation", "amount"),
    ("amount-missing", {"json": body(amount=...)}, 422, "validation", "amount"),
    ("currency-unknown", {"json": body(currency="JPY")}, 422, "validation", "currency"),
    ("currency-lower", {"json": body(currency="eur")}, 422, "validation", "currency"),
    ("currency-missing", {"json": body(currency=...)}, 422, "validation", "currency"),
    ("reference-empty", {"json": body(reference="")}, 422, "validation", "reference"),
    ("reference-long", {"json": body(reference="r" * 65)}, 422, "validation", "reference"),
    ("reference-control", {"json": body(reference="a\nb")}, 422, "validation", "reference"),
    ("reference-number", {"json": body(reference=17)}, 422, "validation", "reference"),
    ("online-unknown", {"json": body(online="sometimes")}, 422, "validation", "online"),
    ("unknown-field", {"json": body(tip=100)}, 422, "validation", "tip"),
    ("pan-in-reference", {"json": body(reference=TEST_PAN)}, 422, "card-data", "reference"),
    (
        "spaced-pan-in-reference",
        {"json": body(reference="order 4111 1111 1111 1111")},
        422,
        "card-data",
        "reference",
    ),
    ("pan-field", {"json": body(pan="5555555555554444")}, 422, "card-data", "pan"),
    ("track-field", {"json": body(track2=f";{TEST_PAN}=2512?")}, 422, "card-data", "track2"),
    ("cvv-field", {"json": body(cvv="123")}, 422, "card-data", "cvv"),
    ("invalid-json", {"content": b'{"amount": 12,'}, 400, "bad-request", "(body)"),
    ("not-utf8", {"content": b'{"reference": "\xff"}'}, 400, "bad-request", "(body)"),
    ("nan", {"content": b'{"amount": NaN}'}, 400, "bad-request", "(body)"),
    ("array", {"content": b"[1, 2]"}, 400, "bad-request", "(body)"),
    ("string", {"content": b'"sale"'}, 400, "bad-request", "(body)"),
    ("empty", {"content": b""}, 400, "bad-request", "(body)"),
    ("deep", {"content": b"[" * 30000 + b"]" * 30000}, 400, "bad-request", "(body)"),
    (
        "deep-object",
        {"content": b'{"a":' * 5000 + b"1" + b"}" * 5000},
        400,
        "bad-request",
        "(body)",
    ),
    (
        "too-large",
        {"json": body(reference="r", note="x" * 70_000)},
        413,
        "payload-too-large",
        "(body)",
    ),
    (
        "missing-key",
        {"json": SALE, "headers": {}},
        400,
        "missing-idempotency-key",
        "Idempotency-Key",
    ),
    (
        "long-key",
        {"json": SALE, "headers": {"Idempotency-Key": "k" * 129}},
        400,
        "invalid-idempotency-key",
        "Idempotency-Key",
    ),
    (
        "non-ascii-key",
        {"json": SALE, "headers": {"Idempotency-Key": "k\xe9y".encode("latin-1")}},
        400,
        "invalid-idempotency-key",
        "Idempotency-Key",
    ),
    (
        "pan-as-key",
        {"json": SALE, "headers": {"Idempotency-Key": TEST_PAN}},
        422,
        "card-data",
        "Idempotency-Key",
    ),
    (
        "text-plain",
        {"content": json.dumps(SALE).encode(), "headers": {**KEY, "Content-Type": "text/plain"}},
        415,
        "unsupported-media-type",
        "Content-Type",
    ),
    (
        "no-content-type",
        {"content": json.dumps(SALE).encode(), "headers": KEY},
        415,
        "unsupported-media-type",
        "Content-Type",
    ),
    (
        "gzip",
        {
            "content": json.dumps(SALE).encode(),
            "headers": {**KEY, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        },
        415,
        "unsupported-media-type",
        "Content-Encoding",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "name", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_before_the_engine(
    client: httpx.Client,
    engine: FakeEngine,
    kwargs: dict[str, Any],
    status: int,
    name: str,
    field: str,
) -> None:
    kwargs = dict(kwargs)
    explicit = "headers" in kwargs
    headers = kwargs.pop("headers", KEY)
    if "content" in kwargs and not explicit:
        headers = {**headers, "Content-Type": "application/json"}
    reply = client.post("/v1/sales", headers=headers, **kwargs)
    problem_of(reply, status, name, field)
    assert engine.calls == []
    assert TEST_PAN not in reply.text and "5555555555554444" not in reply.text


def test_content_length_over_the_limit_is_refused_unread(
    api: BackgroundApi, engine: FakeEngine
) -> None:
    # Declare 70000 bytes, send two: the answer comes from the header alone.
    request = (
        b"POST /v1/sales HTTP/1.1\r\nHost: till\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"\r\nIdempotency-Key: k-1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 70000\r\n\r\n{}"
    )  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(api.socket_path))
        sock.sendall(request)
        head = ""
        while "payload-too-large" not in head:
            data = sock.recv(65536)
            if not data:
                break
            head += data.decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert "application/problem+json" in head and "payload-too-large" in head
    assert engine.calls == []


def test_chunked_body_is_cut_off_while_reading(client: httpx.Client, engine: FakeEngine) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reference": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    headers = {**KEY, "Content-Type": "application/json"}
    reply = client.post("/v1/sales", headers=headers, content=chunks())
    problem_of(reply, 413, "payload-too-large", "(body)")
    assert engine.calls == []


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "nan", "inf", "1e400"])
def test_bad_wait_is_400_naming_wait(client: httpx.Client, engine: FakeEngine, wait: str) -> None:
    sale_id = client.post("/v1/sales", json=SALE, headers=KEY).json()["id"]
    engine.calls.clear()
    problem_of(
        client.get(f"/v1/sales/{sale_id}", params={"wait": wait}), 400, "bad-request", "wait"
    )
    assert engine.calls == []


def test_refusals_journal_nothing_then_a_good_sale_passes(
    api: BackgroundApi, client: httpx.Client, engine: FakeEngine
) -> None:
    for _, kwargs, *_ in CASES[:5]:
        client.post("/v1/sales", headers=KEY, **kwargs)
    assert engine.mutating_calls() == []
    assert client.post("/v1/sales", json=SALE, headers=KEY).status_code == 202
    assert [c[0] for c in engine.mutating_calls()] == ["create_sale"]
