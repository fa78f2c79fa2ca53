"""The lifecycle's saved state: export_state / restore_state round-trip through JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.agent.health.lifecycle import AlertLifecycle, AlertRule, AlertState

RULE = AlertRule(for_s=5.0, keep_firing_for_s=10.0, flap_changes=4, flap_window_s=100.0,
                 flap_stable_s=15.0)  # fmt: skip
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=30, allow_nan=False), st.booleans()),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(before=steps, after=steps)
def test_a_restored_lifecycle_continues_exactly_like_the_original(
    before: list[tuple[float, bool]], after: list[tuple[float, bool]]
) -> None:
    """Stop anywhere, save through JSON, restore into a new lifecycle: the transitions
    from there on are the ones the uninterrupted lifecycle produces."""
    whole = AlertLifecycle(RULE)
    now = 0.0
    for dt, bad in before:
        now += dt
        whole.observe("k", now, bad=bad, value=float(bad), labels={"check": "k"}, summary="s")
    saved = json.loads(json.dumps(whole.export_state("k")))
    restored = AlertLifecycle(RULE)
    restored.restore_state("k", saved)
    assert restored.state("k") is whole.state("k")
    assert restored.alerts() == whole.alerts()
    for dt, bad in after:
        now += dt
        expected = whole.observe("k", now, bad=bad)
        assert restored.observe("k", now, bad=bad) == expected
        assert restored.export_state("k") == whole.export_state("k")


def test_unknown_keys_and_malformed_state() -> None:
    lifecycle = AlertLifecycle(RULE)
    assert lifecycle.export_state("never") is None
    lifecycle.observe("k", 0.0, bad=True)
    doc = lifecycle.export_state("k")
    assert doc is not None and doc["state"] == "pending" and doc["bad"] is True
    for broken in ({**doc, "state": "exploded"}, {k: v for k, v in doc.items() if k != "since"},
                   {**doc, "changes": ["soon"]}):  # fmt: skip
        with pytest.raises(ValueError, match="alert 'x': saved lifecycle state is malformed"):
            lifecycle.restore_state("x", broken)
    assert lifecycle.state("x") is AlertState.INACTIVE  # nothing half-restored
    # Old documents (fields added later missing) take the defaults.
    lifecycle.restore_state("old", {"state": "firing", "bad": True, "since": 1.0,
                                    "bad_since": 0.0})  # fmt: skip
    assert lifecycle.state("old") is AlertState.FIRING
