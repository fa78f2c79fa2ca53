"""SaleView from the journal's projection row (the one way the till sees a sale)."""

from __future__ import annotations

from typing import Any, cast

from .model import ONLINE_MODES, OnlineMode, ReceiptInfo, ReceiptState, SaleState, SaleView

_RECEIPT_STATES: tuple[ReceiptState, ...] = (
    "pending",
    "printing",
    "printed",
    "failed",
    "not_required",
)


def view_from_row(row: dict[str, Any]) -> SaleView:
    summary: dict[str, Any] = row.get("summary") or {}
    state = SaleState(row["state"]) if row["state"] in SaleState._value2member_map_ else None
    online = summary.get("online")
    receipt_state = summary.get("receipt", "pending")
    copies = summary.get("copies") or []
    return SaleView(
        id=row["txn"],
        state=state or SaleState.CREATED,
        amount=int(row.get("amount") or 0),
        currency=str(row.get("currency") or ""),
        reference=str(summary.get("reference") or ""),
        online=cast(OnlineMode, online) if online in ONLINE_MODES else "prefer",
        created_at=row["created_ts"],
        updated_at=row["updated_ts"],
        receipt=ReceiptInfo(
            state=receipt_state if receipt_state in _RECEIPT_STATES else "pending",
            copies=tuple(str(c) for c in copies) if isinstance(copies, list) else (),
            error=summary.get("receipt_error"),
        ),
        masked_pan=summary.get("masked_pan"),
        brand=summary.get("brand"),
        entry_mode=summary.get("entry_mode"),
        auth_code=summary.get("auth_code"),
        decline_reason=summary.get("reason")
        if row["state"] in ("declined", "reversed", "abandoned", "cancelled")
        else None,
        offline=row["state"] == "approved_offline" or bool(summary.get("offline")),
        forward_state=summary.get("forward"),
    )
