"""What a support bundle may hold: the allowlisted sources, each read without writing.

Every collector returns :class:`Collected`: members (bundle name → a JSON-like
document, or a list of documents for ``.jsonl``) and what it left out, with the
reason. Collectors never raise for the condition they report (no daemon, no
journalctl, no journal): that is a "left out" entry. They never read the journal
database into the bundle, nor any key, token, enrolment secret or the card vault;
what they return is still raw: :mod:`.bundle` scrubs and obfuscates it.

Sources: ``posedge --json doctor`` (a subprocess of this interpreter, with a
timeout), journal statistics and verification (opened read-only: works beside the
daemon), device statistics files and the newest device dumps, the effective
configuration with secret-looking values replaced (file paths kept), the system,
``journalctl -u posedge`` (capped), and the daemon's ``/v1/status`` when it runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import LoadedConfig
from ..errors import PosedgeError
from ..statedir import read_file_nofollow

DOCTOR_TIMEOUT_S = 60.0
JOURNALCTL_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 5.0
JOURNALCTL_UNIT = "posedge"
MAX_FILE_BYTES = 1 << 20
MAX_DOCTOR_OUTPUT_BYTES = 4 << 20
MAX_LOG_MESSAGE_CHARS = 4096
MAX_DUMPS = 3
LOG_FIELDS = (
    "__REALTIME_TIMESTAMP", "PRIORITY", "SYSLOG_IDENTIFIER", "_PID", "_SYSTEMD_UNIT",
    "_HOSTNAME", "MESSAGE",
)  # fmt: skip
"""journald fields kept per entry (no cursor, boot or machine id, command line)."""
_SECRET_NAME = re.compile(r"token|secret|passw|credential|(?:^|_)key$", re.IGNORECASE)
_PATH_NAME = re.compile(r"(?:_file|_cert|_key|socket|_dir|_path)$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"[A-Za-z0-9+/=_-]{24,}")
SECRET_VALUE_REMOVED = "[secret-looking value removed]"


@dataclass
class Collected:
    members: dict[str, Any] = field(default_factory=dict)
    left_out: list[dict[str, str]] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.left_out.append({"item": item, "reason": reason})

    def merge(self, other: Collected) -> None:
        self.members.update(other.members)
        self.left_out += other.left_out


# ---- posedge doctor ----------------------------------------------------------------------
class DoctorRun:
    """``posedge --json doctor`` run by this interpreter in the background (the bundle
    collects the rest meanwhile); :meth:`result` waits for it, up to ``timeout_s`` after
    the start, and gives its JSON as ``doctor.json``."""

    def __init__(self, state_dir: Path, config_option: Path | None, timeout_s: float) -> None:
        argv = [sys.executable, "-c", "from posedge.agent.cli import main; main()"]
        argv += ["--state-dir", str(state_dir)]
        if config_option is not None:
            argv += ["--config", str(config_option)]
        argv += ["--json", "doctor"]
        self.timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._error: str | None = None
        try:
            self._proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            self._error = f"cannot run {sys.executable}: {exc.strerror}"

    def result(self) -> Collected:
        out = Collected()
        if self._proc is None:
            out.skip("doctor", f"doctor unavailable: {self._error}")
            return out
        proc = self._proc
        try:
            stdout, stderr_bytes = proc.communicate(
                timeout=max(0.0, self._deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out.skip(
                "doctor", f"doctor unavailable: posedge doctor took over {self.timeout_s:.0f}s"
            )
            return out
        stderr = stderr_bytes.decode("utf-8", errors="replace")
        try:
            report = json.loads(stdout[:MAX_DOCTOR_OUTPUT_BYTES].decode("utf-8"))
        except ValueError:
            if "No such command" in stderr:
                reason = "this posedge has no doctor command"
            else:
                reason = f"exit {proc.returncode}, no JSON report: {_first_line(stderr)}"
            out.skip("doctor", f"doctor unavailable: {reason}")
            return out
        out.members["doctor.json"] = {"exit_code": proc.returncode, "report": report}
        return out


def doctor(state_dir: Path, config_option: Path | None, timeout_s: float) -> Collected:
    """:class:`DoctorRun` started and waited for."""
    return DoctorRun(state_dir, config_option, timeout_s).result()


# ---- journal -----------------------------------------------------------------------------
def journal(state_dir: Path) -> Collected:
    """``journal/stats.json`` and ``journal/verify.json``; the database itself never."""
    from ..journal import Journal, verify_journal

    out = Collected()
    try:
        with Journal.open(state_dir, readonly=True) as jr:
            out.members["journal/stats.json"] = jr.stats()
            out.members["journal/verify.json"] = verify_journal(jr).as_dict()
    except PosedgeError as exc:
        out.skip("journal statistics and verification", f"journal could not be opened: {exc}")
    return out


# ---- devices -----------------------------------------------------------------------------
def devices(state_dir: Path) -> Collected:
    """Device statistics (``<state dir>/devices/*.stats.json``) and the newest dumps."""
    out = Collected()
    stats_dir = state_dir / "devices"
    for path in _regular_files(stats_dir, out, "device statistics"):
        if path.name.endswith(".stats.json"):
            _add_file(out, f"devices/{path.name}", path)
    dumps = _regular_files(state_dir / "dumps", out, "device dumps")
    dumps.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    for path in dumps[:MAX_DUMPS]:
        name = path.name if path.suffix == ".json" else f"{path.name}.txt"
        _add_file(out, f"dumps/{name}", path)
    for path in dumps[MAX_DUMPS:]:
        out.skip(f"dumps/{path.name}", f"older device dump (only the newest {MAX_DUMPS} are kept)")
    return out


def _regular_files(directory: Path, out: Collected, what: str) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        out.skip(what, f"cannot list {directory}: {exc.strerror}")
        return []
    files = []
    for path in entries:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            files.append(path)
        elif stat.S_ISLNK(mode):
            out.skip(str(path), "a symbolic link; links are never followed")
    return files


def _add_file(out: Collected, name: str, path: Path) -> None:
    try:
        data = read_file_nofollow(path, max_bytes=MAX_FILE_BYTES, what="a diagnostics file")
    except (OSError, PosedgeError) as exc:
        out.skip(name, f"cannot read {path}: {exc}")
        return
    if len(data) > MAX_FILE_BYTES:
        out.skip(name, f"{path} is over {MAX_FILE_BYTES} bytes")
        return
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        try:
            out.members[name] = json.loads(text)
        except ValueError:
            out.skip(name, f"{path} is not valid JSON (a damaged file)")
        return
    out.members[name] = text


# ---- configuration -----------------------------------------------------------------------
def configuration(loaded: LoadedConfig | None, error: str | None) -> Collected:
    """The effective configuration (file and POSEDGE_* overrides), secrets replaced."""
    out = Collected()
    if loaded is None:
        out.members["config.json"] = {"valid": False, "error": error}
        out.skip("configuration", "the configuration is invalid; its error is in config.json")
        return out
    effective = loaded.config.model_dump(mode="json")
    out.members["config.json"] = {
        "valid": True,
        "source": str(loaded.source) if loaded.source else "built-in defaults",
        "environment_overrides": sorted(
            name for name in os.environ if name.startswith("POSEDGE_") and "__" in name
        ),
        "effective": redact_config(effective),
    }
    return out


def redact_config(value: Any, name: str = "") -> Any:
    """Values under secret-sounding keys and secret-looking strings replaced; paths kept."""
    if isinstance(value, dict):
        return {key: redact_config(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_config(item, name) for item in value]
    if not isinstance(value, str) or not value:
        return value
    if _PATH_NAME.search(name):
        return value  # a file path: kept (the file's content never is)
    if _SECRET_NAME.search(name):
        return SECRET_VALUE_REMOVED
    if value.startswith(("/", "./", "~")) or "://" in value:
        return value  # a file path or a URL (whose credentials are scrubbed anyway)
    return _SECRET_VALUE.sub(_secret_run, value)


def _secret_run(match: re.Match[str]) -> str:
    """A long run of token characters with lower and upper case letters and digits."""
    run = match.group()
    mixed = (
        any(c.islower() for c in run)
        and any(c.isupper() for c in run)
        and any(c.isdigit() for c in run)
    )
    return SECRET_VALUE_REMOVED if mixed else run


def configured_secret_files(loaded: LoadedConfig | None) -> list[Path]:
    """The token and key files the configuration names (to keep their contents out)."""
    if loaded is None:
        return []
    config = loaded.config
    names = (config.sync.token_file, config.sync.client_key, config.api.token_file)
    return [Path(name) for name in names if name]


# ---- system ------------------------------------------------------------------------------
def system(state_dir: Path, agent_version: str) -> Collected:
    out = Collected()
    uname = platform.uname()
    try:
        usage = shutil.disk_usage(state_dir)
        disk: dict[str, int] | None = {"total_bytes": usage.total, "free_bytes": usage.free}
    except OSError:
        disk = None
    out.members["system.json"] = {
        "agent_version": agent_version,
        "python": platform.python_version(),
        "system": uname.system,
        "release": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
        "state_dir": str(state_dir),
        "state_dir_disk": disk,
    }
    return out


# ---- logs --------------------------------------------------------------------------------
def journalctl(lines: int, since_s: float | None, now: datetime) -> Collected:
    """The last ``lines`` entries of the posedge unit (``logs/journal.jsonl``)."""
    out = Collected()
    binary = shutil.which("journalctl")
    if binary is None:
        out.skip("logs", "journalctl not found (no systemd journal on this system)")
        return out
    argv = [binary, "-u", JOURNALCTL_UNIT, "--no-pager", "-n", str(lines), "-o", "json"]
    if since_s is not None:
        since = (now - timedelta(seconds=since_s)).astimezone(UTC)
        argv += ["--since", since.strftime("%Y-%m-%d %H:%M:%S UTC")]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            timeout=JOURNALCTL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        out.skip("logs", f"journalctl took over {JOURNALCTL_TIMEOUT_S:.0f}s")
        return out
    except OSError as exc:
        out.skip("logs", f"cannot run journalctl: {exc.strerror}")
        return out
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        out.skip("logs", f"journalctl failed (exit {proc.returncode}): {_first_line(stderr)}")
        return out
    entries = [
        entry
        for line in proc.stdout.decode("utf-8", errors="replace").splitlines()[-lines:]
        if (entry := _log_entry(line)) is not None
    ]
    if not entries:
        hint = f": {_first_line(stderr)}" if stderr.strip() else ""
        out.skip("logs", f"journalctl showed no entries for {JOURNALCTL_UNIT}{hint}")
        return out
    out.members["logs/journal.jsonl"] = entries
    return out


def _log_entry(line: str) -> dict[str, Any] | None:
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    entry: dict[str, Any] = {}
    for name in LOG_FIELDS:
        value = raw.get(name)
        if isinstance(value, list):  # journald's form for non-UTF-8 or binary fields
            value = bytes(v for v in value if isinstance(v, int) and 0 <= v < 256)
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            entry[name] = value[:MAX_LOG_MESSAGE_CHARS]
    return entry or None


# ---- the running daemon ------------------------------------------------------------------
def daemon_status(loaded: LoadedConfig | None, state_dir: Path) -> Collected:
    """``GET /v1/status`` over the till API's Unix socket as ``daemon/status.json``."""
    import httpx

    from ..api.bearer import read_token
    from ..api.server import resolve_api_paths
    from ..config import Config

    out = Collected()
    config = loaded.config if loaded is not None else Config()
    paths = resolve_api_paths(config, state_dir)
    if not paths.socket.exists():
        out.skip("daemon status", f"the daemon is not running (no API socket at {paths.socket})")
        return out
    try:
        token = read_token(paths.token_file, "api.token_file")
    except PosedgeError as exc:
        out.skip("daemon status", f"cannot ask the daemon: {exc}")
        return out
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(paths.socket)),
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {token}"},
            timeout=STATUS_TIMEOUT_S,
        ) as client:
            response = client.get("/v1/status")
    except httpx.HTTPError as exc:
        out.skip("daemon status", f"the daemon is not answering on {paths.socket}: {exc}")
        return out
    if response.status_code != 200:
        out.skip("daemon status", f"the daemon answered HTTP {response.status_code}")
        return out
    try:
        out.members["daemon/status.json"] = response.json()
    except ValueError:
        out.skip("daemon status", "the daemon's answer was not JSON")
    return out


# ---- the state directory -----------------------------------------------------------------
NEVER_INCLUDED = (
    (re.compile(r"^journal\.db(-wal|-shm|-journal)?$"),
     "the journal database is never included (its statistics and verify result are)"),
    (re.compile(r"\.key$"), "a key: never included"),
    (re.compile(r"^(api-token|sync-token)$"), "a token: never included"),
    (re.compile(r"^enrolment\.json$"), "the enrolment record: never included"),
    (re.compile(r"^vault$"), "the card vault: never included"),
    (re.compile(r"^(daemon\.lock|api\.sock|terminal-id)$"), "a runtime file: not needed"),
)  # fmt: skip
INCLUDED_DIRS = frozenset({"devices", "dumps"})


def state_dir_left_out(state_dir: Path) -> list[dict[str, str]]:
    """One entry per file in the state directory that the bundle does not hold, and why."""
    try:
        names = sorted(p.name for p in state_dir.iterdir())
    except OSError:
        return []
    left: list[dict[str, str]] = []
    for name in names:
        if name in INCLUDED_DIRS:
            continue
        reason = next(
            (why for pattern, why in NEVER_INCLUDED if pattern.search(name)),
            "not on the support bundle's allowlist",
        )
        left.append({"item": f"state dir: {name}", "reason": reason})
    return left


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no message)"


__all__ = [
    "DOCTOR_TIMEOUT_S",
    "Collected",
    "DoctorRun",
    "configuration",
    "configured_secret_files",
    "daemon_status",
    "devices",
    "doctor",
    "journal",
    "journalctl",
    "redact_config",
    "state_dir_left_out",
    "system",
]
