"""The till API refuses card numbers however they are written, over real HTTP (issue 11).

Free text reaches the API in ``reference`` and the ``Idempotency-Key`` header; the
whole body goes through :func:`posedge.agent.carddata.find_card_data` before the
model, so a card number is refused as ``card-data`` (naming the field) and never
reaches the engine — while ids, digests and Luhn-failing order numbers still sell.
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from .fakes import FakeEngine
from .test_endpoints import SALE, problem_of

WRITTEN_CARD_NUMBERS = [
    "order4111111111111111",  # glued to letters
    "４１１１１１１１１１１１１１１１",  # full-width digits
    "٤١١١ ١١١١ ١١١١ ١١١١",  # Arabic-Indic digits
    "۵۵۵۵-۵۵۵۵-۵۵۵۵-۴۴۴۴",  # Extended Arabic-Indic (Persian) digits
    "4111.1111.1111.1111",
    "4111/1111/1111/1111",
    "4111  1111  1111  1111",  # doubled spaces
    "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces
    "ref 3782-822463-10005",  # Amex grouping
    "4111 1111-1111 1111",  # mixed separators
]
NOT_CARD_NUMBERS = [
    "2419300d-b10b-470c-b5c8-ebbed0d153ef",  # a UUID (fixed: parameters must not vary)
    hashlib.sha256(b"basket 17").hexdigest(),  # 64 hex, the longest reference allowed
    hashlib.sha1(b"basket 17").hexdigest(),
    "order 4111111111111112",  # Luhn fails
    "order 1000000123456789012345",  # long order number, no card network
]


def post(client: httpx.Client, key: str, **body: object) -> httpx.Response:
    return client.post("/v1/sales", json={**SALE, **body}, headers={"Idempotency-Key": key})


@pytest.mark.parametrize("reference", WRITTEN_CARD_NUMBERS)
def test_a_card_number_in_the_reference_is_refused(
    client: httpx.Client, engine: FakeEngine, reference: str
) -> None:
    reply = post(client, "k-card", reference=reference)
    problem_of(reply, 422, "card-data", "reference")
    assert reference not in reply.text and "1111" not in reply.text
    assert engine.calls == []


@pytest.mark.parametrize("key", ["order4111111111111111", "k-4111.1111.1111.1111"])
def test_a_card_number_in_the_idempotency_key_is_refused(
    client: httpx.Client, engine: FakeEngine, key: str
) -> None:
    reply = post(client, key)
    problem_of(reply, 422, "card-data", "Idempotency-Key")
    assert engine.calls == []


def test_a_card_number_as_a_json_number_is_refused(
    client: httpx.Client, engine: FakeEngine
) -> None:
    reply = post(client, "k-number", card=4111111111111111)
    problem_of(reply, 422, "card-data", "card")
    assert "4111111111111111" not in reply.text and engine.calls == []


@pytest.mark.parametrize("reference", NOT_CARD_NUMBERS)
def test_ids_digests_and_order_numbers_sell(
    client: httpx.Client, engine: FakeEngine, reference: str
) -> None:
    reply = post(client, f"k-{uuid.uuid4().hex}", reference=reference)
    assert reply.status_code == 202, reply.text
    assert engine.calls[0][1][1].reference == reference
