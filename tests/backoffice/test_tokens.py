"""Open mode and per-terminal bearer tokens (401 / 403), tokens file loading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posedge.simulator.backoffice import (
    BackofficeConfig,
    BackofficeConfigError,
    BackofficeServer,
    load_tokens,
)

from .helpers import authorization, batch, chain, events_url

TOKENS = {"lane1": "token-of-lane1", "lane2": "token-of-lane2"}


@pytest.fixture
def secured(db_target: Path | str) -> Iterator[httpx.Client]:
    config = BackofficeConfig(tokens=TOKENS)
    with (
        BackofficeServer(db_target, config=config) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as c,
    ):
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_open_mode_accepts_any_terminal(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "open_mode": True}
    assert client.post(events_url("anyone"), json=batch(chain(1), "anyone")).status_code == 200


def test_every_terminal_must_present_its_own_token(secured: httpx.Client) -> None:
    body = batch(chain(2))
    missing = secured.post(events_url(), json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    unknown = secured.post(events_url(), json=body, headers=bearer("not-a-known-token"))
    assert unknown.status_code == 401 and "not-a-known-token" not in unknown.text
    other = secured.post(events_url(), json=body, headers=bearer(TOKENS["lane2"]))
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    own = secured.post(events_url(), json=body, headers=bearer(TOKENS["lane1"]))
    assert own.status_code == 200
    head = secured.get(f"{events_url()}/head", headers=bearer(TOKENS["lane2"]))
    assert head.status_code == 403
    auth = secured.post(
        "/v1/authorizations",
        json=authorization(),
        headers={"Idempotency-Key": "s-1:online", **bearer(TOKENS["lane2"])},
    )
    assert auth.status_code == 403
    assert secured.get("/healthz").json()["open_mode"] is False
    assert secured.get("/admin/faults").status_code == 404


def test_tokens_files_in_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "tokens.toml"
    toml.write_text('[tokens]\nlane1 = "token-of-lane1"\n')
    assert load_tokens(toml) == {"lane1": "token-of-lane1"}
    js = tmp_path / "tokens.json"
    js.write_text('{"lane2": "token-of-lane2"}')
    assert load_tokens(js) == {"lane2": "token-of-lane2"}
    for text, message in (
        ("lane1 = ", "not valid TOML"),
        ('"bad id" = "token-of-x"', "not a terminal id"),
        ('lane1 = "short"', "at least"),
        ("", "no terminal"),
    ):
        toml.write_text(text)
        with pytest.raises(BackofficeConfigError, match=message):
            load_tokens(toml)
    with pytest.raises(BackofficeConfigError, match="cannot read"):
        load_tokens(tmp_path / "missing.toml")
