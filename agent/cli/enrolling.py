"""What ``posedge enroll`` and ``posedge token rotate`` do (their options and help are in
:mod:`.enroll`, which imports this module only when one of them runs: it needs the protocol
models, cryptography and httpx).

Never prints or logs the token or the private key.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from posedge.protocol.models import (
    EnrolmentRequest,
    EnrolmentResponse,
    TokenRotationRequest,
    TokenRotationResponse,
)
from posedge.protocol.signing import (
    new_device_key,
    public_key_text,
    rotation_message,
    sign_message,
)

from ..config import Config
from ..daemon.lockfile import LOCK_FILE_NAME, StateDirLock
from ..enrolment import (
    Enrolment,
    enrolled_config,
    enrolment_path,
    key_pem,
    load_signing_key,
    now_iso,
    read_enrolment,
    signing_key_path,
    token_path,
    write_enrolment,
    write_file_atomically,
    write_token,
)
from ..errors import ConfigError, PosedgeError
from ..journal import JournalError
from ..statedir import SECRET_FILE_MODE, UnsafeFile, open_secret_nofollow
from ..sync.client import BackofficeClient, Reply, agent_version, read_token
from ..sync.errors import BackofficeRejected
from .context import CliContext
from .journal import open_writer

PENDING_KEY_FILE = ".signing.key.pending"

# What a person does about each refusal (problem type → advice).
_ADVICE = {
    "enrolment-code-unknown": "the back office knows no such code: check it for typing "
    "mistakes, or ask the back office operator for a new one (posedge backoffice terminals "
    "add STORE/LANE, or terminals rotate-token ID for a terminal that exists)",
    "enrolment-code-used": "this code was used already (codes work once); ask the back "
    "office operator for a new one: posedge backoffice terminals rotate-token ID",
    "enrolment-code-expired": "this code has expired; ask the back office operator for a new "
    "one: posedge backoffice terminals rotate-token ID",
    "terminal-revoked": "the back office has revoked this terminal; it accepts nothing from it "
    "any more. A replacement needs a new terminal: posedge backoffice terminals add STORE/LANE",
    "unauthorized": "the back office does not accept this terminal's token (rotated or "
    "replaced elsewhere?); ask for a new enrolment code (posedge backoffice terminals "
    "rotate-token ID) and run posedge enroll --force --code CODE",
    "signature-invalid": "the back office holds another public key for this terminal than "
    "this device key's; ask for a new enrolment code (posedge backoffice terminals "
    "rotate-token ID) and run posedge enroll --force --code CODE",
    "nonce-reused": "the back office has seen this rotation request before; run the command again",
    "not-found": "this URL does not serve the posedge enrolment API; check --backoffice",
}


class Refused(ConfigError):
    """The back office refused the request; the message says what to do (exit 2)."""


def _refused(exc: BackofficeRejected, action: str) -> Refused:
    advice = _ADVICE.get(exc.problem_type or "")
    return Refused(f"{action} refused: {exc}" + (f"\n  what to do: {advice}" if advice else ""))


def _answer(reply: Reply, model: type[Any], action: str) -> Any:
    try:
        return model.model_validate(reply.body)
    except ValidationError:
        raise PosedgeError(
            f"{action}: the back office answered {reply.status} without a valid body; "
            "is --backoffice a posedge back office?"
        ) from None


def daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon running on ``state_dir`` (it holds ``daemon.lock``), else None
    (-1: running, pid not recorded).

    A daemon records its pid in the lock file and empties it when it stops, so an empty
    or missing file needs no probe; otherwise a non-blocking shared ``flock`` tells a
    live holder from a crashed one (the probe holds the lock for microseconds only, and
    only when a pid is recorded, so it cannot make a starting daemon fail)."""
    path = state_dir / LOCK_FILE_NAME
    recorded = StateDirLock(path).holder_pid()
    if recorded is None:
        return None
    try:
        fd = open_secret_nofollow(path, os.O_RDONLY, what="the daemon lock file")
    except (OSError, UnsafeFile):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return StateDirLock(path).holder_pid() or recorded
            return None
        return None  # nobody holds it; closing drops our shared lock
    finally:
        os.close(fd)


def _journal(cli: CliContext, type_: str, payload: dict[str, Any]) -> str | None:
    """Journal the change (an audit trail the back office receives with the next batch);
    a failure is a warning, not a failed enrolment or rotation."""
    try:
        with open_writer(cli) as jr:
            jr.append(type_, payload)
    except (JournalError, ConfigError) as exc:
        return f"the {type_} event could not be journaled: {exc}"
    return None


def _probe_writable(directory: Path, what: str) -> None:
    """Fail before the one-time code is spent if a file cannot be created in ``directory``."""
    probe = directory / f".posedge-probe.{secrets.token_hex(6)}"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(open_secret_nofollow(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                      SECRET_FILE_MODE, what=what))  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"cannot write {what} in {directory}: {exc.strerror or exc}; the posedge user must "
            "be able to create files there (nothing was sent; the code is still unused)"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def enroll_terminal(cli: CliContext, url: str | None, code: str, force: bool) -> None:
    """``posedge enroll`` (see its help)."""
    config = cli.config
    base = url or config.sync.url
    if not base:
        raise click.UsageError(
            "no back office given: pass --backoffice URL (or set sync.url in the configuration)"
        )
    code = "".join(code.split())
    if not 8 <= len(code) <= 64:
        raise click.BadParameter(
            f"the code has {len(code)} characters; an enrolment code has 8 to 64 (as printed "
            "by posedge backoffice terminals add)",
            param_hint="--code",
        )
    state_dir = cli.state_dir
    existing = read_enrolment(state_dir)
    if existing is not None and not force:
        raise ConfigError(
            f"this state directory is already enrolled as terminal {existing.terminal} "
            f"(store {existing.store}, lane {existing.lane}) at {existing.backoffice}; its device "
            f"key is {signing_key_path(state_dir)}. To enrol again with a new code, add --force "
            "(the old key and token stop being used)"
        )
    pid = daemon_pid(state_dir)
    if pid is not None:
        holder = f"pid {pid}" if pid > 0 else "a running daemon"
        raise ConfigError(
            f"the posedge daemon ({holder}) is running on {state_dir}; stop it first "
            "(systemctl stop posedge), enrol, then start it again"
        )
    tokens = token_path(config, state_dir)
    _probe_writable(state_dir, "the device signing key")
    _probe_writable(tokens.parent, "the sync token file")

    key = new_device_key()
    public = public_key_text(key)
    pending = state_dir / PENDING_KEY_FILE
    write_file_atomically(pending, key_pem(key), SECRET_FILE_MODE, what="the device signing key")
    try:
        request = EnrolmentRequest(code=code, public_key=public, agent_version=agent_version())
        client = BackofficeClient(base, "", config.sync)
        try:
            reply = client.enrol(request.model_dump_json().encode())
        except BackofficeRejected as exc:
            raise _refused(exc, "enrolment") from None
        finally:
            client.close()
        answer: EnrolmentResponse = _answer(reply, EnrolmentResponse, "enrolment")
        key_file = signing_key_path(state_dir)
        os.replace(pending, key_file)
    finally:
        with contextlib.suppress(OSError):
            pending.unlink()
    write_token(tokens, answer.token)
    record = Enrolment(
        terminal=answer.terminal,
        store=answer.store,
        lane=answer.lane,
        backoffice=base,
        token_file=str(tokens),
        public_key=public,
        enrolled_at=now_iso(),
    )
    record_file = write_enrolment(state_dir, record)
    journaled = _journal(
        cli,
        "terminal.enrolled",
        {
            "terminal": answer.terminal,
            "store": answer.store,
            "lane": answer.lane,
            "backoffice": base,
            "public_key": public,
            "replaced": existing.terminal if existing is not None else None,
        },
    )
    warnings = [journaled] if journaled else []
    if config.terminal.id not in (None, answer.terminal):
        warnings.append(
            f"the configuration sets terminal.id = {config.terminal.id!r}; remove it (or set it "
            f"to {answer.terminal!r}) or the agent will refuse to start"
        )
    warning = "; ".join(warnings) or None
    doc = record.as_dict() | {
        "signing_key_file": str(key_file),
        "enrolment_file": str(record_file),
        "warning": warning,
    }
    lines = [
        f"enrolled terminal {answer.terminal} (store {answer.store}, lane {answer.lane}) at {base}",
        f"  device key:  {key_file} (private, mode 0600; the back office holds its public key)",
        f"  token:       {tokens} (mode 0600)",
        f"  enrolment:   {record_file}",
        "every events batch is now signed with the device key; start the daemon "
        "(systemctl start posedge)",
    ]
    if warning:
        lines.append(f"warning: {warning}")
    cli.emit(doc, "\n".join(lines))


def rotate_token(cli: CliContext, no_reload: bool) -> None:
    """``posedge token rotate`` (see its help)."""
    state_dir = cli.state_dir
    record = read_enrolment(state_dir)
    if record is None:
        raise ConfigError(
            f"this state directory ({state_dir}) is not enrolled (no {enrolment_path(state_dir)}); "
            "run posedge enroll first. A terminal listed in the back office's tokens file gets a "
            "new token by editing that file"
        )
    config: Config = enrolled_config(cli.config, state_dir)
    key = load_signing_key(state_dir)
    if key is None:
        raise ConfigError(
            f"the device signing key {signing_key_path(state_dir)} is missing; restore it from "
            "backup, or ask for a new enrolment code (posedge backoffice terminals rotate-token "
            f"{record.terminal}) and run posedge enroll --force --code CODE"
        )
    current = read_token(config.sync.token_file)
    if current is None:  # pragma: no cover - the enrolment record names a token file
        raise ConfigError("no sync.token_file: run posedge enroll")
    base = config.sync.url
    assert base is not None  # the enrolment record names the back office
    terminal = record.terminal
    nonce = secrets.token_urlsafe(24)
    request = TokenRotationRequest(
        nonce=nonce, signature=sign_message(key, rotation_message(terminal, nonce))
    )
    client = BackofficeClient(base, terminal, config.sync, token=current)
    try:
        reply = client.rotate_token(request.model_dump_json().encode())
    except BackofficeRejected as exc:
        raise _refused(exc, "token rotation") from None
    finally:
        client.close()
    answer: TokenRotationResponse = _answer(reply, TokenRotationResponse, "token rotation")
    if answer.terminal != terminal:
        raise PosedgeError(
            f"token rotation: the back office answered for terminal {answer.terminal}, not "
            f"{terminal}; the token file was not changed"
        )
    path = Path(config.sync.token_file or token_path(config, state_dir))
    write_token(path, answer.token)
    warning = _journal(cli, "token.rotated", {"terminal": terminal, "backoffice": base})
    reloaded: int | None = None
    note = "no daemon is running; the next start uses the new token"
    pid = daemon_pid(state_dir)
    if pid is not None and pid > 0 and not no_reload:
        try:
            os.kill(pid, signal.SIGHUP)
            reloaded = pid
            note = f"the daemon (pid {pid}) was told to reload it (SIGHUP)"
        except OSError as exc:
            note = f"could not signal the daemon (pid {pid}: {exc.strerror}); run: systemctl " \
                   "reload posedge"  # fmt: skip
    elif pid is not None:
        note = "a daemon is running: reload it now (systemctl reload posedge)"
    cli.emit(
        {
            "terminal": terminal,
            "token_file": str(path),
            "reloaded_pid": reloaded,
            "note": note,
            "warning": warning,
        },
        f"new token for terminal {terminal} written to {path} (the old one no longer works)\n"
        f"  {note}" + (f"\nwarning: {warning}" if warning else ""),
    )
