"""What a health check is and what it returns: the one interface the daemon's scheduler,
the alert lifecycle, ``posedge doctor``, ``posedge status``, ``/metrics``, the heartbeat and
the support bundle all share.

A check is a named function from a :class:`HealthContext` (what it may look at) to a
:class:`CheckResult`. Checks never raise for the condition they test: a missing device, a
full disk, an unreachable back office are results (``fail``), not exceptions. A check that
cannot apply here (no printer configured, the daemon is not running) returns ``skip``.
Every ``warn`` and ``fail`` carries a ``fix``: the one thing a technician should do next.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    @property
    def symbol(self) -> str:
        """``posedge doctor``'s column: ✓ ok, ! warn, ✗ fail, - skip."""
        return {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}[self.value]

    @property
    def rank(self) -> int:
        """Worse is larger: the worst of several results is ``max(..., key=rank)``."""
        return {"skip": 0, "ok": 1, "warn": 2, "fail": 3}[self.value]


@dataclass(frozen=True)
class CheckResult:
    name: str
    """Dotted, stable, bounded (a metric label and an alert name): ``printer.paper``."""
    status: Status
    summary: str
    """One line for a person; never card data, tokens or keys."""
    fix: str | None = None
    """Required for ``warn`` and ``fail``: what to do, e.g. ``load a paper roll``."""
    value: float | None = None
    """The measured quantity in base units (seconds, bytes, a ratio), when there is one."""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status in (Status.WARN, Status.FAIL) and not self.fix:
            raise ValueError(f"check {self.name}: a {self.status} result needs a fix line")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "fix": self.fix,
            "value": self.value,
            "details": dict(self.details),
        }


CheckFunction = Callable[["HealthContext"], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str
    """One line for ``posedge doctor --list-checks``."""
    run: CheckFunction
    live_only: bool = False
    """Needs the running daemon's objects (e.g. recent swipe outcomes); ``skip`` offline."""


@dataclass
class HealthContext:
    """Everything a check may read. In the daemon the live objects are filled in; in
    ``posedge doctor`` without a daemon, devices and the journal are opened read-only.
    Fields a check needs but finds ``None`` mean "not available here": return ``skip``
    (or ``fail`` when their absence is the problem, e.g. a configured reader that is gone).
    """

    config: Any
    """:class:`posedge.agent.config.Config`."""
    state_dir: Any
    """:class:`pathlib.Path`."""
    now: float
    """``time.time()`` when the run started: all ages are measured against it."""
    journal: Any = None
    printer: Any = None
    reader: Any = None
    engine: Any = None
    sync: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class CheckRegistry:
    """Named checks in registration order (the order ``doctor`` prints them)."""

    def __init__(self) -> None:
        self._specs: dict[str, CheckSpec] = {}

    def add(self, spec: CheckSpec) -> CheckSpec:
        if spec.name in self._specs:
            raise ValueError(f"health check {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        return spec

    def check(
        self, name: str, description: str, *, live_only: bool = False
    ) -> Callable[[CheckFunction], CheckFunction]:
        """Decorator: ``@registry.check("disk.free", "free space under the state dir")``."""

        def decorate(run: CheckFunction) -> CheckFunction:
            self.add(CheckSpec(name, description, run, live_only))
            return run

        return decorate

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> CheckSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise KeyError(f"no health check named {name!r}; known: {known}") from None

    def specs(self) -> list[CheckSpec]:
        return list(self._specs.values())

    def run(self, ctx: HealthContext, names: list[str] | None = None) -> list[CheckResult]:
        """Run the named checks (all when ``None``); a check that raises becomes ``fail``."""
        results = []
        for spec in [self.get(n) for n in names] if names else self.specs():
            try:
                results.append(spec.run(ctx))
            except Exception as exc:  # a bug in one check must not hide the others
                results.append(
                    CheckResult(
                        spec.name,
                        Status.FAIL,
                        f"the check itself failed: {type(exc).__name__}: {str(exc)[:200]}",
                        fix="report this as a posedge bug with `posedge support-bundle`",
                    )
                )
        return results
