"""``posedge doctor``'s engine: one run of every check, with or without the daemon.

The doctor's own checks (:mod:`.doctorchecks`: daemon, watchdog, back office, journal verify)
run in this process. The terminal's checks (:data:`posedge.agent.health.checks.REGISTRY`:
devices, journal, sync, vault, state dir, configuration) are answered in one of two ways:

* **a daemon runs** — its live results, read from ``GET /v1/status`` over the till API; the
  doctor never opens a device the daemon holds. A daemon that holds the lock but does not
  answer leaves them unchecked (``skip``) and ``daemon.running`` fails as unreachable;
* **no daemon** — the doctor builds a :class:`HealthContext` itself: the journal opened
  read-only, the configured printer and reader opened, and everything closed after.

Exit status (:meth:`DoctorReport.exit_code`): 0 nothing failed, 3 a check failed, 4 the back
office or the daemon was unreachable (4 wins over 3: the peer is the first thing to fix).

This module must never write the journal, never take the daemon lock (only probe it), never
open devices while a daemon runs, and never put a token, key or card data in a result.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..errors import ConfigError, PeerUnreachable
from .checks import REGISTRY
from .daemonlink import CHECKS_PATH
from .doctorchecks import DOCTOR, UNREACHABLE, DaemonProbe
from .model import CheckRegistry, CheckResult, CheckSpec, HealthContext, Status

EXIT_OK = 0
EXIT_FAILED = 3
EXIT_UNREACHABLE = 4
FRESH_TIMEOUT_S = 20.0
"""How long the daemon may take to run its checks on request (a due chain verify included)."""
VERIFIED_BY = {"journal.integrity": "journal.verify"}
"""Without a daemon ``journal.integrity`` would walk the whole chain a second time in the
same run: it reports the walk ``journal.verify`` has just made (its value, the age of the
last verification, is then 0)."""


class UnknownCheck(ConfigError):
    """A check named on the command line does not exist (exit 2)."""


# ---- the catalogue ------------------------------------------------------------------------
def catalogue() -> list[CheckSpec]:
    """Every check ``posedge doctor`` knows, in the order it prints them."""
    own = DOCTOR.specs()
    names = {spec.name for spec in own}
    return own + [spec for spec in REGISTRY.specs() if spec.name not in names]


def select(names: list[str] | None) -> list[CheckSpec]:
    """The checks named (a name, or a group such as ``printer`` for ``printer.*``), in
    catalogue order; all when ``names`` is empty. An unknown name is :class:`UnknownCheck`."""
    specs = catalogue()
    if not names:
        return specs
    unknown = [n for n in names if not any(_matches(s.name, n) for s in specs)]
    if unknown:
        known = ", ".join(s.name for s in specs)
        raise UnknownCheck(
            f"no check named {', '.join(repr(n) for n in unknown)}; known checks: {known} "
            "(or a group before the dot, e.g. daemon); `posedge doctor --list-checks` "
            "describes them"
        )
    return [s for s in specs if any(_matches(s.name, n) for n in names)]


def _matches(check: str, name: str) -> bool:
    return check == name or check.startswith(name + ".")


# ---- one run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    result: CheckResult
    source: str
    """``doctor`` (run by this process), ``daemon`` (the daemon's live result) or ``local``
    (a terminal check this process ran without a daemon)."""

    def as_dict(self) -> dict[str, Any]:
        return self.result.as_dict() | {"source": self.source}


@dataclass
class DoctorReport:
    mode: str
    """``daemon`` (asked the running daemon), ``local`` (no daemon: opened things itself)
    or ``unreachable`` (a daemon holds the state directory but does not answer)."""
    findings: list[Finding] = field(default_factory=list)
    daemon_pid: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for finding in self.findings:
            counts[finding.result.status.value] += 1
        return counts

    def exit_code(self) -> int:
        failed = [f.result for f in self.findings if f.result.status is Status.FAIL]
        if any(r.details.get(UNREACHABLE) for r in failed):
            return EXIT_UNREACHABLE
        return EXIT_FAILED if failed else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "daemon_pid": self.daemon_pid,
            "checks": [finding.as_dict() for finding in self.findings],
            "summary": self.counts(),
            "exit_code": self.exit_code(),
        }


def run_doctor(config: Any, state_dir: Path, names: list[str] | None = None) -> DoctorReport:
    """Run the selected checks once (see the module docstring for where each answer comes from)."""
    specs = select(names)
    probe = DaemonProbe.of(config, state_dir)
    mode = "local" if probe.pid is None else ("daemon" if probe.status else "unreachable")
    report = DoctorReport(mode, daemon_pid=probe.pid)
    ctx = HealthContext(config=config, state_dir=state_dir, now=time.time())
    ctx.extra["daemon"] = probe
    own = set(DOCTOR.names())
    terminal = [s for s in specs if s.name not in own]
    wanted = {s.name for s in specs}
    live = _live_results(probe, terminal) if probe.status is not None and terminal else {}
    with contextlib.ExitStack() as stack:
        if "journal.verify" in wanted or (terminal and probe.pid is None):
            stack.enter_context(_open_journal(ctx))
        if terminal and probe.pid is None:
            stack.enter_context(_open_devices(ctx))
        for spec in specs:
            if spec.name in own:
                report.findings.append(Finding(DOCTOR.run(ctx, [spec.name])[0], "doctor"))
            elif probe.pid is None:
                report.findings.append(Finding(_run_one(spec, ctx, report), "local"))
            else:
                report.findings.append(Finding(_from_daemon(spec, probe, live), "daemon"))
    return report


def _run_one(spec: CheckSpec, ctx: HealthContext, report: DoctorReport) -> CheckResult:
    if spec.live_only:
        return CheckResult(spec.name, Status.SKIP, "needs the running daemon's history")
    source = VERIFIED_BY.get(spec.name)
    done = next((f.result for f in report.findings if f.result.name == source), None)
    if done is not None and done.status is not Status.SKIP:
        return CheckResult(
            spec.name,
            done.status,
            f"verified just now by {source}: {done.summary}",
            fix=done.fix,
            value=0.0,
        )
    registry = CheckRegistry()
    registry.add(spec)
    return registry.run(ctx)[0]  # a check that raises becomes a fail, as in the daemon


def _health_block(status: dict[str, Any]) -> dict[str, Any] | None:
    block = status.get("health")
    return block if isinstance(block, dict) else None


def _live_results(probe: DaemonProbe, specs: list[CheckSpec]) -> dict[str, CheckResult]:
    """The daemon's results for ``specs``, run now (``GET /v1/health/checks``); from a
    daemon without that endpoint, or one that cannot run them, its latest ones (the
    ``health.checks`` of its ``/v1/status``)."""
    names = [spec.name for spec in specs]
    query = (
        ""
        if set(names) >= set(REGISTRY.names())
        else "?" + urlencode([("name", name) for name in names])
    )
    fresh = None
    if probe.link is not None:
        try:
            fresh = probe.link.get(CHECKS_PATH + query, FRESH_TIMEOUT_S, missing_ok=True)
        except PeerUnreachable:
            fresh = None
    if fresh is not None:
        return _parse_results(fresh.get("checks"))
    return _parse_results((_health_block(probe.status or {}) or {}).get("checks"))


def _parse_results(raw: Any) -> dict[str, CheckResult]:
    """Check results from the daemon's JSON (anything malformed is left out)."""
    items = raw if isinstance(raw, list) else []
    results = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        try:
            state = Status(str(item.get("status")))
        except ValueError:
            continue
        fix = item.get("fix") or (
            "see the daemon's log" if state in (Status.WARN, Status.FAIL) else None
        )
        value, details = item.get("value"), item.get("details")
        results[item["name"]] = CheckResult(
            item["name"],
            state,
            str(item.get("summary", "")),
            fix=fix,
            value=float(value) if isinstance(value, int | float) else None,
            details=details if isinstance(details, dict) else {},
        )
    return results


def _from_daemon(spec: CheckSpec, probe: DaemonProbe, live: dict[str, CheckResult]) -> CheckResult:
    if probe.status is None:
        return CheckResult(
            spec.name, Status.SKIP, "not checked: the daemon holds the devices but does not answer"
        )
    found = live.get(spec.name)
    if found is not None:
        return found
    health = _health_block(probe.status)
    if health is None:
        why = "the running daemon reports no health checks (restart it after upgrading)"
    elif health.get("enabled") is False:
        why = "health checks are off in the running daemon (health.enabled = false)"
    else:
        why = "the running daemon has not run it yet (it runs every health.check_interval)"
    return CheckResult(spec.name, Status.SKIP, why)


@contextlib.contextmanager
def _open_journal(ctx: HealthContext) -> Iterator[None]:
    """The journal read-only into ``ctx.journal`` (a problem opening it: ``journal_error``)."""
    from ..journal import JOURNAL_FILE_NAME, Journal, JournalError

    if not (Path(ctx.state_dir) / JOURNAL_FILE_NAME).exists():
        yield
        return
    try:
        journal = Journal.open(Path(ctx.state_dir), readonly=True)
    except JournalError as exc:
        ctx.extra["journal_error"] = str(exc)
        yield
        return
    ctx.journal = journal
    try:
        yield
    finally:
        ctx.journal = None
        journal.close()


@contextlib.contextmanager
def _open_devices(ctx: HealthContext) -> Iterator[None]:
    """The configured printer and reader into ``ctx`` (only ever without a daemon); an
    opening error is that device's polled status (``ctx.extra``), as the checks expect."""
    from posedge.drivers.errors import DeviceError

    from ..devices import open_printer, open_reader
    from .devicechecks import PRINTER_STATUS, READER_STATUS

    config = ctx.config
    opened: list[Any] = []
    try:
        for kind, opener, polled in (
            ("printer", open_printer, PRINTER_STATUS),
            ("reader", open_reader, READER_STATUS),
        ):
            if not getattr(config, kind).url:
                continue
            try:
                device = opener(config, Path(ctx.state_dir))
            except DeviceError as exc:
                ctx.extra[polled] = exc
                continue
            opened.append(device)
            setattr(ctx, kind, device)
        yield
    finally:
        for device in opened:
            with contextlib.suppress(DeviceError):
                device.close()
            with contextlib.suppress(DeviceError, AttributeError):
                device.transport.close()
        ctx.printer = ctx.reader = None


__all__ = [
    "DOCTOR",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "DaemonProbe",
    "DoctorReport",
    "Finding",
    "UnknownCheck",
    "catalogue",
    "run_doctor",
    "select",
]
