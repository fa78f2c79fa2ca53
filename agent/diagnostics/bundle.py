"""``posedge support-bundle``: one tar.gz a site can send to the vendor, and a local mapping.

The bundle (mode 0600) holds ``manifest.json`` first (format version, creation time,
agent version, every member with its size and sha256, what was left out and why),
then only allowlisted content from :mod:`.sources`. Everything collected is
scrubbed (:mod:`.leaks`: track data removed, card numbers masked, verbatim secrets
and URL credentials replaced) and then obfuscated (:mod:`.obfuscate`: host names,
addresses and e-mail addresses become ``host-1``, ``ip-1``, ``email-1``, the same in
every member). The placeholder mapping goes to ``<name>.mapping.json`` next to the
bundle (mode 0600), never into it.

Before anything is written, the built archive is read back and every member is
scanned (:func:`.leaks.scan_member`); any card number, track data or secret from
the state directory in any encoding checked refuses the bundle (:class:`BundleRefused`,
exit 3) and nothing is left behind. Both files are created with ``O_EXCL`` next to
their final names and linked into place, so an existing file is never replaced
and a failure leaves no partial file.

This module never logs or prints a secret or card data; a refusal names the member
and the kind of data only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import socket
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import LoadedConfig
from ..errors import CheckFailed, ConfigError
from ..statedir import SECRET_FILE_MODE, open_secret_nofollow
from . import sources
from .leaks import Leak, SecretSet, load_secrets, scan_member, scrub_text, scrub_value
from .obfuscate import Obfuscator

FORMAT = "posedge-support-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
MAPPING_SUFFIX = ".mapping.json"
DEFAULT_LOG_LINES = 2000
MAX_LOG_LINES = 50_000
CHECKED = (
    "card numbers (Luhn and card-network prefix; any script's digits; JSON \\u escapes)",
    "track 1 and track 2 data",
    "secrets from the state directory and configured token/key files: raw, JSON-escaped, "
    "percent-encoded, hex, base64 and URL-safe base64 at every alignment",
)


class BundleRefused(CheckFailed):
    """The final scan found card data or a secret: nothing was written (exit 3)."""

    def __init__(self, leaks: list[Leak]) -> None:
        self.leaks = leaks
        found = "; ".join(str(leak) for leak in leaks[:10])
        more = f" (and {len(leaks) - 10} more)" if len(leaks) > 10 else ""
        super().__init__(
            f"support bundle refused, nothing was written: {found}{more}. A key, token or "
            "card data must never be in these places: find what wrote it and report it to "
            "your security contact. If it is in old log lines, --since or --log-lines can "
            "leave them out"
        )


@dataclass(frozen=True)
class BundleRequest:
    state_dir: Path
    output: Path
    config_option: Path | None = None
    log_lines: int = DEFAULT_LOG_LINES
    since_s: float | None = None
    doctor_timeout_s: float = sources.DOCTOR_TIMEOUT_S
    agent_version: str = "0+unknown"


@dataclass(frozen=True)
class BundleResult:
    output: Path
    mapping: Path
    manifest: dict[str, Any]
    bytes: int

    def summary(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "mapping": str(self.mapping),
            "bytes": self.bytes,
            "members": self.manifest["members"],
            "left_out": self.manifest["left_out"],
            "placeholders": self.manifest["obfuscation"]["placeholders"],
        }


# ---- paths -------------------------------------------------------------------------------
def default_output(now: datetime) -> Path:
    return Path.cwd() / f"posedge-support-{now.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


def mapping_path(output: Path) -> Path:
    name = output.name
    for suffix in BUNDLE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + MAPPING_SUFFIX)


def check_output(output: Path) -> Path:
    """The mapping file's path; :class:`ConfigError` (exit 2) if either cannot be written."""
    parent = output.parent
    if not parent.is_dir():
        raise ConfigError(
            f"--output {output}: the directory {parent} does not exist; create it or choose "
            "another --output"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--output {output}: cannot write in {parent} (permission denied); choose a "
            "directory this user can write, e.g. --output /tmp/posedge-support.tar.gz"
        )
    mapping = mapping_path(output)
    for path, what in ((output, "the bundle"), (mapping, "the mapping file")):
        if os.path.lexists(path):
            raise ConfigError(
                f"--output {output}: {what} {path} already exists; move it away or choose "
                "another --output (an existing file is never overwritten)"
            )
    return mapping


# ---- building ----------------------------------------------------------------------------
def build_support_bundle(
    request: BundleRequest,
    loaded: LoadedConfig | None,
    config_error: str | None = None,
    *,
    now: datetime | None = None,
) -> BundleResult:
    """Collect, scrub, obfuscate, scan, then write the bundle and its mapping file.

    Raises :class:`ConfigError` (exit 2) for an output that cannot be written and
    :class:`BundleRefused` (exit 3) when the scan finds card data or a secret.
    """
    now = now or datetime.now(UTC)
    mapping = check_output(request.output)
    secret_set = load_secrets(request.state_dir, sources.configured_secret_files(loaded))
    collected = _collect(request, loaded, config_error, now)
    members, left_out, obfuscator = _clean(collected, secret_set)
    payload = {name: _serialise(name, members[name]) for name in sorted(members)}
    manifest = _manifest(request, now, payload, left_out, obfuscator, secret_set, mapping)
    archive = _archive(manifest, payload, now)
    leaks = scan_archive(archive, secret_set)
    if leaks:
        raise BundleRefused(leaks)
    mapping_doc = {
        "format": f"{FORMAT}-mapping",
        "format_version": FORMAT_VERSION,
        "bundle": request.output.name,
        "bundle_sha256": hashlib.sha256(archive).hexdigest(),
        "created": manifest["created"],
        "placeholders": obfuscator.mapping(),
    }
    mapping_bytes = (json.dumps(mapping_doc, indent=2, ensure_ascii=False) + "\n").encode()
    _write_new(request.output, archive)
    try:
        _write_new(mapping, mapping_bytes)
    except BaseException:
        with contextlib.suppress(OSError):
            request.output.unlink()
        raise
    return BundleResult(request.output, mapping, manifest, len(archive))


def _collect(
    request: BundleRequest, loaded: LoadedConfig | None, config_error: str | None, now: datetime
) -> sources.Collected:
    collected = sources.Collected()
    collected.merge(sources.system(request.state_dir, request.agent_version))
    collected.merge(sources.configuration(loaded, config_error))
    # Device files before the doctor starts: without a daemon it opens the devices itself,
    # and that rewrites their statistics files. It runs while the rest is collected.
    collected.merge(sources.devices(request.state_dir))
    doctor = sources.DoctorRun(request.state_dir, request.config_option, request.doctor_timeout_s)
    collected.merge(sources.journal(request.state_dir))
    collected.merge(sources.daemon_status(loaded, request.state_dir))
    collected.merge(sources.journalctl(request.log_lines, request.since_s, now))
    collected.merge(doctor.result())
    collected.left_out += sources.state_dir_left_out(request.state_dir)
    return collected


def _clean(
    collected: sources.Collected, secret_set: SecretSet
) -> tuple[dict[str, Any], list[dict[str, str]], Obfuscator]:
    """Scrub everything, then obfuscate it with one mapping (learned from all of it first)."""
    members = {
        scrub_text(name, secret_set): scrub_value(doc, secret_set)
        for name, doc in collected.members.items()
    }
    left_out = [scrub_value(entry, secret_set) for entry in collected.left_out]
    hostname = socket.gethostname()
    obfuscator = Obfuscator([hostname, hostname.split(".", 1)[0]])  # FQDN and short name
    obfuscator.learn([members, left_out])
    clean = {obfuscator.text(name): obfuscator.value(doc) for name, doc in members.items()}
    return clean, obfuscator.value(left_out), obfuscator


def _serialise(name: str, doc: Any) -> bytes:
    if name.endswith(".jsonl"):
        lines = [json.dumps(entry, sort_keys=True, ensure_ascii=False) for entry in doc]
        return ("\n".join(lines) + "\n").encode()
    if name.endswith(".json"):
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    return str(doc).encode()


def _manifest(
    request: BundleRequest,
    now: datetime,
    payload: dict[str, bytes],
    left_out: list[dict[str, str]],
    obfuscator: Obfuscator,
    secret_set: SecretSet,
    mapping: Path,
) -> dict[str, Any]:
    entries = [
        {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in payload.items()
    ]
    counts: dict[str, int] = {}
    for placeholder in obfuscator.mapping():
        kind = placeholder.rsplit("-", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    unchecked = [obfuscator.text(path) for path in secret_set.unreadable]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": now.isoformat(timespec="seconds"),
        "agent_version": request.agent_version,
        "options": {
            "log_lines": request.log_lines,
            "since_s": request.since_s,
        },
        "members": entries,
        "left_out": left_out,
        "obfuscation": {
            "placeholders": counts,
            "mapping_file": mapping.name,
            "note": "host names, IP addresses and e-mail addresses are replaced by "
            "placeholders; the mapping stays with the site",
        },
        "scanner": {
            "checked": list(CHECKED),
            "secret_files": sorted({secret.name for secret in secret_set.secrets}),
            "secret_files_unreadable": unchecked,
            "result": "clean",
        },
    }


def _archive(manifest: dict[str, Any], payload: dict[str, bytes], now: datetime) -> bytes:
    """The tar.gz bytes: manifest first, then the members in name order."""
    buffer = io.BytesIO()
    mtime = int(now.timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        items = [(MANIFEST_NAME, _serialise(MANIFEST_NAME, manifest))]
        items += list(payload.items())
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def scan_archive(archive: bytes, secret_set: SecretSet) -> list[Leak]:
    """Read the built archive back and scan every member (the manifest too)."""
    leaks: list[Leak] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            data = handle.read() if handle is not None else b""
            leaks += scan_member(info.name, data, secret_set)
            leaks += scan_member(f"{info.name} (member name)", info.name.encode(), secret_set)
    return leaks


def _write_new(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600), durably, only if it does not exist; no partial file.

    :class:`ConfigError` (exit 2) when it cannot be written or appeared meanwhile."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = open_secret_nofollow(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temp, path)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except FileExistsError:
        raise ConfigError(
            f"{path} appeared while the bundle was built; nothing was overwritten, choose "
            "another --output"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}; choose a directory this user can "
            "write, e.g. --output /tmp/posedge-support.tar.gz"
        ) from None


__all__ = [
    "DEFAULT_LOG_LINES",
    "FORMAT_VERSION",
    "MAX_LOG_LINES",
    "BundleRefused",
    "BundleRequest",
    "BundleResult",
    "build_support_bundle",
    "check_output",
    "default_output",
    "mapping_path",
    "scan_archive",
]
