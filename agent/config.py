"""Configuration: strict TOML with ``POSEDGE_<SECTION>__<KEY>`` environment overrides.

Loading is strict. Unknown keys, wrong types and out-of-range values raise
:class:`~posedge.agent.errors.ConfigError` naming the key, the bad value and
what is allowed. Loading never touches stored data: it reads one file and the
environment, nothing else. Every key is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/posedge/posedge.toml")
ENV_PREFIX = "POSEDGE_"
ENV_SECTION_SEPARATOR = "__"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_duration(text: str) -> float:
    """``"90s"`` → 90.0 seconds. Units: ms, s, m, h, d."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a number followed by ms, s, m, h or d "
            '(for example "90s", "72h")'
        )
    return float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]


def parse_size(text: str) -> int:
    """``"4MiB"`` → 4194304 bytes. Units: B, KiB, MiB, GiB (none means bytes)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a size; write a whole number optionally followed by "
            'B, KiB, MiB or GiB (for example "1MiB")'
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _duration_between(low_s: float, high_s: float) -> AfterValidator:
    def check(value: str) -> str:
        seconds = parse_duration(value)
        if not low_s <= seconds <= high_s:
            raise ValueError(
                f"{value!r} is out of range; allowed {_fmt_s(low_s)} to {_fmt_s(high_s)}"
            )
        return value

    return AfterValidator(check)


def _fmt_s(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def _device_url(value: str) -> str:
    if not value.strip():
        raise ValueError(
            "empty device URL; use a serial path, socket://, usb://VVVV:PPPP or sim://"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TerminalConfig(_Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None
    """Terminal id used in sync; generated and kept in the state dir when unset."""
    name: Annotated[str, Field(max_length=128)] = ""


class JournalConfig(_Section):
    retention: Annotated[str, _duration_between(3600, 3650 * 86400)] = "90d"
    """Synced events older than this are replaced by a signed checkpoint."""
    busy_timeout: Annotated[str, _duration_between(0, 60)] = "2s"
    """How long an append waits for another writer before failing."""

    @property
    def retention_s(self) -> float:
        return parse_duration(self.retention)

    @property
    def busy_timeout_s(self) -> float:
        return parse_duration(self.busy_timeout)


class SerialSettings(_Section):
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    flow_control: Literal["none", "rtscts", "xonxoff", "dsrdtr"] = "none"
    timeout: Annotated[str, _duration_between(0.01, 60)] = "1s"
    write_timeout: Annotated[str, _duration_between(0.01, 120)] = "5s"


class PrinterConfig(SerialSettings):
    url: Annotated[str, AfterValidator(_device_url)] | None = None
    code_page: Literal["PC437", "PC850", "PC858", "WPC1252"] = "PC858"
    columns: Annotated[int, Field(ge=24, le=64)] = 42
    poll_timeout: Annotated[str, _duration_between(0.05, 10)] = "500ms"
    """How long one real-time status reply may take."""
    job_timeout: Annotated[str, _duration_between(1, 600)] = "30s"
    """How long the printer may take to confirm a job before it counts as unconfirmed."""


class ReaderConfig(SerialSettings):
    url: Annotated[str, AfterValidator(_device_url)] | None = None
    protocol: Literal["magtek", "framed"] = "magtek"
    lrc_include_stx: bool = False
    lrc_include_etx: bool = True
    lrc_seed: Annotated[int, Field(ge=0, le=255)] = 0
    track_lrc: bool = False
    """The reader transmits the ISO 7813 LRC character after each track's end sentinel."""
    inter_byte_timeout: Annotated[str, _duration_between(0.01, 10)] = "500ms"
    ack_timeout: Annotated[str, _duration_between(0.05, 10)] = "1s"
    response_timeout: Annotated[str, _duration_between(0.1, 60)] = "5s"
    swipe_timeout: Annotated[str, _duration_between(1, 600)] = "30s"


def _size_between(low: int, high: int) -> AfterValidator:
    def check(value: str) -> str:
        size = parse_size(value)
        if not low <= size <= high:
            raise ValueError(f"{value!r} is out of range; allowed {low} bytes to {high} bytes")
        return value

    return AfterValidator(check)


LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost`` (a name is not resolved: only ``localhost`` counts)."""
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_backoffice_url(value: str) -> str:
    """A back office base URL (``sync.url``, ``--backoffice``), without a trailing slash.

    Raises ValueError saying what is wrong and what is allowed. Card data and tokens
    never travel in cleartext: ``http://`` is allowed only to a loopback host.
    """
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            "not an http(s) URL with a host; write e.g. https://backoffice.example.com"
        )
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        raise ValueError("give the back office's base URL only (no query, fragment or spaces)")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError(
            f"plain http:// to {host} would send card data and tokens in cleartext over the "
            "network; allowed: https://, or http:// only to a loopback host (127.0.0.0/8, "
            "::1, localhost)"
        )
    return value.rstrip("/")


class SyncConfig(_Section):
    url: Annotated[str, AfterValidator(check_backoffice_url)] | None = None
    """Base URL of the back office; unset: sync is off (events accumulate)."""
    token_file: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    batch_events: Annotated[int, Field(ge=1, le=20_000)] = 2000
    batch_bytes: Annotated[str, _size_between(4096, 64 * 1024**2)] = "2MiB"
    compress: bool = True
    connect_timeout: Annotated[str, _duration_between(0.1, 120)] = "5s"
    read_timeout: Annotated[str, _duration_between(0.1, 600)] = "30s"
    write_timeout: Annotated[str, _duration_between(0.1, 600)] = "30s"
    pool_timeout: Annotated[str, _duration_between(0.1, 120)] = "5s"
    backoff_initial: Annotated[str, _duration_between(0.01, 600)] = "1s"
    backoff_cap: Annotated[str, _duration_between(0.01, 86400)] = "5m"
    retry_after_cap: Annotated[str, _duration_between(0.1, 86400)] = "10m"
    permanent_retry: Annotated[str, _duration_between(0.1, 86400)] = "15m"
    heartbeat_interval: Annotated[str, _duration_between(1, 3600)] = "60s"

    def seconds(self, name: str) -> float:
        """A duration key in seconds, e.g. ``seconds("backoff_cap")``."""
        return parse_duration(str(getattr(self, name)))

    @property
    def batch_bytes_n(self) -> int:
        return parse_size(self.batch_bytes)


_CURRENCY = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


def _listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError("not HOST:PORT; write e.g. 127.0.0.1:8765")
    return value


class ApiConfig(_Section):
    socket: str | None = None
    """Unix socket path; default $RUNTIME_DIRECTORY/api.sock, else <state dir>/api.sock."""
    listen: Annotated[str, AfterValidator(_listen_address)] | None = None
    """Optional TCP address, loopback only unless allow_non_loopback."""
    allow_non_loopback: bool = False
    token_file: str | None = None
    """Bearer token for the till; unset: created as <state dir>/api-token (mode 0600)."""


def _metrics_listen(value: str, info: ValidationInfo) -> str:
    """``HOST:PORT`` with HOST an IP address (``[::1]`` for IPv6) or ``localhost``, never
    resolved; a non-loopback host only with ``metrics.allow_non_loopback``."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ValueError("not HOST:PORT; write e.g. 127.0.0.1:9464 (port 0 picks a free one)")
    if host.lower() != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"{host!r} is not an IP address; write an address (127.0.0.1, ::1 as "
                "[::1]:9464, 0.0.0.0) or localhost: the metrics listener does not resolve names"
            ) from None
    if not is_loopback_host(host) and not info.data.get("allow_non_loopback", False):
        raise ValueError(
            "not a loopback address, so the metrics would be readable from the network; use "
            "127.0.0.1 or [::1], or set metrics.allow_non_loopback = true if a Prometheus "
            "server elsewhere must scrape this terminal (firewall the port to it)"
        )
    return value


class MetricsConfig(_Section):
    allow_non_loopback: bool = False
    """Allow metrics.listen on a non-loopback address (declared first: listen's check reads it)."""
    listen: Annotated[str, AfterValidator(_metrics_listen)] | None = None
    """TCP HOST:PORT for Prometheus's /metrics (docs/metrics.md); unset: no listener."""


class SalesConfig(_Section):
    currencies: list[_CURRENCY] = ["EUR", "USD", "GBP", "CHF"]
    """ISO 4217 codes the till may sell in."""
    authorization_timeout: Annotated[str, _duration_between(0.1, 120)] = "10s"
    in_doubt: Literal["offline", "decline"] = "offline"
    """After an unknown authorization outcome: try the offline policy, or decline."""
    void_alert_window: Annotated[str, _duration_between(0, 86400)] = "60s"
    receipt_copies: list[Literal["customer", "merchant"]] = ["customer", "merchant"]
    merchant_name: Annotated[str, Field(max_length=64)] = "posedge demo shop"


class OfflineConfig(_Section):
    enabled: bool = True
    max_per_sale: dict[_CURRENCY, Annotated[int, Field(ge=0)]] = {"EUR": 10000}
    """Per-sale maximum in minor units; a currency not listed is never approved offline."""
    max_total: dict[_CURRENCY, Annotated[int, Field(ge=0)]] = {"EUR": 50000}
    """Outstanding (not yet forwarded) offline amount per currency."""
    max_count: Annotated[int, Field(ge=0, le=10000)] = 100
    forward_by: Annotated[str, _duration_between(60, 30 * 86400)] = "72h"
    """Offline sales not forwarded by then expire (card data deleted, alert raised)."""


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


_RATIO = Annotated[float, Field(ge=0.0, le=1.0)]
_AGE = Annotated[str, _duration_between(1, 365 * 86400)]
_BYTES = Annotated[str, _size_between(0, 2**50)]


class HealthConfig(_Section):
    """``[health]``: the daemon's self-checks and their alerts (docs/health.md)."""

    enabled: bool = True
    """Run the checks in the daemon (device status is polled either way)."""
    poll_interval: Annotated[str, _duration_between(1, 3600)] = "10s"
    """Device polling (printer, reader) and the device checks."""
    check_interval: Annotated[str, _duration_between(1, 86400)] = "60s"
    """Every other check (journal, disk, sync, vault, modes, configuration)."""
    verify_interval: Annotated[str, _duration_between(60, 30 * 86400)] = "24h"
    """How often the daemon verifies the whole journal chain (journal.integrity)."""
    alert_for: Annotated[str, _duration_between(0, 86400)] = "30s"
    """A check must be warn/fail this long before its alert fires (Prometheus ``for``)."""
    keep_firing_for: Annotated[str, _duration_between(0, 86400)] = "60s"
    """A firing alert resolves only after its check was ok this long."""
    flap_changes: Annotated[int, Field(ge=0, le=1000)] = 6
    """This many ok/bad changes within flap_window make one "flapping" alert (0: off; not 1)."""
    flap_window: Annotated[str, _duration_between(1, 86400)] = "10m"
    flap_stable: Annotated[str, _duration_between(0, 86400)] = "10m"
    """A flapping alert ends once its check has not changed for this long."""
    clear_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    """Hysteresis: an alert on a value clears at warn x clear_ratio (high is bad) or
    warn / clear_ratio (low is bad), unless a ``*_clear`` key says otherwise."""
    disk_free_warn: _BYTES = "1GiB"
    disk_free_fail: _BYTES = "256MiB"
    disk_free_clear: _BYTES | None = None
    journal_size_warn: _BYTES = "4GiB"
    journal_size_fail: _BYTES = "16GiB"
    reader_error_rate_warn: _RATIO = 0.2
    reader_error_rate_fail: _RATIO = 0.5
    reader_error_rate_clear: _RATIO | None = None
    reader_error_window: Annotated[int, Field(ge=1, le=10_000)] = 20
    """How many recent swipes the read-error rate is measured over."""
    reader_error_min_swipes: Annotated[int, Field(ge=1, le=10_000)] = 5
    """With fewer recent swipes than this the rate is not judged."""
    unsynced_age_warn: _AGE = "1h"
    unsynced_age_fail: _AGE = "24h"
    sync_failures_warn: Annotated[int, Field(ge=1, le=1_000_000)] = 3
    sync_failures_fail: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    last_success_warn: _AGE = "1h"
    last_success_fail: _AGE = "24h"
    clock_skew_warn: Annotated[str, _duration_between(0.1, 86400)] = "30s"
    clock_skew_fail: Annotated[str, _duration_between(0.1, 86400)] = "5m"
    vault_entries_warn: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    vault_entries_fail: Annotated[int, Field(ge=1, le=1_000_000)] = 90
    forward_deadline_warn: Annotated[str, _duration_between(0, 30 * 86400)] = "12h"
    """Warn when the oldest offline sale has less than this left before its forward_by."""
    forward_deadline_fail: Annotated[str, _duration_between(0, 30 * 86400)] = "1h"

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        """warn before fail (the low-is-bad pairs: disk_free, forward_deadline, reversed)."""
        if self.flap_changes == 1:
            raise ValueError(
                "health.flap_changes = 1 would call every change flapping; use 0 (off) or 2 "
                "and more"
            )
        for name, low_is_bad in _HEALTH_PAIRS.items():
            warn, fail = self.number(f"{name}_warn"), self.number(f"{name}_fail")
            if (warn < fail) if low_is_bad else (warn > fail):
                relation = "at least" if low_is_bad else "at most"
                raise ValueError(
                    f"health.{name}_warn ({getattr(self, name + '_warn')}) must be {relation} "
                    f"health.{name}_fail ({getattr(self, name + '_fail')}): a fail is worse "
                    "than a warn"
                )
        for name, low_is_bad in (("disk_free", True), ("reader_error_rate", False)):
            if getattr(self, f"{name}_clear") is None:
                continue
            clear, warn = self.number(f"{name}_clear"), self.number(f"{name}_warn")
            if (clear < warn) if low_is_bad else (clear > warn):
                relation = "at least" if low_is_bad else "at most"
                raise ValueError(
                    f"health.{name}_clear must be {relation} health.{name}_warn (the alert "
                    "clears only once the value is back past the warn line)"
                )
        return self

    def number(self, name: str) -> float:
        """A threshold key in base units: durations in seconds, sizes in bytes."""
        value = getattr(self, name)
        if isinstance(value, str):
            return float(parse_size(value)) if value[-1] in "0123456789B" else parse_duration(value)
        return float(value)


_HEALTH_PAIRS = {
    "disk_free": True,
    "journal_size": False,
    "reader_error_rate": False,
    "unsynced_age": False,
    "sync_failures": False,
    "last_success": False,
    "clock_skew": False,
    "vault_entries": False,
    "forward_deadline": True,
}
"""Threshold pairs of ``[health]``: name → whether low values are bad."""


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise ValueError('not a local time of day; write "HH:MM" from "00:00" to "23:59"')
    return value


def _time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            'not a known IANA time zone; write a name like "Europe/Berlin" or "UTC"'
        ) from None
    return value


class CloseConfig(_Section):
    """``[close]``: the end-of-day close (docs/close.md)."""

    at: Annotated[str, AfterValidator(_clock_time)] | None = None
    """Local time of the scheduled close ("HH:MM"); unset: no scheduled close."""
    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"
    """IANA zone the business day and ``at`` are read in."""
    day_starts: Annotated[str, AfterValidator(_clock_time)] = "00:00"
    """Local time a business day starts (stores open past midnight: e.g. "04:00")."""


class Config(_Section):
    terminal: TerminalConfig = TerminalConfig()
    journal: JournalConfig = JournalConfig()
    printer: PrinterConfig = PrinterConfig()
    reader: ReaderConfig = ReaderConfig()
    sync: SyncConfig = SyncConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    sales: SalesConfig = SalesConfig()
    offline: OfflineConfig = OfflineConfig()
    log: LogConfig = LogConfig()
    health: HealthConfig = HealthConfig()
    close: CloseConfig = CloseConfig()


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: Path | None
    """The file the configuration came from; ``None`` for built-in defaults."""


def resolve_config_path(explicit: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Return (path, must_exist). A file named explicitly or by env must exist."""
    if explicit is not None:
        return explicit, True
    from_env = env.get("POSEDGE_CONFIG")
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG_PATH, False


def load_config(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load, merge environment overrides, validate. Raises ConfigError."""
    env = os.environ if env is None else env
    path, must_exist = resolve_config_path(explicit, env)
    data: dict[str, Any] = {}
    source: Path | None = None
    if _config_file_exists(path):
        data = _read_toml(path)
        source = path
    elif must_exist:
        raise ConfigError(
            f"configuration file {path} does not exist; create it (see docs/configuration.md) "
            "or leave out --config/POSEDGE_CONFIG to use built-in defaults"
        )
    where = str(path) if source else "built-in defaults"
    overridden = _apply_env_overrides(data, env)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, overridden)) from None
    return LoadedConfig(config=config, source=source)


def _unreadable(path: Path, exc: OSError) -> ConfigError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(
            f"cannot read {path}: permission denied; the service user needs read access to "
            f"the configuration file and search access to its directories (this process runs "
            f"as uid {os.geteuid()}; for /etc/posedge install systemd/posedge.tmpfiles.conf, "
            "which makes it root:posedge 0750, and make the file root:posedge 0640)"
        )
    return ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}")


def _config_file_exists(path: Path) -> bool:
    """Whether the file is there; a directory we may not search is an error, not "absent"
    (the default file would otherwise be silently ignored)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return True


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Merge ``POSEDGE_SECTION__KEY=value``; return {dotted key: variable name}."""
    applied: dict[str, str] = {}
    for name, raw_value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or ENV_SECTION_SEPARATOR not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_SECTION_SEPARATOR)
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name} is not of the form POSEDGE_<SECTION>__<KEY>"
            )
        section, key = parts
        node = data.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"environment variable {name}: [{section}] is not a table")
        node[key] = _env_value(raw_value)
        applied[f"{section}.{key}"] = name
    return applied


def _env_value(raw: str) -> Any:
    """Environment values are TOML literals when they parse as one, else strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _describe(exc: ValidationError, where: str, overridden: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        origin = f" (from {overridden[key]})" if key in overridden else ""
        kind = error["type"]
        if kind == "extra_forbidden":
            lines.append(
                f"unknown key {key}{origin}; see docs/configuration.md for the keys that exist"
            )
            continue
        value = error.get("input")
        message = error["msg"].removeprefix("Value error, ")
        if kind == "literal_error":
            message = "allowed: " + message.removeprefix("Input should be ")
        lines.append(f"{key} = {value!r}{origin}: {message}")
    return f"invalid configuration in {where}:\n  " + "\n  ".join(lines)


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """DESIGN §3: $POSEDGE_STATE_DIR, $STATE_DIRECTORY, /var/lib/posedge, XDG."""
    env = os.environ if env is None else env
    if env.get("POSEDGE_STATE_DIR"):
        return Path(env["POSEDGE_STATE_DIR"])
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/posedge")
    xdg = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "posedge"
