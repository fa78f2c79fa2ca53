"""The store-and-forward decision (DESIGN §7, issue 5 §3): may this sale be approved offline?

:class:`OfflinePolicy` is pure: given the sale request, how the card was
entered and the :class:`Exposure` of offline sales still waiting to be
forwarded, it returns an :class:`OfflineDecision` — approve, or decline with
a reason the till can show. The rules, first match wins:

1. ``offline.enabled = false`` → "offline approvals are disabled".
2. ``online = "require"`` → "online required for this sale".
3. Entry mode: ``swipe`` may go offline; ``fallback`` (a chip card swiped —
   its service code says chip) and ``manual`` never do; any other mode is
   refused too.
4. An expired card is never approved offline (the host cannot be asked).
5. The currency needs both a ``max_per_sale`` and a ``max_total`` entry,
   otherwise "currency CHF has no offline limit".
6. ``amount > max_per_sale[currency]`` → "offline limit for EUR is 100.00 per sale".
7. ``outstanding count >= max_count`` → "too many sales waiting to be forwarded (100)".
8. ``outstanding amount + amount > max_total[currency]`` →
   "offline total for EUR would exceed 500.00".

Limits are inclusive: a sale of exactly the limit is allowed.

``online`` modes: ``require`` never goes offline. ``prefer`` always tries
the host first and falls back to the policy only when the authorization
could not be completed (unreachable, timeout). ``offline-ok`` may skip the
host and go offline at once when the host is already known to be down
(see :meth:`OfflinePolicy.try_online_first`), saving the authorization
timeout at the till; when the host is up it is tried first like ``prefer``.

Money is integer minor units; :func:`format_amount` shows it with the
currency's minor unit (a small ISO 4217 table; 2 decimals by default).

Never does I/O, never reads the clock (``now`` is passed in), never sees
card data: only the entry mode and whether the card is expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from posedge.agent.config import OfflineConfig, parse_duration
from posedge.drivers.reader.tracks import CardRead

from .model import OnlineMode, SaleRequest

EntryMode = Literal["swipe", "fallback", "manual"]
OFFLINE_ENTRY_MODES: frozenset[str] = frozenset({"swipe"})

# ISO 4217 minor units that are not 2; every other currency uses 2.
MINOR_UNITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip
DEFAULT_MINOR_UNITS = 2


def minor_units(currency: str) -> int:
    """Decimal places of ``currency`` (ISO 4217 minor unit)."""
    return MINOR_UNITS.get(currency.upper(), DEFAULT_MINOR_UNITS)


def format_amount(amount: int, currency: str) -> str:
    """``12345, "EUR"`` → ``"123.45"``; ``500, "JPY"`` → ``"500"``. No currency code."""
    digits = minor_units(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"


def entry_mode_of(card: CardRead) -> EntryMode:
    """A swipe's entry mode: ``fallback`` when the service code says the card has a chip."""
    return "fallback" if card.service_code.chip else "swipe"


# ---- exposure -----------------------------------------------------------------
@dataclass
class CurrencyExposure:
    count: int = 0
    amount: int = 0


@dataclass
class Exposure:
    """Offline-approved sales not yet forwarded: count and amount per currency.

    The engine adds a sale when it is approved offline and removes it when the
    forward completes (approved, declined) or the sale expires. Not
    thread-safe: the engine updates it under its own lock.
    """

    per_currency: dict[str, CurrencyExposure] = field(default_factory=dict)

    @classmethod
    def of(cls, sales: Iterable[tuple[str, int]]) -> Exposure:
        """Build from ``(currency, amount)`` pairs (e.g. the journal's outstanding sales)."""
        exposure = cls()
        for currency, amount in sales:
            exposure.add(currency, amount)
        return exposure

    @property
    def count(self) -> int:
        """Outstanding offline sales over all currencies."""
        return sum(c.count for c in self.per_currency.values())

    def count_for(self, currency: str) -> int:
        entry = self.per_currency.get(currency)
        return entry.count if entry else 0

    def amount(self, currency: str) -> int:
        entry = self.per_currency.get(currency)
        return entry.amount if entry else 0

    def add(self, currency: str, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"offline sale amount must be > 0 minor units, got {amount}")
        entry = self.per_currency.setdefault(currency, CurrencyExposure())
        entry.count += 1
        entry.amount += amount

    def remove(self, currency: str, amount: int) -> None:
        """Take one forwarded/expired sale out; refusing to go negative (an engine bug)."""
        entry = self.per_currency.get(currency)
        if entry is None or entry.count < 1 or entry.amount < amount:
            raise ValueError(
                f"offline exposure for {currency} holds no sale of {amount} minor units; "
                "rebuild it from the journal"
            )
        entry.count -= 1
        entry.amount -= amount
        if entry.count == 0:
            del self.per_currency[currency]

    def copy(self) -> Exposure:
        return Exposure(
            {k: CurrencyExposure(v.count, v.amount) for k, v in self.per_currency.items()}
        )

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{"EUR": {"count": n, "amount": m}}`` for ``/v1/status`` and heartbeats."""
        return {
            currency: {"count": entry.count, "amount": entry.amount}
            for currency, entry in sorted(self.per_currency.items())
        }


# ---- decision -----------------------------------------------------------------
DeclineCode = Literal[
    "disabled",
    "online_required",
    "entry_mode",
    "card_expired",
    "no_limit",
    "per_sale_limit",
    "count_limit",
    "total_limit",
]


@dataclass(frozen=True)
class OfflineDecision:
    approved: bool
    reason: str | None = None
    """For a decline: a sentence the till can show. None when approved."""
    code: DeclineCode | None = None
    """For a decline: a stable machine-readable rule name."""

    @classmethod
    def approve(cls) -> OfflineDecision:
        return cls(True)

    @classmethod
    def decline(cls, code: DeclineCode, reason: str) -> OfflineDecision:
        return cls(False, reason, code)

    def as_dict(self) -> dict[str, Any]:
        return {"approved": self.approved, "reason": self.reason, "code": self.code}


_ENTRY_REASONS: dict[str, str] = {
    "fallback": "swipe fallback on a chip card is never approved offline",
    "manual": "manual entry is never approved offline",
}


class OfflinePolicy:
    """Store-and-forward limits from ``[offline]`` config; see the module docstring."""

    def __init__(self, config: OfflineConfig) -> None:
        self.config = config
        self.forward_by = timedelta(seconds=parse_duration(config.forward_by))

    def deadline(self, now: datetime) -> datetime:
        """The forward-by deadline for a sale approved offline at ``now``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        return now + self.forward_by

    def try_online_first(self, online: OnlineMode, *, host_down: bool) -> bool:
        """Whether to send the authorization before considering offline approval.

        Only ``offline-ok`` with a host already known to be down skips it.
        """
        return not (online == "offline-ok" and host_down and self.config.enabled)

    def decide(
        self,
        request: SaleRequest,
        entry_mode: str,
        outstanding: Exposure,
        *,
        card_expired: bool = False,
    ) -> OfflineDecision:
        """Approve offline, or decline with the first rule that refuses."""
        cfg = self.config
        if not cfg.enabled:
            return OfflineDecision.decline("disabled", "offline approvals are disabled")
        if request.online == "require":
            return OfflineDecision.decline("online_required", "online required for this sale")
        if entry_mode not in OFFLINE_ENTRY_MODES:
            reason = _ENTRY_REASONS.get(
                entry_mode, f"entry mode {entry_mode[:16]} is never approved offline"
            )
            return OfflineDecision.decline("entry_mode", reason)
        if card_expired:
            return OfflineDecision.decline(
                "card_expired", "an expired card is never approved offline"
            )
        currency, amount = request.currency, request.amount
        per_sale = cfg.max_per_sale.get(currency)
        total = cfg.max_total.get(currency)
        if per_sale is None or total is None:
            return OfflineDecision.decline("no_limit", f"currency {currency} has no offline limit")
        if amount > per_sale:
            return OfflineDecision.decline(
                "per_sale_limit",
                f"offline limit for {currency} is {format_amount(per_sale, currency)} per sale",
            )
        if outstanding.count >= cfg.max_count:
            return OfflineDecision.decline(
                "count_limit", f"too many sales waiting to be forwarded ({cfg.max_count})"
            )
        if outstanding.amount(currency) + amount > total:
            return OfflineDecision.decline(
                "total_limit",
                f"offline total for {currency} would exceed {format_amount(total, currency)}",
            )
        return OfflineDecision.approve()
