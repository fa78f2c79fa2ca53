"""The HTTP layer against httpx.MockTransport: headers, statuses, Retry-After, skew."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from posedge.agent.config import SyncConfig
from posedge.agent.errors import ConfigError
from posedge.agent.statedir import UnsafeFile
from posedge.agent.sync import (
    BackofficeBusy,
    BackofficeClient,
    BackofficeRejected,
    BackofficeUnreachable,
    Rewind,
)
from posedge.agent.sync.client import read_token
from posedge.agent.sync.retry import parse_retry_after


def client(handler: object, token: str | None = "tok-1", **settings: object) -> BackofficeClient:
    return BackofficeClient(
        "https://bo.test",
        "lane-1",
        SyncConfig.model_validate(settings),
        token=token,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


def problem(status: int, kind: str, **extra: object) -> httpx.Response:
    body = {"type": f"https://posedge.dev/problems/{kind}", "title": kind, "status": status}
    return httpx.Response(
        status, json=body | extra, headers={"Content-Type": "application/problem+json"}
    )


def test_events_request_carries_token_idempotency_key_and_compressed_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"acked_seq": 9})

    body = json.dumps({"events": [{"pad": "x" * 40} for _ in range(100)]}).encode()
    reply = client(handler).post_events(body, 5, 9)
    assert reply.body == {"acked_seq": 9}
    request = seen[0]
    assert request.url.path == "/v1/terminals/lane-1/events"
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["Idempotency-Key"] == "lane-1:5-9"
    assert request.headers["X-Posedge-Terminal"] == "lane-1"
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content) == body


def test_no_token_means_no_authorization_header_and_small_bodies_stay_plain() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client(handler, token=None).heartbeat({"terminal": "lane-1"})
    assert "Authorization" not in seen[0].headers
    assert "Content-Encoding" not in seen[0].headers
    assert json.loads(seen[0].content) == {"terminal": "lane-1"}


def test_incompressible_bodies_are_sent_plain() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client(handler).post_events(os.urandom(4000), 1, 1)
    assert "Content-Encoding" not in seen[0].headers


def test_compression_can_be_switched_off() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client(handler, compress=False).post_events(b"a" * 10_000, 1, 1)
    assert "Content-Encoding" not in seen[0].headers


@pytest.mark.parametrize(
    ("response", "error", "retry_after"),
    [
        (httpx.Response(500, text="boom"), BackofficeBusy, None),
        (httpx.Response(503, headers={"Retry-After": "7"}), BackofficeBusy, 7.0),
        (httpx.Response(429, headers={"Retry-After": "120"}), BackofficeBusy, 120.0),
        (problem(409, "in-progress"), BackofficeBusy, None),
        (problem(400, "invalid-request", detail="events[0].seq missing"), BackofficeRejected, None),
        (problem(401, "unauthorized"), BackofficeRejected, None),
        (problem(403, "forbidden"), BackofficeRejected, None),
        (problem(409, "conflict"), BackofficeRejected, None),
        (problem(413, "too-large"), BackofficeRejected, None),
        (problem(422, "idempotency-mismatch"), BackofficeRejected, None),
    ],
)
def test_status_mapping(
    response: httpx.Response, error: type[Exception], retry_after: float | None
) -> None:
    with pytest.raises(error) as info:
        client(lambda request: response).post_events(b"{}", 1, 1)
    assert getattr(info.value, "retry_after_s", None) == retry_after
    if isinstance(info.value, BackofficeRejected):
        assert info.value.status == response.status_code


def test_gap_answer_is_a_rewind_with_the_expected_seq() -> None:
    answer = problem(409, "sequence-gap", expected_seq=43, acked_seq=42, detail="expected 43")
    with pytest.raises(Rewind) as info:
        client(lambda request: answer).post_events(b"{}", 50, 60)
    assert (info.value.expected_seq, info.value.acked_seq) == (43, 42)
    assert info.value.problem_type == "sequence-gap"


def test_connection_errors_and_timeouts_are_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(BackofficeUnreachable, match="ConnectError"):
        client(refuse).events_head()
    with pytest.raises(BackofficeUnreachable, match="timed out"):
        client(slow).events_head()


def test_clock_skew_from_the_date_header() -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=90)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers={"Date": format_datetime(ahead, usegmt=True)})

    bo = client(handler)
    reply = bo.events_head()
    assert reply.skew_s is not None and 88 <= reply.skew_s <= 91
    assert bo.last_skew_s == reply.skew_s


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    later = format_datetime(now + timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(later, now) == 45.0
    earlier = format_datetime(now - timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("¹", now) is None  # a digit to str.isdigit(), not to int()
    assert parse_retry_after(None, now) is None


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    assert read_token(str(path)) == "s3cret"
    assert read_token(None) is None
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(str(tmp_path / "missing"))
    path.write_text("two words")
    with pytest.raises(ConfigError, match="empty or has spaces"):
        read_token(str(path))


def test_a_symlinked_token_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real-token"
    real.write_text("s3cret\n")
    link = tmp_path / "token"
    link.symlink_to(real)
    with pytest.raises(UnsafeFile, match="symbolic link") as caught:
        read_token(str(link))
    message = str(caught.value)
    assert "sync.token_file" in message and str(link) in message
    assert caught.value.exit_code == 2


def test_an_unreadable_or_odd_token_file_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("   \n")
    with pytest.raises(ConfigError, match="empty or has spaces"):
        read_token(str(path))
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_token(str(path))
    path.write_text("x" * 70_000)
    with pytest.raises(ConfigError, match="over 65536 bytes"):
        read_token(str(path))
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_token(str(tmp_path))


def test_tls_verification_cannot_be_configured_away(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"sync\.ca_file"):
        client(lambda r: httpx.Response(200), ca_file=str(bad))
