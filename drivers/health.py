"""UnifiedPOS-style health checks: levels and result text shared by all devices."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class HealthLevel(enum.StrEnum):
    INTERNAL = "internal"
    """No physical change: status queries only."""
    EXTERNAL = "external"
    """May move hardware: prints a test receipt, arms the reader."""
    INTERACTIVE = "interactive"
    """Needs a person to confirm what the device did."""


@dataclass(frozen=True)
class HealthResult:
    device: str
    level: HealthLevel
    ok: bool
    text: str
    """UnifiedPOS-style, e.g. ``"Internal HCheck: Successful"``."""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls, device: str, level: HealthLevel, problem: str | None, **details: Any
    ) -> HealthResult:
        label = f"{level.value.capitalize()} HCheck"
        text = f"{label}: Successful" if problem is None else f"{label}: {problem}"
        return cls(device=device, level=level, ok=problem is None, text=text, details=details)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "level": self.level.value,
            "ok": self.ok,
            "text": self.text,
            "details": self.details,
        }
