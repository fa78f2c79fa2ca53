"""``posedge backoffice staff …`` as a real process, on both backends: passwords from
standard input, clear errors and exit 2 on bad input (nothing stored), never a password in
the output or the database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from posedge.backoffice.dashboard.sessions import SessionStore
from posedge.backoffice.dashboard.staff import StaffAccounts
from posedge.backoffice.store import BackofficeStore

POSEDGE = Path(sys.executable).with_name("posedge")
SECRET = "a very long secret phrase 42"


def staff(db: Path | str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(POSEDGE), "backoffice", "staff", *args, "--db", str(db)],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


@pytest.fixture
def db(db_target: Path | str) -> Path | str:
    BackofficeStore(db_target).close()  # what serve's first start does: the schema
    return db_target


def test_add_list_passwd_remove(db: Path | str) -> None:
    added = staff(db, "add", "alice", "--json", stdin=SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["username"] == "alice"
    assert SECRET not in added.stdout + added.stderr
    listed = staff(db, "list", "--json")
    assert [u["username"] for u in json.loads(listed.stdout)["staff"]] == ["alice"]
    assert "scrypt" not in listed.stdout
    with BackofficeStore(db) as store:
        assert StaffAccounts(store).authenticate("alice", SECRET)
        cookie, _ = SessionStore(store).create("alice")
        rows = repr(store.db.execute("SELECT * FROM staff_users").rows)
        assert SECRET not in rows and "scrypt$" in rows
    changed = staff(db, "passwd", "alice", "--json", stdin="another secret phrase\n")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["sessions_ended"] == 1
    with BackofficeStore(db) as store:
        assert SessionStore(store).lookup(cookie) is None
        assert not StaffAccounts(store).authenticate("alice", SECRET)
        assert StaffAccounts(store).authenticate("alice", "another secret phrase")
    removed = staff(db, "remove", "alice")
    assert removed.returncode == 0 and "alice removed" in removed.stdout
    assert "no staff users" in staff(db, "list").stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [(("add", "alice"), "short\n", "give at least 12"),
     (("add", "alice"), "", "no password on standard input"),
     (("add", "bad name!"), SECRET + "\n", "is not allowed"),
     (("add", "x" * 65), SECRET + "\n", "is not allowed"),
     (("passwd", "nobody"), SECRET + "\n", "no staff user 'nobody'"),
     (("remove", "nobody"), "", "no staff user 'nobody'")],
)  # fmt: skip
def test_bad_input_exits_2_and_stores_nothing(
    db: Path | str, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = staff(db, *args, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert SECRET not in result.stderr + result.stdout
    with BackofficeStore(db) as store:
        assert StaffAccounts(store).list() == []


def test_a_user_is_added_once(db: Path | str) -> None:
    assert staff(db, "add", "alice", stdin=SECRET + "\n").returncode == 0
    again = staff(db, "add", "alice", stdin="a different password\n")
    assert again.returncode == 2 and "exists already" in again.stderr
    with BackofficeStore(db) as store:
        assert StaffAccounts(store).authenticate("alice", SECRET)  # unchanged


def test_a_missing_database_file_is_exit_2(tmp_path: Path) -> None:
    result = staff(tmp_path / "typo.db", "list")
    assert result.returncode == 2 and "no back office database" in result.stderr
    assert not (tmp_path / "typo.db").exists()
