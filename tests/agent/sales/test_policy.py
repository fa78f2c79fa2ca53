"""The offline policy: every rule and reason, inclusive limits, and a property over sequences."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.agent.config import OfflineConfig
from posedge.agent.sales.model import OnlineMode, SaleRequest
from posedge.agent.sales.policy import (
    Exposure,
    OfflineDecision,
    OfflinePolicy,
    entry_mode_of,
    format_amount,
    minor_units,
)
from posedge.drivers.reader.tracks import SensitiveTracks, decode_card, encode_track2

CONFIG = OfflineConfig(
    max_per_sale={"EUR": 10000, "JPY": 5000, "USD": 2000},
    max_total={"EUR": 50000, "JPY": 20000, "USD": 5000},
    max_count=5,
    forward_by="72h",
)
POLICY = OfflinePolicy(CONFIG)


def sale(amount: int = 1000, currency: str = "EUR", online: OnlineMode = "prefer") -> SaleRequest:
    return SaleRequest(amount=amount, currency=currency, reference="r", online=online)


def decide(request: SaleRequest, entry: str = "swipe", **kw: object) -> OfflineDecision:
    exposure = kw.pop("exposure", Exposure())
    assert isinstance(exposure, Exposure)
    return POLICY.decide(request, entry, exposure, **kw)  # type: ignore[arg-type]


def test_approves_within_limits() -> None:
    decision = decide(sale())
    assert decision == OfflineDecision(True)
    assert decision.as_dict() == {"approved": True, "reason": None, "code": None}


@pytest.mark.parametrize(
    ("decision", "code", "reason"),
    [
        (
            OfflinePolicy(OfflineConfig(enabled=False)).decide(sale(), "swipe", Exposure()),
            "disabled",
            "offline approvals are disabled",
        ),
        (decide(sale(online="require")), "online_required", "online required for this sale"),
        (
            decide(sale(), "fallback"),
            "entry_mode",
            "swipe fallback on a chip card is never approved offline",
        ),
        (decide(sale(), "manual"), "entry_mode", "manual entry is never approved offline"),
        (decide(sale(), "contactless"), "entry_mode", "entry mode contactless is never"),
        (
            decide(sale(), card_expired=True),
            "card_expired",
            "an expired card is never approved offline",
        ),
        (decide(sale(currency="CHF")), "no_limit", "currency CHF has no offline limit"),
        (
            decide(sale(10001)),
            "per_sale_limit",
            "offline limit for EUR is 100.00 per sale",
        ),
        (
            decide(sale(5001, "JPY")),
            "per_sale_limit",
            "offline limit for JPY is 5000 per sale",
        ),
        (
            decide(sale(), exposure=Exposure.of([("USD", 100)] * 5)),
            "count_limit",
            "too many sales waiting to be forwarded (5)",
        ),
    ],
)
def test_rules_and_reasons(decision: OfflineDecision, code: str, reason: str) -> None:
    assert not decision.approved
    assert decision.code == code
    assert decision.reason is not None and decision.reason.startswith(reason)


def test_total_limit_reason() -> None:
    exposure = Exposure.of([("EUR", 20000)] * 2)  # 400.00 outstanding
    d = decide(sale(10000), exposure=exposure)
    assert d.approved  # exactly 500.00
    exposure.add("EUR", 1)
    d = decide(sale(10000), exposure=exposure)
    assert (d.approved, d.code, d.reason) == (
        False,
        "total_limit",
        "offline total for EUR would exceed 500.00",
    )


def test_offline_ok_and_prefer_both_allowed_offline() -> None:
    assert decide(sale(online="offline-ok")).approved
    assert decide(sale(online="prefer")).approved


def test_rule_order_first_match_wins() -> None:
    disabled = OfflinePolicy(OfflineConfig(enabled=False))
    assert disabled.decide(sale(online="require"), "manual", Exposure()).code == "disabled"
    assert decide(sale(online="require"), "manual").code == "online_required"
    assert decide(sale(10**9, "CHF"), "manual").code == "entry_mode"
    assert decide(sale(10**9, "CHF")).code == "no_limit"


def test_currency_needs_both_limits() -> None:
    policy = OfflinePolicy(OfflineConfig(max_per_sale={"GBP": 100}, max_total={"EUR": 100}))
    for currency in ("GBP", "EUR"):
        d = policy.decide(sale(10, currency), "swipe", Exposure())
        assert d.reason == f"currency {currency} has no offline limit"


@pytest.mark.parametrize(("limit", "ok", "refused"), [(10000, 10000, 10001), (0, None, 1)])
def test_per_sale_boundary(limit: int, ok: int | None, refused: int) -> None:
    policy = OfflinePolicy(OfflineConfig(max_per_sale={"EUR": limit}, max_total={"EUR": 10**9}))
    if ok is not None:
        assert policy.decide(sale(ok), "swipe", Exposure()).approved
    assert policy.decide(sale(refused), "swipe", Exposure()).code == "per_sale_limit"


def test_count_boundary() -> None:
    assert decide(sale(), exposure=Exposure.of([("USD", 1)] * 4)).approved  # 5th is allowed
    assert decide(sale(), exposure=Exposure.of([("USD", 1)] * 5)).code == "count_limit"
    zero = OfflinePolicy(OfflineConfig(max_count=0))
    assert zero.decide(sale(), "swipe", Exposure()).code == "count_limit"


def test_deadline_and_online_first() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert POLICY.deadline(now) == now + timedelta(hours=72)
    with pytest.raises(ValueError, match="timezone-aware"):
        POLICY.deadline(datetime(2024, 5, 1))
    assert POLICY.try_online_first("require", host_down=True)
    assert POLICY.try_online_first("prefer", host_down=True)
    assert POLICY.try_online_first("offline-ok", host_down=False)
    assert not POLICY.try_online_first("offline-ok", host_down=True)
    disabled = OfflinePolicy(OfflineConfig(enabled=False))
    assert disabled.try_online_first("offline-ok", host_down=True)


def test_entry_mode_from_service_code() -> None:
    def read(service_code: str) -> str:
        track2 = encode_track2("4111111111111111", "3012", service_code)
        tracks = SensitiveTracks(track2=track2)
        card = decode_card(tracks, token_key=b"k" * 32, today=date(2024, 5, 1))
        tracks.wipe()
        return entry_mode_of(card)

    assert read("101") == "swipe"
    assert read("201") == "fallback"
    assert read("601") == "fallback"


def test_format_amount() -> None:
    assert format_amount(12345, "EUR") == "123.45"
    assert format_amount(5, "EUR") == "0.05"
    assert format_amount(-105, "USD") == "-1.05"
    assert format_amount(500, "JPY") == "500"
    assert format_amount(1234, "KWD") == "1.234"
    assert minor_units("jpy") == 0 and minor_units("XXX") == 2


def test_exposure_helpers() -> None:
    exposure = Exposure()
    exposure.add("EUR", 100)
    exposure.add("EUR", 50)
    exposure.add("JPY", 7)
    assert exposure.count == 3 and exposure.count_for("EUR") == 2
    assert exposure.amount("EUR") == 150 and exposure.amount("USD") == 0
    assert exposure.as_dict() == {
        "EUR": {"count": 2, "amount": 150},
        "JPY": {"count": 1, "amount": 7},
    }
    snapshot = exposure.copy()
    exposure.remove("JPY", 7)
    assert exposure.as_dict() == {"EUR": {"count": 2, "amount": 150}}
    assert snapshot.count == 3
    with pytest.raises(ValueError, match="rebuild it from the journal"):
        exposure.remove("JPY", 7)
    with pytest.raises(ValueError, match="> 0"):
        exposure.add("EUR", 0)


requests = st.builds(
    sale,
    amount=st.integers(min_value=1, max_value=15000),
    currency=st.sampled_from(["EUR", "JPY", "USD", "CHF"]),
    online=st.sampled_from(["require", "prefer", "offline-ok"]),
)
steps = st.lists(
    st.tuples(st.sampled_from(["sale", "forward"]), requests, st.sampled_from(["swipe", "manual"])),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_property_limits_never_exceeded(script: list[tuple[str, SaleRequest, str]]) -> None:
    exposure = Exposure()
    outstanding: list[tuple[str, int]] = []
    for action, request, entry in script:
        if action == "forward" and outstanding:
            currency, amount = outstanding.pop(0)
            exposure.remove(currency, amount)
            continue
        decision = POLICY.decide(request, entry, exposure)
        if not decision.approved:
            assert decision.reason
            continue
        assert request.online != "require" and entry == "swipe"
        assert request.amount <= CONFIG.max_per_sale[request.currency]
        exposure.add(request.currency, request.amount)
        outstanding.append((request.currency, request.amount))
        assert exposure.count <= CONFIG.max_count
        for currency, totals in exposure.as_dict().items():
            assert totals["amount"] <= CONFIG.max_total[currency]
