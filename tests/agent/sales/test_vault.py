"""The card vault: sealing, tamper detection, keys, secure delete, durability, threads."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.errors import ConfigError
from posedge.agent.sales import vault as vault_module
from posedge.agent.sales.vault import (
    CardVault,
    VaultCorrupt,
    VaultError,
    VaultKeyInvalid,
    VaultKeyMissing,
    VaultRefused,
    VaultWrongKey,
)

PAN = "4111111111111111"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def card(pan: str = PAN, **extra: Any) -> dict[str, Any]:
    return {"pan": pan, "expiry": "2812", "service_code": "101", "entry_mode": "swipe", **extra}


@pytest.fixture
def vault(tmp_path: Path) -> CardVault:
    return CardVault(tmp_path)


def test_round_trip_and_layout(vault: CardVault, tmp_path: Path) -> None:
    deadline = NOW + timedelta(hours=72)
    vault.put("sale-1", card(), deadline)
    got = vault.get("sale-1")
    assert got == {**card(), "expires_at": deadline.isoformat()}
    assert vault.txns() == ["sale-1"]
    assert "sale-1" in vault and len(vault) == 1
    assert vault.expires_at("sale-1") == deadline
    assert vault.get("other") is None
    key = tmp_path / "vault.key"
    assert key.stat().st_size == 32
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "vault").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "vault" / "sale-1.card").stat().st_mode) == 0o600
    # A second instance (a restart) reads with the same key.
    assert CardVault(tmp_path).get("sale-1") == got


def test_files_on_disk_hold_no_pan_digits(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    vault.put("sale-2", card("5555555555554444"), NOW)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for pan in (PAN, "5555555555554444"):
                assert pan.encode() not in data, path
                assert pan[-8:].encode() not in data, path


def test_flipped_byte_is_corrupt(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    path = tmp_path / "vault" / "sale-1.card"
    blob = bytearray(path.read_bytes())
    for index in (5, 14, 25, 40, len(blob) - 1):  # key id, deadline, nonce, body, tag
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises((VaultCorrupt, VaultWrongKey)) as info:
            vault.get("sale-1")
        assert info.value.txn == "sale-1"
        assert PAN not in str(info.value)
    tampered = bytearray(blob)
    tampered[40] ^= 0x80
    path.write_bytes(bytes(tampered))
    with pytest.raises(VaultCorrupt, match="sale-1"):
        vault.get("sale-1")
    path.write_bytes(bytes(blob[:30]))
    with pytest.raises(VaultCorrupt, match="impossible size"):
        vault.get("sale-1")


def test_renamed_file_fails_to_decrypt(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    os.rename(tmp_path / "vault" / "sale-1.card", tmp_path / "vault" / "sale-2.card")
    with pytest.raises(VaultCorrupt, match="sale-2"):
        vault.get("sale-2")


def test_wrong_key_is_typed(tmp_path: Path) -> None:
    CardVault(tmp_path).put("sale-1", card(), NOW)
    (tmp_path / "vault.key").write_bytes(os.urandom(32))
    with pytest.raises(VaultWrongKey, match="another vault key"):
        CardVault(tmp_path).get("sale-1")


def test_missing_key_with_entries_is_typed_and_not_recreated(tmp_path: Path) -> None:
    CardVault(tmp_path).put("sale-1", card(), NOW)
    (tmp_path / "vault.key").unlink()
    vault = CardVault(tmp_path)  # starts (online sales go on), but never a new key silently
    assert not (tmp_path / "vault.key").exists()
    with pytest.raises(VaultKeyMissing, match="restore the key"):
        vault.get("sale-1")
    with pytest.raises(VaultKeyMissing):
        vault.put("sale-2", card(), NOW)
    # Once the unusable entries are gone, a new key is created.
    assert vault.delete("sale-1")
    vault.put("sale-2", card(), NOW)
    assert (tmp_path / "vault.key").exists()
    assert vault.get("sale-2") is not None


def test_bad_key_length_is_typed(tmp_path: Path) -> None:
    (tmp_path / "vault.key").write_bytes(b"short")
    vault = CardVault(tmp_path)
    with pytest.raises(VaultKeyInvalid, match="5 bytes"):
        vault.put("sale-1", card(), NOW)


def test_errors_form_one_tree() -> None:
    for cls in (VaultCorrupt, VaultKeyMissing, VaultKeyInvalid, VaultWrongKey, VaultRefused):
        assert issubclass(cls, VaultError)
    assert issubclass(VaultRefused, ValueError)


def test_delete_overwrites_before_unlink(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    path = tmp_path / "vault" / "sale-1.card"
    before = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)  # keeps the inode alive after unlink
    try:
        assert vault.delete("sale-1") is True
        assert not path.exists()
        os.lseek(fd, 0, os.SEEK_SET)
        after = os.read(fd, len(before) + 10)
    finally:
        os.close(fd)
    assert len(after) == len(before)
    assert after == bytes(len(before))
    assert vault.delete("sale-1") is False
    assert vault.get("sale-1") is None


def test_replacing_an_entry_overwrites_the_old_one(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    path = tmp_path / "vault" / "sale-1.card"
    fd = os.open(path, os.O_RDONLY)
    try:
        vault.put("sale-1", card("5555555555554444"), NOW)
        old = os.read(fd, 4096)
    finally:
        os.close(fd)
    assert old == bytes(len(old))
    got = vault.get("sale-1")
    assert got is not None and got["pan"] == "5555555555554444"


def test_put_fsyncs_file_and_directory_before_returning(
    vault: CardVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        synced.append(target)
        real_fsync(fd)

    monkeypatch.setattr(vault_module.os, "fsync", spy)
    vault.put("sale-1", card(), NOW)
    vault_dir = str(tmp_path / "vault")
    assert any(Path(p).name.startswith(".sale-1.tmp-") for p in synced), synced  # data
    assert synced[-1] == vault_dir  # rename made durable last
    synced.clear()
    vault.delete("sale-1")
    assert synced[-1] == vault_dir and len(synced) == 2  # overwrite, then directory


def test_failed_write_leaves_no_temp_file(
    vault: CardVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vault_module.os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        vault.put("sale-1", card(), NOW)
    monkeypatch.undo()
    assert os.listdir(tmp_path / "vault") == []


def test_stale_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    CardVault(tmp_path)
    stale = tmp_path / "vault" / ".sale-1.tmp-abcd"
    stale.write_bytes(b"x" * 50)
    CardVault(tmp_path)
    assert not stale.exists()


def test_expired_uses_the_header_deadline(vault: CardVault, tmp_path: Path) -> None:
    vault.put("early", card(), NOW)
    vault.put("late", card(), NOW + timedelta(hours=1))
    assert vault.expired(NOW - timedelta(seconds=1)) == []
    assert vault.expired(NOW) == ["early"]  # at the deadline: expired
    assert vault.expired(NOW + timedelta(hours=2)) == ["early", "late"]
    # Works without the key (crypto-shredded vault still gets cleaned up).
    (tmp_path / "vault.key").unlink()
    assert CardVault(tmp_path).expired(NOW) == ["early"]


def test_bad_header_counts_as_expired(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW + timedelta(days=3))
    (tmp_path / "vault" / "sale-1.card").write_bytes(b"junk")
    assert vault.expired(NOW) == ["sale-1"]


def test_changed_deadline_is_detected_on_get(vault: CardVault, tmp_path: Path) -> None:
    vault.put("sale-1", card(), NOW)
    path = tmp_path / "vault" / "sale-1.card"
    blob = bytearray(path.read_bytes())
    later = int((NOW + timedelta(days=30)).timestamp()).to_bytes(8, "big", signed=True)
    blob[12:20] = later
    path.write_bytes(bytes(blob))
    assert vault.expired(NOW) == []  # the header alone is not authenticated...
    with pytest.raises(VaultCorrupt):  # ...but the entry can no longer be used
        vault.get("sale-1")


def test_purge_orphans(vault: CardVault) -> None:
    for txn in ("a", "b", "c"):
        vault.put(txn, card(), NOW)
    assert vault.purge_orphans({"b", "zzz"}) == ["a", "c"]
    assert vault.txns() == ["b"]
    assert vault.purge_orphans({"b"}) == []


def test_shred_all_removes_entries_and_key(vault: CardVault, tmp_path: Path) -> None:
    vault.put("a", card(), NOW)
    assert vault.shred_all() == ["a"]
    assert not (tmp_path / "vault.key").exists()
    vault.put("b", card(), NOW)  # a fresh key
    assert vault.get("b") is not None


@pytest.mark.parametrize(
    "extra",
    [
        {"track2": ";4111111111111111=28121010000000000000?"},
        {"track_data": ""},
        {"cvv": "123"},
        {"CVV2": "123"},
        {"pin": "1234"},
        {"pin_block": "00"},
        {"cardholder_name": "DOE/JOHN"},
    ],
)
def test_refuses_track_cvv_pin(vault: CardVault, extra: dict[str, str]) -> None:
    with pytest.raises(VaultRefused, match="never stored") as info:
        vault.put("sale-1", card(**extra), NOW)
    for value in extra.values():
        if value:
            assert value not in str(info.value)
    assert vault.txns() == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"colour": "red"}, "unknown fields colour"),
        ({"pan": "4111-1111"}, "field pan"),
        ({"pan": 4111111111111111}, "field pan"),
        ({"expiry": "2813"}, "field expiry"),
        ({"service_code": "1011"}, "field service_code"),
        ({"entry_mode": ""}, "field entry_mode"),
    ],
)
def test_refuses_malformed_cards(vault: CardVault, bad: dict[str, Any], match: str) -> None:
    with pytest.raises(VaultRefused, match=match) as info:
        vault.put("sale-1", {**card(), **bad}, NOW)
    assert PAN not in str(info.value)


@pytest.mark.parametrize("txn", ["", "../x", "a/b", ".hidden", "a.card", "x" * 129, "é"])
def test_refuses_unsafe_txn_ids(vault: CardVault, txn: str) -> None:
    with pytest.raises(VaultRefused, match="cannot name a vault entry"):
        vault.put(txn, card(), NOW)
    with pytest.raises(VaultRefused):
        vault.get(txn)


def test_naive_deadline_refused(vault: CardVault) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        vault.put("sale-1", card(), datetime(2024, 5, 1))


def test_threads_put_and_delete_distinct_txns(vault: CardVault) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                txn = f"t{n}-{i}"
                vault.put(txn, card(), NOW)
                got = vault.get(txn)
                assert got is not None and got["pan"] == PAN
                if i % 2:
                    assert vault.delete(txn)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(vault.txns()) == sorted(f"t{n}-{i}" for n in range(8) for i in range(0, 20, 2))


def test_repr_shows_no_key(vault: CardVault, tmp_path: Path) -> None:
    raw = (tmp_path / "vault.key").read_bytes()
    assert raw.hex() not in repr(vault)


def test_bad_txn_error_never_echoes_a_pan(vault: CardVault) -> None:
    with pytest.raises(VaultRefused) as info:
        vault.put(f"{PAN}/x", card(), NOW)
    assert PAN not in str(info.value)


# ---- the vault never follows links nor touches what it did not write (issue 11 item 4) ----
NOBODY = 65534


def test_purge_orphans_touches_only_its_own_regular_files(vault: CardVault, tmp_path: Path) -> None:
    """Symbolic links (to a file outside, or named like a temp file), directories, foreign
    files and files of another user survive a purge byte for byte; links stay links."""
    vault.put("mine", card(), NOW)
    vdir = tmp_path / "vault"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not card data, not the vault's\n" * 4)
    outside_temp = tmp_path / "outside-temp.txt"
    outside_temp.write_bytes(b"also not the vault's\n")
    (vdir / "linked.card").symlink_to(outside)
    (vdir / ".linked.tmp-abcd1234").symlink_to(outside_temp)
    (vdir / "adir.card").mkdir()
    (vdir / "notes.txt").write_text("a technician's note\n")
    (vdir / "README").write_text("keep\n")
    foreign = vdir / "foreign.card"
    foreign.write_bytes(b"PEV1" + bytes(60))
    foreign_temp = vdir / ".foreign.tmp-0123abcd"
    foreign_temp.write_bytes(b"x" * 48)
    if os.geteuid() == 0:
        os.chown(foreign, NOBODY, NOBODY)
        os.chown(foreign_temp, NOBODY, NOBODY)
    others = {p.name: p.read_bytes() for p in (outside, outside_temp)} | {
        p.name: p.read_bytes() for p in (vdir / "notes.txt", vdir / "README")
    }

    purged = vault.purge_orphans(set())
    CardVault(tmp_path).purge_orphans(set())  # a restart (removes temp files) as well

    expected_purged = ["mine"] if os.geteuid() == 0 else ["foreign", "mine"]
    assert purged == expected_purged
    assert {p.name: p.read_bytes() for p in (outside, outside_temp)} | {
        p.name: p.read_bytes() for p in (vdir / "notes.txt", vdir / "README")
    } == others
    assert (vdir / "linked.card").is_symlink() and (vdir / ".linked.tmp-abcd1234").is_symlink()
    assert (vdir / "adir.card").is_dir()
    if os.geteuid() == 0:
        assert foreign.read_bytes() == b"PEV1" + bytes(60)
        assert foreign_temp.read_bytes() == b"x" * 48
    assert vault.txns() == []  # links, directories and foreign files are not entries
    assert vault.expired(NOW + timedelta(days=999)) == []


def test_a_symlinked_entry_is_refused_and_never_written_through(
    vault: CardVault, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    link = tmp_path / "vault" / "sale-1.card"
    link.symlink_to(victim)
    with pytest.raises(VaultError, match="symbolic link") as caught:
        vault.get("sale-1")
    assert str(link) in str(caught.value)
    with pytest.raises(VaultError, match="symbolic link"):
        vault.put("sale-1", card(), NOW)
    assert vault.delete("sale-1") is False  # left alone, with a warning
    assert vault.expires_at("sale-1") is None
    assert "sale-1" not in vault
    assert victim.read_bytes() == b"precious" and link.is_symlink()


def test_a_hard_linked_entry_is_not_overwritten(vault: CardVault, tmp_path: Path) -> None:
    """Overwriting in place would reach the other name's content."""
    other = tmp_path / "other-name"
    vault.put("sale-1", card(), NOW)
    os.link(tmp_path / "vault" / "sale-1.card", other)
    content = other.read_bytes()
    assert vault.delete("sale-1") is False
    assert other.read_bytes() == content


def test_a_symlinked_vault_key_is_refused(tmp_path: Path) -> None:
    CardVault(tmp_path).put("sale-1", card(), NOW)
    key = tmp_path / "vault.key"
    elsewhere = tmp_path / "elsewhere.key"
    key.rename(elsewhere)
    key.symlink_to(elsewhere)
    with pytest.raises(VaultKeyInvalid, match="symbolic link") as caught:
        CardVault(tmp_path).get("sale-1")
    assert str(key) in str(caught.value)


def test_vault_files_get_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        vault = CardVault(tmp_path)
        vault.put("sale-1", card(), NOW)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "vault.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "vault" / "sale-1.card").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "vault").stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o703], ids=oct)
def test_a_vault_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    vdir = tmp_path / "vault"
    vdir.mkdir()
    os.chmod(vdir, mode)
    with pytest.raises(ConfigError, match="writable by") as caught:
        CardVault(tmp_path)
    assert f"chmod go-w {vdir}" in str(caught.value) and caught.value.exit_code == 2
    assert stat.S_IMODE(vdir.stat().st_mode) == mode  # refused, not silently changed
