"""A private, throw-away PostgreSQL server for tests, benchmarks and demos.

Started from the system's PostgreSQL binaries (``initdb``/``pg_ctl`` on the
PATH or under ``/usr/lib/postgresql/*/bin``), in a fresh data directory, as an
unprivileged user (PostgreSQL refuses to run as root; under root the server
runs as ``nobody``), listening on loopback only with trust authentication::

    with PostgresServer() as pg:          # any free port
        url = pg.url("posedge")           # a fresh database, created on demand

It never touches a system cluster. ``durable=False`` turns off fsync for test
speed; benchmarks keep the defaults.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 60
UNPRIVILEGED_USER = "nobody"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the server did not start."""


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: $POSEDGE_PG_BINDIR, the PATH, or the newest
    ``/usr/lib/postgresql/*/bin``."""
    env = os.environ.get("POSEDGE_PG_BINDIR")
    candidates = [Path(env)] if env else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    candidates += [Path(p) for p in reversed(versions)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on the PATH or under "
        "/usr/lib/postgresql/*/bin; install the server package (Debian: apt-get install "
        "postgresql) or set POSEDGE_PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One private PostgreSQL cluster; a context manager (``start``/``stop``)."""

    def __init__(self, durable: bool = False, max_connections: int = 200) -> None:
        self.bindir = find_bindir()
        self.durable = durable
        self.max_connections = max_connections
        self.port = 0
        self.root: Path | None = None
        self._user: pwd.struct_passwd | None = None
        self._databases: set[str] = set()

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            list(args),
            check=check,
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
            timeout=START_TIMEOUT_S,
            **kwargs,
        )

    def start(self) -> PostgresServer:
        # /tmp itself, not a private temp dir of the caller: the unprivileged server user
        # must be able to reach its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="posedge-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            self._user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.port = _free_port()
        initdb = self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C", *(() if self.durable else ("--no-sync",)),
            check=False,
        )  # fmt: skip
        if initdb.returncode != 0:
            self.stop()
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()[-800:]}")
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.root}",
            f"-c max_connections={self.max_connections}",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        started = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.root / "log"),
            "-w", "-t", str(START_TIMEOUT_S), "-o", " ".join(options), "start",
            check=False,
        )  # fmt: skip
        if started.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = (self.root / "log").read_text(errors="replace")[-800:]
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr.strip()} {log}")
        return self

    def url(self, database: str = "postgres") -> str:
        """A connection URL for ``database``, created on first use."""
        if database != "postgres" and database not in self._databases:
            self._run(
                str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", "postgres", database,
            )  # fmt: skip
            self._databases.add(database)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w",
                "stop", check=False,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
