"""``device_fault``: the terminal itself reports a broken card reader or printer.

A posedge agent polls its reader and printer every 10 s and turns a failing check into a
health alert with its own lifecycle (docs/health.md); every heartbeat carries the polled
``devices`` states and the ``health`` block (checks with their ``fix``, alerts with
``labels.severity``). This signal reads the latest heartbeat of each terminal:

- an agent with health checks (a ``health`` block, ``enabled`` not false): active while a
  **critical** alert of a ``reader.*`` or ``printer.*`` check is firing or flapping — the
  terminal already waited its ``alert_for``, so the back office fires at once;
- an older agent, or one with its checks disabled: active while ``devices.reader`` or
  ``devices.printer`` is in state ``fault`` or ``unavailable``.

The summary is the terminal's own (``store001-lane02: the card reader is disconnected``)
and the details carry its ``fix`` lines. A terminal whose heartbeats stopped keeps its
last reported state (``terminal_not_alive`` says it is gone). No statistics.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .config import DEVICE_FAULT

DEVICE_PREFIXES = ("reader.", "printer.")
BAD_DEVICE_STATES = ("fault", "unavailable")
_MARKERS = ('"critical"', '"fault"', '"unavailable"')
DEVICE_FIX = {
    "reader": "check the card reader's cable and power (replug it); replace it if it stays",
    "printer": "check the printer's power, cover, paper and cable",
}


def device_faults(heartbeat: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The critical device problems a heartbeat reports: ``name``, ``summary``, ``fix``,
    ``since`` (the terminal's firing time, when it has one)."""
    if not isinstance(heartbeat, dict):
        return []
    health = heartbeat.get("health")
    if isinstance(health, dict) and health.get("enabled", True) is not False:
        fixes = {
            str(c.get("name")): c.get("fix")
            for c in health.get("checks") or []
            if isinstance(c, dict)
        }
        out = []
        for alert in health.get("alerts") or []:
            if not isinstance(alert, dict):
                continue
            name = str(alert.get("name", ""))
            labels = alert.get("labels") or {}
            if (
                name.startswith(DEVICE_PREFIXES)
                and alert.get("state") in ("firing", "flapping")
                and isinstance(labels, dict)
                and labels.get("severity") == "critical"
            ):
                fix = fixes.get(name) or DEVICE_FIX[name.split(".", 1)[0]]
                out.append({"name": name, "summary": str(alert.get("summary") or name)[:300],
                            "fix": str(fix)[:300], "since": alert.get("since"),
                            "state": alert.get("state")})  # fmt: skip
        return out
    out = []
    devices = heartbeat.get("devices") or {}
    for device in ("reader", "printer"):
        status = devices.get(device) if isinstance(devices, dict) else None
        if isinstance(status, dict) and status.get("state") in BAD_DEVICE_STATES:
            faults = ", ".join(str(f) for f in status.get("faults") or [])[:200]
            label = "card reader" if device == "reader" else "printer"
            out.append({
                "name": f"devices.{device}",
                "summary": f"the {label} is {status['state']}" + (f" ({faults})" if faults else ""),
                "fix": DEVICE_FIX[device], "since": None, "state": status["state"],
            })  # fmt: skip
    return out


def device_observations(
    rows: Iterable[tuple[str, str | None]], store_of: Callable[[str], str]
) -> list[tuple[str, str, bool, str, dict[str, Any], float]]:
    """The terminals reporting a device fault now, from (terminal, heartbeat JSON) rows:
    (terminal, store, True, summary, details, value). Only active ones: the engine
    resolves an open alert whose terminal is no longer listed. A heartbeat whose text
    names no critical alert and no bad device state is not parsed (the common case: a
    10,000-terminal fleet costs a scan of the texts, not 10,000 JSON parses)."""
    out = []
    for terminal, text in rows:
        if not text or not any(word in text for word in _MARKERS):
            continue
        try:
            heartbeat = json.loads(text)
        except ValueError:
            continue
        found = device_faults(heartbeat)
        if not found:
            continue
        summary = f"{terminal}: " + "; ".join(f["summary"] for f in found)
        details = {"faults": found, "fix": [f["fix"] for f in found],
                   "devices": heartbeat.get("devices") or {}}  # fmt: skip
        out.append((terminal, store_of(terminal), True, summary, details, float(len(found))))
    return out


__all__ = ["DEVICE_FAULT", "device_faults", "device_observations"]
