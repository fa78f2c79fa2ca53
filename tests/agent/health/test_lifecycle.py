"""The alert lifecycle: pending/firing/resolved, hysteresis, flapping, and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.agent.health.lifecycle import (
    AlertLifecycle,
    AlertRule,
    AlertState,
    Threshold,
    Transition,
    TransitionKind,
)

K = TransitionKind


def kinds(transitions: list[Transition]) -> list[TransitionKind]:
    return [t.kind for t in transitions]


def test_pending_then_firing_after_for() -> None:
    lc = AlertLifecycle(AlertRule(for_s=30))
    assert kinds(lc.observe("printer.paper", 0, bad=True)) == [K.PENDING]
    assert lc.state("printer.paper") is AlertState.PENDING
    assert lc.observe("printer.paper", 29.9, bad=True) == []
    [fired] = lc.observe("printer.paper", 30, bad=True)
    assert fired.kind is K.FIRING and fired.previous is AlertState.PENDING
    assert fired.since == 30 and fired.at == 30
    assert lc.observe("printer.paper", 100, bad=True) == []


def test_zero_for_fires_at_once() -> None:
    lc = AlertLifecycle()
    assert kinds(lc.observe("k", 5, bad=True)) == [K.PENDING, K.FIRING]
    assert lc.state("k") is AlertState.FIRING


def test_pending_cleared_is_cancelled_not_resolved() -> None:
    lc = AlertLifecycle(AlertRule(for_s=30))
    lc.observe("k", 0, bad=True)
    assert kinds(lc.observe("k", 10, bad=False)) == [K.CANCELLED]
    assert lc.state("k") is AlertState.INACTIVE
    # a new bad spell starts the for_s count again
    lc.observe("k", 20, bad=True)
    assert lc.observe("k", 45, bad=True) == []
    assert kinds(lc.observe("k", 50, bad=True)) == [K.FIRING]


def test_keep_firing_for_delays_resolution_and_rebad_resets_it() -> None:
    lc = AlertLifecycle(AlertRule(keep_firing_for_s=60))
    lc.observe("k", 0, bad=True)
    assert lc.observe("k", 10, bad=False) == []
    assert lc.observe("k", 69, bad=False) == []
    assert lc.observe("k", 70, bad=True) == []  # bad again: still the same firing alert
    assert lc.observe("k", 80, bad=False) == []
    assert lc.observe("k", 139, bad=False) == []
    [resolved] = lc.observe("k", 140, bad=False)
    assert resolved.kind is K.RESOLVED and resolved.since == 0
    assert lc.alerts() == []


def test_high_is_bad_hysteresis() -> None:
    rule = AlertRule(threshold=Threshold(fire=0.9, clear=0.7))
    lc = AlertLifecycle(rule)
    assert lc.observe("disk", 0, value=0.89) == []
    assert kinds(lc.observe("disk", 1, value=0.9)) == [K.PENDING, K.FIRING]
    assert lc.observe("disk", 2, value=0.8) == []  # between the lines: still bad
    assert lc.observe("disk", 3, value=0.85) == []
    [resolved] = lc.observe("disk", 4, value=0.7)
    assert resolved.kind is K.RESOLVED and resolved.value == 0.7
    assert lc.observe("disk", 5, value=0.89) == []  # below fire: stays clear


def test_low_is_bad_hysteresis() -> None:
    rule = AlertRule(threshold=Threshold(fire=1e9, clear=2e9, high_is_bad=False))
    lc = AlertLifecycle(rule)
    assert lc.observe("free", 0, value=5e9) == []
    assert K.FIRING in kinds(lc.observe("free", 1, value=0.5e9))
    assert lc.observe("free", 2, value=1.5e9) == []
    assert kinds(lc.observe("free", 3, value=2.5e9)) == [K.RESOLVED]


@pytest.mark.parametrize(
    ("fire", "clear", "high", "words"),
    [(0.5, 0.7, True, "must be <= fire"), (0.5, 0.3, False, "must be >= fire")],
)
def test_threshold_the_wrong_way_round_is_refused(
    fire: float, clear: float, high: bool, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Threshold(fire, clear, high)


def test_bad_rules_and_observations_are_refused() -> None:
    with pytest.raises(ValueError, match="for_s is -1"):
        AlertRule(for_s=-1)
    with pytest.raises(ValueError, match="flap_changes is 1"):
        AlertRule(flap_changes=1)
    with pytest.raises(ValueError, match="needs bad="):
        AlertLifecycle().observe("k", 0, value=3.0)


def test_flapping_collapses_into_one_alert_until_stable() -> None:
    rule = AlertRule(keep_firing_for_s=0, flap_changes=4, flap_window_s=100, flap_stable_s=50)
    lc = AlertLifecycle(rule)
    seen: list[TransitionKind] = []
    for t, bad in [(0, True), (10, False), (20, True), (30, False)]:
        seen += kinds(lc.observe("k", t, bad=bad))
    assert seen == [K.PENDING, K.FIRING, K.RESOLVED, K.PENDING, K.FIRING, K.FLAPPING]
    assert lc.state("k") is AlertState.FLAPPING
    # more flips while flapping: no more transitions
    for t, bad in [(40, True), (45, False), (60, True)]:
        assert lc.observe("k", t, bad=bad) == []
    assert lc.observe("k", 109, bad=True) == []
    # stable (bad) for flap_stable_s: the flapping alert resolves; a plain firing one replaces it
    assert kinds(lc.observe("k", 110, bad=True)) == [K.RESOLVED, K.PENDING, K.FIRING]
    assert [a.state for a in lc.alerts()] == [AlertState.FIRING]


def test_flapping_ends_clear_when_stably_good() -> None:
    rule = AlertRule(flap_changes=3, flap_window_s=100, flap_stable_s=20)
    lc = AlertLifecycle(rule)
    for t, bad in [(0, True), (1, False), (2, True), (3, False)]:
        lc.observe("k", t, bad=bad)
    assert lc.state("k") is AlertState.FLAPPING
    assert kinds(lc.observe("k", 23, bad=False)) == [K.RESOLVED]
    assert lc.alerts() == []


def test_slow_changes_are_not_flapping() -> None:
    rule = AlertRule(flap_changes=3, flap_window_s=10)
    lc = AlertLifecycle(rule)
    for i in range(10):
        lc.observe("k", i * 20, bad=i % 2 == 0)
        assert lc.state("k") is not AlertState.FLAPPING


def test_alerts_carry_value_labels_summary_and_keys_are_independent() -> None:
    lc = AlertLifecycle(rules={"slow": AlertRule(for_s=100)})
    lc.observe("fast", 0, bad=True, value=3.0, labels={"device": "printer"}, summary="paper end")
    lc.observe("slow", 0, bad=True)
    [fast, slow] = lc.alerts()
    assert (fast.key, fast.state, fast.value, dict(fast.labels), fast.summary) == (
        "fast", AlertState.FIRING, 3.0, {"device": "printer"}, "paper end"
    )  # fmt: skip
    assert (slow.key, slow.state) == ("slow", AlertState.PENDING)
    lc.forget("fast")
    assert [a.key for a in lc.alerts()] == ["slow"]


def test_time_going_backwards_does_not_fire_early() -> None:
    lc = AlertLifecycle(AlertRule(for_s=30))
    lc.observe("k", 100, bad=True)
    assert lc.observe("k", 50, bad=True) == []
    assert lc.state("k") is AlertState.PENDING


# ------------------------------------------------------------------ invariants

observations = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=50, allow_nan=False),  # time step
        st.booleans(),
    ),
    max_size=60,
)
rules = st.builds(
    AlertRule,
    for_s=st.sampled_from([0.0, 5.0, 30.0]),
    keep_firing_for_s=st.sampled_from([0.0, 10.0, 60.0]),
    flap_changes=st.sampled_from([0, 2, 4, 6]),
    flap_window_s=st.sampled_from([20.0, 100.0]),
    flap_stable_s=st.sampled_from([0.0, 15.0, 80.0]),
)


@settings(max_examples=300, deadline=None)
@given(rule=rules, steps=observations)
def test_invariants(rule: AlertRule, steps: list[tuple[float, bool]]) -> None:
    lc = AlertLifecycle(rule)
    now = 0.0
    state = AlertState.INACTIVE
    bad_since: float | None = None
    good_since: float | None = None
    for dt, bad in steps:
        now += dt
        if bad and bad_since is None:
            bad_since, good_since = now, None
        if not bad and good_since is None:
            bad_since, good_since = None, now
        for t in lc.observe("k", now, bad=bad):
            # transitions chain: each starts where the last ended
            assert t.previous is state
            if t.kind is K.RESOLVED:
                assert state.is_open, "resolved without firing"
            if t.kind is K.FIRING:
                assert not state.is_open, "two firing for one key"
                assert bad and bad_since is not None and now - bad_since >= rule.for_s
            if t.kind is K.CANCELLED:
                assert state is AlertState.PENDING
            if t.kind is K.FLAPPING:
                assert state is not AlertState.FLAPPING
            if t.kind is K.RESOLVED and t.previous is AlertState.FIRING:
                assert not bad and good_since is not None
                assert now - good_since >= rule.keep_firing_for_s
            state = t.state
        assert lc.state("k") is state
        assert len([a for a in lc.alerts() if a.state.is_open]) <= 1
        if rule.flap_changes == 0:
            assert state is not AlertState.FLAPPING
        if state is AlertState.PENDING:
            assert bad


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), max_size=50),
    fire=st.floats(min_value=0.2, max_value=1),
    gap=st.floats(min_value=0, max_value=0.2),
)
def test_hysteresis_never_fires_below_fire_nor_clears_above_clear(
    values: list[float], fire: float, gap: float
) -> None:
    threshold = Threshold(fire=fire, clear=fire - gap)
    lc = AlertLifecycle(AlertRule(threshold=threshold))
    for i, value in enumerate(values):
        for t in lc.observe("k", float(i), value=value):
            if t.kind is K.FIRING:
                assert value >= fire
            if t.kind is K.RESOLVED:
                assert value <= fire - gap
