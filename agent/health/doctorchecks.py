"""``posedge doctor``'s own checks (:data:`DOCTOR`): the ones only a separate process can make.

``daemon.running``   the state directory's lock is held and the daemon answers its API
``daemon.watchdog``  the daemon's watchdog supervisor ticks and every critical task progresses
``backoffice.link``  a real request to the back office: DNS, TCP, TLS, then the token
``journal.verify``   the whole hash chain and its checkpoints, read-only

A failure whose peer could not be reached (back office down, daemon not answering) carries
``details["unreachable"]``: ``posedge doctor`` exits 4 for it rather than 3.

This module must never write the journal, never take the daemon lock (only probe it), and
never put a token, key or card data in a result.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, PeerUnreachable
from .daemonlink import DaemonLink, daemon_pid
from .model import CheckRegistry, CheckResult, HealthContext, Status

UNREACHABLE = "unreachable"
"""``details`` key of a failed result whose peer could not be reached (exit 4)."""
BACKOFFICE_TIMEOUT_S = 3.0
"""The doctor's cap on each back office timeout (connect, read): it answers in seconds."""
WATCHDOG_STALE_TICKS = 3
WATCHDOG_STALE_MIN_S = 5.0
"""The supervisor ticks every ``tick_s``; no tick for 3 ticks (at least 5 s) means stuck."""
RESTART_FIX = (
    "restart the daemon (systemctl restart posedge) and report it with `posedge support-bundle`"
)

DOCTOR = CheckRegistry()
"""The doctor's own checks, printed first."""


# ---- the daemon ---------------------------------------------------------------------------
@dataclass
class DaemonProbe:
    """What the doctor learnt about the daemon before running any check."""

    pid: int | None
    """The lock holder's pid; ``None``: no daemon runs on this state directory."""
    status: dict[str, Any] | None = None
    """Its ``/v1/status`` answer; ``None`` when it did not answer (see ``error``)."""
    error: str | None = None
    link: DaemonLink | None = None
    """How to ask it more (set when it answered)."""

    @classmethod
    def of(cls, config: Any, state_dir: Path) -> DaemonProbe:
        pid = daemon_pid(state_dir)
        if pid is None:
            return cls(None)
        try:
            link = DaemonLink.connect(config, state_dir)
            return cls(pid, status=link.status(), link=link)
        except PeerUnreachable as exc:
            return cls(pid, error=str(exc))

    @property
    def block(self) -> dict[str, Any]:
        """The daemon's own ``daemon`` block of ``/v1/status`` (empty from an older daemon)."""
        block = (self.status or {}).get("daemon")
        return block if isinstance(block, dict) else {}


def _probe(ctx: HealthContext) -> DaemonProbe:
    probe = ctx.extra.get("daemon")
    if not isinstance(probe, DaemonProbe):
        probe = ctx.extra["daemon"] = DaemonProbe.of(ctx.config, Path(ctx.state_dir))
    return probe


@DOCTOR.check("daemon.running", "a posedge daemon holds the state directory and answers its API")
def check_daemon_running(ctx: HealthContext) -> CheckResult:
    name = "daemon.running"
    probe = _probe(ctx)
    if probe.pid is None:
        return CheckResult(
            name,
            Status.FAIL,
            f"no daemon runs on {ctx.state_dir}: this terminal takes no sales",
            fix="start it: systemctl start posedge (or posedge run); if it does not start, "
            "read why with journalctl -u posedge -e",
        )
    if probe.status is None:
        return CheckResult(
            name,
            Status.FAIL,
            f"the daemon holds the state directory but does not answer: {probe.error}",
            fix=RESTART_FIX,
            details={UNREACHABLE: True, "pid": probe.pid},
        )
    uptime = probe.block.get("uptime_s")
    up = f", up {timedelta(seconds=int(uptime))}" if isinstance(uptime, int | float) else ""
    return CheckResult(
        name,
        Status.OK,
        f"running (pid {probe.pid}{up}) and answering",
        value=float(uptime) if isinstance(uptime, int | float) else None,
        details={"pid": probe.pid},
    )


@DOCTOR.check(
    "daemon.watchdog", "the daemon's watchdog supervisor ticks and its critical tasks progress"
)
def check_daemon_watchdog(ctx: HealthContext) -> CheckResult:
    name = "daemon.watchdog"
    probe = _probe(ctx)
    if probe.status is None:
        return CheckResult(name, Status.SKIP, "no daemon answering: nothing to supervise")
    watchdog = probe.block.get("watchdog")
    if not isinstance(watchdog, dict):
        return CheckResult(
            name,
            Status.WARN,
            "the daemon does not report its watchdog (it predates this posedge)",
            fix="restart the daemon after upgrading: systemctl restart posedge",
        )
    age = watchdog.get("last_check_age_s")
    tick = float(watchdog.get("tick_s") or 1.0)
    limit = max(WATCHDOG_STALE_TICKS * tick, WATCHDOG_STALE_MIN_S)
    if not isinstance(age, int | float) or age > limit:
        seen = "never" if not isinstance(age, int | float) else f"{age:.1f}s ago"
        return CheckResult(
            name,
            Status.FAIL,
            f"the watchdog supervisor last ran {seen} (it runs every {tick:g}s): the daemon's "
            "event loop is stuck",
            fix=RESTART_FIX,
            value=float(age) if isinstance(age, int | float) else None,
        )
    stuck = watchdog.get("stuck")
    if (isinstance(stuck, list) and stuck) or (
        watchdog.get("healthy") is False and not isinstance(stuck, list)  # an older daemon
    ):
        return CheckResult(
            name,
            Status.FAIL,
            f"the watchdog finds the daemon unhealthy: {watchdog.get('reason') or 'unknown'}",
            fix=RESTART_FIX,
            value=float(age),
        )
    if watchdog.get("healthy") is False:  # no task stuck: the event loop ran late once
        return CheckResult(
            name,
            Status.WARN,
            f"the daemon's event loop ran {watchdog.get('loop_lag_s') or 0:.1f}s late at the "
            "last check (the watchdog tolerates this once; it restarts the daemon if it lasts)",
            fix="look for what loads the machine (top); if it repeats, report it with "
            "`posedge support-bundle`",
            value=float(age),
        )
    pings = "pings systemd" if watchdog.get("systemd") else "no systemd watchdog configured"
    return CheckResult(
        name,
        Status.OK,
        f"fresh: checked {age:.1f}s ago, every critical task progressing ({pings})",
        value=float(age),
    )


# ---- the back office ----------------------------------------------------------------------
@DOCTOR.check(
    "backoffice.link", "back office reachable (DNS, TCP, TLS) and the terminal's token accepted"
)
def check_backoffice_link(ctx: HealthContext) -> CheckResult:
    from ..sync import BackofficeBusy, BackofficeClient, BackofficeRejected, BackofficeUnreachable
    from ..sync.client import read_token

    name = "backoffice.link"
    config = ctx.config
    url = _probe(ctx).block.get("backoffice") or config.sync.url
    if not url:
        return CheckResult(
            name, Status.SKIP, "no back office configured (sync.url unset): sales stay local"
        )
    settings = _capped(config.sync)
    try:
        token = read_token(settings.token_file)
        terminal = _known_terminal_id(config, Path(ctx.state_dir))
        client = BackofficeClient(url, terminal or "", settings, token=token)
    except ConfigError as exc:
        return CheckResult(name, Status.FAIL, str(exc), fix="fix the [sync] setting it names")
    try:
        if terminal is None:
            return _reachable_only(name, url, settings)
        reply = client.events_head()
    except BackofficeUnreachable as exc:
        summary, fix = _diagnose(url, settings, str(exc))
        return CheckResult(name, Status.FAIL, summary, fix=fix, details={UNREACHABLE: True})
    except BackofficeBusy as exc:
        return CheckResult(
            name,
            Status.FAIL,
            f"{url} answers HTTP {exc.status}: the back office is overloaded or down",
            fix="try again in a few minutes; if it lasts, ask the back office's operators",
            details={UNREACHABLE: True, "http_status": exc.status},
        )
    except BackofficeRejected as exc:
        return _rejected(name, url, exc.status, str(exc))
    finally:
        client.close()
    acked = reply.body.get("acked_seq")
    skew = client.last_skew_s
    return CheckResult(
        name,
        Status.OK,
        f"{url} reachable, token of terminal {terminal} accepted"
        + (f"; it holds events through seq {acked}" if isinstance(acked, int) else ""),
        details={"url": url, "terminal": terminal, "acked_seq": acked, "clock_skew_s": skew},
    )


def _capped(settings: Any) -> Any:
    """``[sync]`` with every timeout at most :data:`BACKOFFICE_TIMEOUT_S` (doctor is quick)."""
    names = ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout")
    update = {n: f"{BACKOFFICE_TIMEOUT_S:g}s" for n in names
              if settings.seconds(n) > BACKOFFICE_TIMEOUT_S}  # fmt: skip
    return settings.model_copy(update=update)


def _known_terminal_id(config: Any, state_dir: Path) -> str | None:
    """``terminal.id``, else the id the daemon generated; ``None`` before the first start
    (the doctor never creates one)."""
    from ..sync import terminal_id
    from ..sync.terminal import TERMINAL_ID_FILE

    if config.terminal.id:
        return str(config.terminal.id)
    if not (state_dir / TERMINAL_ID_FILE).exists():
        return None
    return terminal_id(None, state_dir)


def _rejected(name: str, url: str, status: int, message: str) -> CheckResult:
    if status == 401:
        summary = f"{url} refuses the terminal's token (401)"
        fix = (
            "the token in sync.token_file is unknown or missing there: compare it with the "
            "back office's, or enrol again (posedge enroll)"
        )
    elif status == 403:
        summary = f"{url} forbids this terminal (403): {message}"
        fix = (
            "the token belongs to another terminal or this terminal is revoked: check "
            "terminal.id and sync.token_file with the back office's operators"
        )
    else:
        summary = f"{url} refuses the request (HTTP {status}): {message}"
        fix = "check sync.url points at the back office's base URL and terminal.id is known there"
    return CheckResult(name, Status.FAIL, summary, fix=fix, details={"http_status": status})


def _reachable_only(name: str, url: str, settings: Any) -> CheckResult:
    """No terminal id yet: prove DNS, TCP and TLS; the token is checked after the first start."""
    summary, fix = _diagnose(url, settings, None)
    if fix:
        return CheckResult(name, Status.FAIL, summary, fix=fix, details={UNREACHABLE: True})
    return CheckResult(
        name,
        Status.WARN,
        f"{url} reachable; token not checked: this terminal has no id yet",
        fix="start the daemon once (it creates the terminal id), or set terminal.id",
    )


def _diagnose(url: str, settings: Any, error: str | None) -> tuple[str, str]:
    """Which layer fails — DNS, TCP, TLS — as (summary, fix); fix ``""`` when all pass."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout_s = settings.seconds("connect_timeout")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return (
            f"DNS: cannot resolve {host} ({exc.strerror or exc})",
            "check the host name in sync.url and the terminal's DNS (resolv.conf, network link)",
        )
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        return (
            f"TCP: no answer from {host}:{port} within {timeout_s:g}s",
            "check the network path to the back office (link, router, firewall)",
        )
    except OSError as exc:
        return (
            f"TCP: cannot connect to {host}:{port} ({exc.strerror or exc})",
            "check that the back office runs and listens there, and that no firewall blocks it",
        )
    with sock:
        if parts.scheme == "https":
            problem = _tls_problem(sock, host, settings)
            if problem is not None:
                return problem
    if error is None:
        return f"{host}:{port} reachable", ""
    return (
        f"connected, but the request failed: {error}",
        "read the back office's log; the connection works but the request did not complete",
    )


def _tls_problem(sock: socket.socket, host: str, settings: Any) -> tuple[str, str] | None:
    from ..sync.client import _tls_context  # sync.ca_file and the client certificate

    try:
        context = _tls_context(settings)
        with context.wrap_socket(sock, server_hostname=host):
            return None
    except ConfigError as exc:
        return str(exc), "fix the TLS setting it names"
    except ssl.SSLCertVerificationError as exc:
        return (
            f"TLS: the back office's certificate is not trusted ({exc.verify_message})",
            "set sync.ca_file to the back office's CA, check the host name in sync.url matches "
            "its certificate, and check the terminal's clock",
        )
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        return (
            f"TLS: the handshake with {host} failed ({reason})",
            "check that the port in sync.url speaks HTTPS, and sync.client_cert / "
            "sync.client_key if the back office asks for a client certificate",
        )


# ---- the journal --------------------------------------------------------------------------
@DOCTOR.check("journal.verify", "the journal's hash chain and checkpoints verify (read-only)")
def check_journal_verify(ctx: HealthContext) -> CheckResult:
    from ..journal import verify_journal

    name = "journal.verify"
    journal = ctx.journal
    if journal is None:
        error = ctx.extra.get("journal_error")
        if error is None:
            return CheckResult(
                name, Status.SKIP, f"no journal in {ctx.state_dir} yet (the first start makes it)"
            )
        return CheckResult(name, Status.FAIL, str(error), fix=_JOURNAL_FIX)
    result = verify_journal(journal)
    if result.problem is not None:
        problem = result.problem
        return CheckResult(
            name,
            Status.FAIL,
            f"verification failed at seq {problem.seq} ({problem.kind}): {problem.detail}",
            fix=_JOURNAL_FIX,
            details=result.as_dict(),
        )
    return CheckResult(
        name,
        Status.OK,
        f"{result.events} events verified, head seq {result.head_seq}",
        value=float(result.events),
        details={"head_seq": result.head_seq, "checkpoint_seq": result.checkpoint_seq},
    )


_JOURNAL_FIX = (
    "do not delete or edit journal.db: keep a copy, run `posedge journal verify` for the "
    "details and report it with `posedge support-bundle`"
)


__all__ = ["DOCTOR", "UNREACHABLE", "DaemonProbe"]
