"""A back office that refuses the terminal (401) never turns a sale into a decline.

Issue 11 item 5, end to end: the real daemon (``run --simulate --backoffice``)
sells against a back office the test runs, which requires a token the agent
does not have. The online attempt is refused, so the sale is approved offline
(the unavailable path), the card stays in the vault and an alert says why.
The operator fixes the token file and sends SIGHUP: the pending forward goes
through, the merchant is paid, the vault empties and the alerts clear.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.backoffice.app import BackofficeConfig
from posedge.simulator.backoffice import BackofficeServer

from .daemon_support import Daemon, create_sale, wait_final, wait_until

TERMINAL = "tok-lane-1"
GOOD_TOKEN = "good-token-0123456789"


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    config = BackofficeConfig(tokens={TERMINAL: GOOD_TOKEN})
    server = BackofficeServer(tmp_path / "bo.sqlite3", config=config).start()
    try:
        yield server
    finally:
        server.close()


def test_a_wrong_token_keeps_the_offline_sale_and_a_fixed_token_collects_it(
    tmp_path: Path, backoffice: BackofficeServer
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("an-expired-token\n")
    config = tmp_path / "posedge.toml"
    config.write_text(
        f'[terminal]\nid = "{TERMINAL}"\n'
        f'[sync]\ntoken_file = "{token_file}"\nbackoff_initial = "50ms"\n'
        'backoff_cap = "500ms"\npermanent_retry = "1h"\n'
    )
    state_dir = tmp_path / "state"
    with Daemon(state_dir, config=config, args=["--backoffice", backoffice.url]) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            sale = wait_final(http, create_sale(http, amount=2500)["id"])
            assert sale["state"] == "approved_offline", sale
            assert sale["forward_state"] in ("pending", "requested"), sale

            def alerts() -> dict[str, str]:
                active = http.get("/v1/status").json()["alerts"]["active"]
                return {a["kind"]: a["detail"] for a in active}

            assert wait_until(lambda: f"request_refused:{sale['id']}" in alerts())
            detail = alerts()["authorization_refused"]
            assert sale["id"] in detail and "401" in detail and "token" in detail
            assert [p.name for p in (state_dir / "vault").iterdir()] == [f"{sale['id']}.card"]
            assert backoffice.store is not None
            assert backoffice.store.captured(TERMINAL) == {}

            # The operator fixes the token and reloads: no restart, no waiting an hour.
            token_file.write_text(f"{GOOD_TOKEN}\n")
            daemon.signal(signal.SIGHUP)

            def forwarded() -> bool:
                return http.get(f"/v1/sales/{sale['id']}").json()["forward_state"] == "approved"

            assert wait_until(forwarded, 30), http.get(f"/v1/sales/{sale['id']}").json()
            assert backoffice.store.captured(TERMINAL) == {sale["id"]: 2500}
            assert wait_until(lambda: not any((state_dir / "vault").iterdir()))
            assert wait_until(lambda: f"request_refused:{sale['id']}" not in alerts())
            # The next sale is approved online again, which clears the authorization alert.
            second = wait_final(http, create_sale(http, amount=2600)["id"])
            assert second["state"] == "approved", second
            # The event upload, refused too, resumed at the reload (not an hour later).
            assert wait_until(lambda: alerts() == {}, 30), alerts()
