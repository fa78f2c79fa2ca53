"""The alerting settings: evaluation interval, lifecycle rules per alert name, grouping,
inhibition, repeat interval, delivery retries. Durations in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from posedge.agent.health.lifecycle import AlertRule

from ..anomalies import AnomalyConfig
from ..silence import SIGNAL_KINDS, SilenceConfig

STORE_OFFLINE = "store_offline"
#: The silence alerts a store offline mutes on its lanes.
INHIBITED_BY_STORE_OFFLINE: tuple[str, ...] = SIGNAL_KINDS
DEVICE_FAULT = "device_fault"
#: The alerts a terminal's own device fault mutes on that terminal: the lane is not
#: selling because its reader (or printer) is broken, and the device alert says so.
INHIBITED_BY_DEVICE_FAULT: tuple[str, ...] = ("lane_not_selling",)

# A silence condition must hold a minute before it fires (one more evaluation: a blip
# does not page anyone) and stays firing five minutes after it cleared; six changes
# within an hour is one flapping alert instead of many.
SILENCE_RULE = AlertRule(
    for_s=60.0, keep_firing_for_s=300.0, flap_changes=6, flap_window_s=3600.0,
    flap_stable_s=1800.0,
)  # fmt: skip
# An anomaly alert is active while a flag of its kind is recent (``anomaly_hold_s``): it
# fires at once and resolves when no new flag came for that long.
ANOMALY_RULE = AlertRule()
STORE_RULE = AlertRule(for_s=0.0, keep_firing_for_s=300.0)
# The terminal already waited its own alert_for before it reported the device alert: fire
# at once; keep firing a few minutes after it cleared, so a replug that fails again within
# minutes stays one alert.
DEVICE_RULE = AlertRule(for_s=0.0, keep_firing_for_s=300.0, flap_changes=6,
                        flap_window_s=3600.0, flap_stable_s=1800.0)  # fmt: skip


class AlertConfigError(ValueError):
    """A setting is out of range; the message names it and what is allowed."""


@dataclass(frozen=True)
class AlertConfig:
    interval_s: float = 30.0
    """How often ``serve`` evaluates (0: never; ``alerts evaluate`` runs one)."""
    repeat_interval_s: float = 4 * 3600.0
    """A store group with alerts still open is notified again after this long."""
    alertmanager_resend_s: float = 60.0
    """Firing alerts are re-sent to Alertmanager this often (it expires them otherwise)."""
    anomaly_hold_s: float = 3600.0
    """An anomaly alert stays active this long after its latest flag."""
    store_offline_fraction: float = 0.5
    """A store is offline when more than this share of its lanes is not alive or not
    sending (and at least ``store_offline_min_lanes`` are)."""
    store_offline_min_lanes: int = 2
    retry_base_s: float = 2.0
    retry_cap_s: float = 600.0
    delivery_timeout_s: float = 10.0
    delivery_lease_s: float = 15.0
    """A delivery attempt in progress blocks others for this long (a dead replica's
    claim expires); more than ``delivery_timeout_s``."""
    generator_url: str = "http://localhost:8700/"
    """The back office's address in Alertmanager's ``generatorURL``."""
    silence: SilenceConfig = field(default_factory=SilenceConfig)
    anomalies: AnomalyConfig = field(default_factory=AnomalyConfig)

    def __post_init__(self) -> None:
        for name in ("interval_s", "repeat_interval_s", "alertmanager_resend_s",
                     "anomaly_hold_s", "retry_base_s", "retry_cap_s", "delivery_timeout_s",
                     "delivery_lease_s"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise AlertConfigError(f"alerts.{name} is {value!r}; give seconds >= 0")
        if self.delivery_lease_s <= self.delivery_timeout_s:
            raise AlertConfigError(
                f"alerts.delivery_lease_s ({self.delivery_lease_s:g}) must be more than "
                f"delivery_timeout_s ({self.delivery_timeout_s:g}): a slow delivery would be "
                "sent twice"
            )
        if not 0.0 <= self.store_offline_fraction < 1.0:
            raise AlertConfigError(
                f"alerts.store_offline_fraction is {self.store_offline_fraction!r}; "
                "give a share from 0 to below 1 (0.5: most lanes)"
            )
        if self.store_offline_min_lanes < 1:
            raise AlertConfigError(
                f"alerts.store_offline_min_lanes is {self.store_offline_min_lanes!r}; give >= 1"
            )

    def rule_for(self, alertname: str) -> AlertRule:
        if alertname in SIGNAL_KINDS:
            return SILENCE_RULE
        if alertname == STORE_OFFLINE:
            return STORE_RULE
        if alertname == DEVICE_FAULT:
            return DEVICE_RULE
        return ANOMALY_RULE
