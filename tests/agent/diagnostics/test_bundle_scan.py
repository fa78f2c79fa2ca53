"""The support bundle's building blocks on their own: the final scanner, the scrubber,
the obfuscator and the configuration redaction."""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

import pytest

from posedge.agent.diagnostics.leaks import (
    SECRET_REMOVED,
    TRACK_REMOVED,
    SecretSet,
    load_secrets,
    scan_member,
    scrub_text,
    scrub_value,
)
from posedge.agent.diagnostics.obfuscate import Obfuscator, deobfuscate
from posedge.agent.diagnostics.sources import SECRET_VALUE_REMOVED, redact_config

PAN = "4111111111111111"
KEY = bytes(range(100, 132))
TOKEN = "tok_9fQ2xLr7Vb0aZ3mK8pWq1sT4"


@pytest.fixture
def secret_set() -> SecretSet:
    found = SecretSet()
    found.add("device.key", KEY)
    found.add("api-token", TOKEN.encode() + b"\n")
    return found


def kinds(data: str | bytes, secret_set: SecretSet, name: str = "x.json") -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [leak.kind for leak in scan_member(name, raw, secret_set)]


@pytest.mark.parametrize(
    "text",
    [
        f'{{"m": "card {PAN}"}}',
        '{"m": "card \\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031'
        '\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031"}',
        json.dumps({"m": PAN.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))}),
        '{"n": 4111111111111111}',
        '{"n": 4111111111111111.0}',
        "free text 4111 1111 1111 1111 in a log",
        "not JSON: \\u0034111111111111111",
    ],
    ids=["raw", "json-u-escapes", "arabic-indic", "json-number", "json-float", "grouped", "text-u"],
)
def test_scanner_finds_card_numbers_in_every_form(text: str, secret_set: SecretSet) -> None:
    assert "a card number" in kinds(text, secret_set)


@pytest.mark.parametrize(
    "text", [f";{PAN}=25121010000000000000?", f"%B{PAN}^DOE/JOHN^2512101000000?"]
)
def test_scanner_finds_track_data(text: str, secret_set: SecretSet) -> None:
    assert "track data" in kinds(text, secret_set, "log.txt")


@pytest.mark.parametrize(
    ("encoded", "kind"),
    [
        (KEY.hex(), "device.key (hex)"),
        (KEY.hex().upper(), "device.key (hex)"),
        (base64.b64encode(KEY).decode(), "device.key (base64)"),
        (base64.b64encode(b"?" + KEY).decode(), "device.key (base64)"),
        (base64.urlsafe_b64encode(b"??" + KEY).decode(), "device.key (base64url)"),
        (TOKEN, "api-token (raw)"),
        (base64.b64encode(TOKEN.encode()).decode(), "api-token (base64)"),
        (TOKEN.encode().hex(), "api-token (hex)"),
    ],
)
def test_scanner_finds_secrets_in_every_encoding(
    encoded: str, kind: str, secret_set: SecretSet
) -> None:
    found = scan_member("logs/journal.jsonl", f"prefix {encoded} suffix".encode(), secret_set)
    assert kind in [leak.kind for leak in found]
    assert all(encoded not in str(leak) for leak in found)  # never echoes the secret


@pytest.mark.parametrize(
    "text",
    [
        '{"head_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}',
        '{"id": "123e4567-e89b-12d3-a456-426614174000", "ts": "1733540000000000"}',
        '{"masked": "411111******1111", "at_ms": 1733540000000}',
        '{"fingerprint": "0123456789abcdef", "bytes": 270553174016}',
        '{"online_s": 0.36000000000000004}',  # 36000000000000004 passes Luhn (Diners prefix)
    ],
)
def test_scanner_leaves_digests_ids_times_and_masked_pans_alone(
    text: str, secret_set: SecretSet
) -> None:
    assert kinds(text, secret_set) == []


def test_scrub_masks_cards_removes_tracks_credentials_and_verbatim_secrets(
    secret_set: SecretSet,
) -> None:
    text = f"card {PAN} swipe ;{PAN}=2512101? token {TOKEN} url https://u:pw@h.example.com/"
    assert scrub_text(text, secret_set) == (
        f"card 411111******1111 swipe {TRACK_REMOVED} token {SECRET_REMOVED} "
        "url https://credentials-removed@h.example.com/"
    )
    value = scrub_value({"n": int(PAN), f"k{TOKEN}": [PAN], "f": float(PAN), "s": 0.5}, secret_set)
    assert value == {
        "n": "411111******1111",
        f"k{SECRET_REMOVED}": ["411111******1111"],
        "f": "411111******1111",
        "s": 0.5,
    }
    assert kinds(json.dumps(value), secret_set) == []


def test_load_secrets_reads_tokens_keys_and_configured_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "api-token").write_text(TOKEN + "\n")
    (state / "device.key").write_bytes(KEY)
    (state / "short.key").write_bytes(b"tiny")  # too short to search for: ignored
    configured = tmp_path / "elsewhere-token"
    other = secrets.token_hex(20)
    configured.write_text(other)
    (state / "link.key").symlink_to(configured)  # never followed
    found = load_secrets(state, [configured, tmp_path / "missing"])
    names = {secret.name for secret in found.secrets}
    assert names == {"api-token", "device.key", "elsewhere-token"}
    assert found.unreadable == [str(state / "link.key")]
    assert kinds(f"x {other} y", found, "a.txt") == ["elsewhere-token (raw)"]


def test_obfuscation_is_consistent_keeps_loopback_and_round_trips() -> None:
    obfuscator = Obfuscator(["till-07"])
    texts = [
        "to https://bo.example.com:8443/v1 from 192.0.2.10 and [2001:db8::1]:80 (till-07)",
        "again bo.example.com 192.0.2.10 2001:db8::1 mail a.b@corp.example.de",
        "kept: 127.0.0.1 ::1 localhost http://[::1]:8080 0.0.0.0 sim://printer",
        "left alone: posedge.agent.cli journal.db printer.online 12:34:56 v1.2.3 sale.created",
        "learned later: backoffice-eu is https://backoffice-eu:443",
    ]
    obfuscator.learn(texts)
    out = [obfuscator.text(text) for text in texts]
    assert out[0] == "to https://host-1:8443/v1 from ip-1 and [ip-2]:80 (host-2)"
    assert out[1] == "again host-1 ip-1 ip-2 mail email-1"
    assert out[2] == texts[2] and out[3] == texts[3]
    assert out[4] == "learned later: host-3 is https://host-3:443"
    mapping = obfuscator.mapping()
    assert mapping["host-1"] == "bo.example.com" and mapping["host-2"] == "till-07"
    assert [deobfuscate(text, mapping) for text in out] == texts
    assert obfuscator.text(out[0]) == out[0]  # placeholders are never re-obfuscated


def test_config_redaction_keeps_paths_and_replaces_secrets() -> None:
    config = {
        "sync": {"token_file": "/var/lib/posedge/sync-token", "client_key": "/etc/k.pem"},
        "api": {"token": "abc", "socket": "/run/posedge/api.sock"},
        "terminal": {"name": f"lane {TOKEN}", "id": "till-00042"},
        "x": {"password": "hunter2", "list": ["plain", "Zx9" * 10]},
    }
    assert redact_config(config) == {
        "sync": {"token_file": "/var/lib/posedge/sync-token", "client_key": "/etc/k.pem"},
        "api": {"token": SECRET_VALUE_REMOVED, "socket": "/run/posedge/api.sock"},
        "terminal": {"name": f"lane {SECRET_VALUE_REMOVED}", "id": "till-00042"},
        "x": {"password": SECRET_VALUE_REMOVED, "list": ["plain", SECRET_VALUE_REMOVED]},
    }


def test_doctor_that_cannot_finish_is_recorded(tmp_path: Path) -> None:
    from posedge.agent.diagnostics.sources import doctor

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    collected = doctor(state, None, timeout_s=0.001)
    assert collected.members == {}
    assert collected.left_out == [
        {"item": "doctor", "reason": "doctor unavailable: posedge doctor took over 0s"}
    ]
    assert os.listdir(state) == []


def test_a_numeric_or_address_host_name_never_replaces_plain_numbers() -> None:
    obfuscator = Obfuscator(["10.0.0.5", "10", "till-7.shop.internal", "till-7"])
    assert obfuscator.text("10 items from 10.0.0.5 at till-7 (till-7.shop.internal)") == (
        "10 items from ip-1 at host-1 (host-2)"
    )
