"""UnifiedPOS CheckHealth for the card reader: internal, external, interactive.

- internal: status query (framed) or link check (magtek); no card needed.
- external: arm and expect a swipe within a timeout; the read is wiped at once.
- interactive: as external, then a technician confirms what was read.

Results carry only masked PAN, brand, expiry and track quality, never card data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DeviceError
from ..health import HealthLevel, HealthResult

if TYPE_CHECKING:
    from ..cardreader import CardReader


def check_reader_health(
    reader: CardReader,
    level: HealthLevel,
    *,
    timeout_s: float,
    confirm: Callable[[str], bool] | None,
) -> HealthResult:
    device = reader.device_id
    if level is HealthLevel.INTERNAL:
        return _internal(reader)
    if level is HealthLevel.INTERACTIVE and confirm is None:
        return HealthResult.make(
            device, level, "needs a confirm callback (a technician at the reader)"
        )
    try:
        with reader.read_card(timeout_s) as card:
            details: dict[str, Any] = card.summary()
            details.pop("pan_token")
    except DeviceError as exc:
        return HealthResult.make(device, level, exc.message, protocol=reader.protocol)
    if confirm is not None and level is HealthLevel.INTERACTIVE:
        brand = details["brand"] or "unknown brand"
        question = (
            f"Read card {details['masked_pan']} ({brand}, expiry {details['expiry']}, "
            f"tracks {details['track_quality']}). Is this the card you swiped?"
        )
        if not confirm(question):
            return HealthResult.make(
                device, level, "technician did not confirm the card read", **details
            )
    return HealthResult.make(device, level, None, **details)


def _internal(reader: CardReader) -> HealthResult:
    level = HealthLevel.INTERNAL
    try:
        status = reader.status()
    except DeviceError as exc:
        return HealthResult.make(reader.device_id, level, exc.message, protocol=reader.protocol)
    details = status.as_dict()
    if not status.online:
        return HealthResult.make(reader.device_id, level, "reader link is down", **details)
    if status.state == "fault":
        return HealthResult.make(reader.device_id, level, "reader reports a fault", **details)
    if reader.protocol == "magtek":
        details["note"] = "magtek protocol has no status query; link checked only"
    return HealthResult.make(reader.device_id, level, None, **details)
