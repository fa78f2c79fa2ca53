"""Terminal health: checks, their scheduler and the alert lifecycle (issue 13)."""

from .model import CheckRegistry, CheckResult, CheckSpec, HealthContext, Status

__all__ = ["CheckRegistry", "CheckResult", "CheckSpec", "HealthContext", "Status"]
