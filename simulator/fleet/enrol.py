"""Enrolment of simulated terminals (``POST /v1/enrol``), kept apart so it can be wired to the
back office's enrolment as that settles.

A terminal presents a one-time code and its Ed25519 public key; the answer
names the terminal id the back office assigned and its bearer token. The
simulated terminal then signs every batch with that key. The token is held in
memory only and never printed or logged.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from posedge.protocol.models import EnrolmentRequest, EnrolmentResponse
from posedge.protocol.signing import public_key_text

from .terminal import AGENT_VERSION

ENROL_PATH = "/v1/enrol"


class EnrolmentFailed(Exception):
    """The back office refused an enrolment or answered something else than the protocol's."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def enrol(
    client: httpx.AsyncClient, code: str, key: Ed25519PrivateKey, terminal_hint: str
) -> EnrolmentResponse:
    """Register ``key`` with the one-time ``code``; the answer holds the id and the token."""
    try:
        body = EnrolmentRequest(
            code=code, public_key=public_key_text(key), agent_version=AGENT_VERSION
        ).model_dump(mode="json")
    except ValidationError:
        raise EnrolmentFailed(
            f"enrolment code of {terminal_hint} is not 8-64 characters; check the codes file"
        ) from None
    response = await client.post(
        ENROL_PATH,
        content=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json"},
    )
    if response.status_code != 200:
        detail = ""
        try:
            doc = response.json()
            if isinstance(doc, dict):
                detail = str(doc.get("detail") or doc.get("title") or "")
        except ValueError:
            pass
        raise EnrolmentFailed(
            f"enrolment of {terminal_hint} refused: {response.status_code} {detail}".rstrip(),
            response.status_code,
        )
    try:
        return EnrolmentResponse.model_validate_json(response.content)
    except ValidationError:
        raise EnrolmentFailed(
            f"enrolment of {terminal_hint}: the back office answered 200 without a valid "
            "enrolment document; is --backoffice a posedge back office?"
        ) from None


def load_mapping(path: Path, what: str) -> dict[str, str]:
    """A ``terminal = "value"`` file (TOML, or JSON for a ``.json`` name), optionally under a
    ``tokens`` / ``codes`` table: the back office's tokens-file format."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ValueError(
            f'{path} is not valid {kind} ({exc}); write one `terminal-id = "{what}"` line '
            "per terminal"
        ) from None
    for table in ("tokens", "codes"):
        if isinstance(doc, dict) and isinstance(doc.get(table), dict):
            doc = doc[table]
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f'{path} holds no `terminal-id = "{what}"` lines')
    out: dict[str, str] = {}
    for terminal, value in doc.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{path}: the {what} of {terminal} must be a non-empty string")
        out[str(terminal)] = value
    return out
