"""A private PostgreSQL for the tests: initdb in a temporary directory, `pg_ctl start` on a free
port (TCP on 127.0.0.1, its unix socket in that directory), one fresh database per test, and the
server stopped by its pid at the end of the session.

The binaries: $AIGC_PG_BIN, else the `pg_ctl` on PATH, else the newest
/usr/lib/postgresql/*/bin (Debian's layout). initdb refuses to run as root: as root, the server
runs as the `postgres` system user (its directory is chowned to it); as anyone else, as the
current user. Without the binaries (or, as root, without that user) the tests that need it are
skipped with the reason; with AIGC_REQUIRE_POSTGRES=1 (`make test-postgres`, CI) they fail
instead. The tests that need it are marked `postgres` (`make test` leaves them out, `make
test-postgres` runs them).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest

from load_tests.procs import free_port

REQUIRE_ENV = "AIGC_REQUIRE_POSTGRES"
SYSTEM_USER = "postgres"  # who runs the server when the tests run as root
SUPERUSER = "aigc"  # the database role the tests connect as (trust auth, loopback only)


def bin_dir() -> Path | None:
    """Where initdb, pg_ctl and createdb are; None: not installed."""
    if os.environ.get("AIGC_PG_BIN"):
        return Path(os.environ["AIGC_PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why a private PostgreSQL cannot be started here; None: it can."""
    where = bin_dir()
    if where is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): set AIGC_PG_BIN or install them"
    for tool in ("initdb", "pg_ctl", "createdb"):
        if not (where / tool).is_file():
            return f"no {tool} in {where}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root (initdb refuses) and there is no {SYSTEM_USER!r} user"
        if shutil.which("runuser") is None:
            return "running as root (initdb refuses) and there is no runuser"
    return None


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@dataclass
class PostgresServer:
    """A running private PostgreSQL: `url(db)` for SQLAlchemy (psycopg 3), `create_database`."""

    bin: Path
    root: Path  # everything of it: data/, the socket, the log
    port: int = field(default_factory=free_port)
    pid: int | None = None
    _names: Iterator[int] = field(default_factory=lambda: count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        """`cmd` as the user who owns the server (initdb refuses root)."""
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], timeout_s: float = 120) -> None:
        out = subprocess.run(
            self._as_owner(cmd), capture_output=True, text=True, timeout=timeout_s, cwd=self.root
        )
        if out.returncode != 0:
            log = self.log.read_text() if self.log.is_file() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}\n{log}"
            )

    def start(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            [
                str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
            ]
        )  # fmt: skip
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c max_connections=100",
                # a test server: durability against a power cut is not the point here
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        self._run(
            [
                str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                "-l", str(self.log), "-o", options,
            ]
        )  # fmt: skip
        # the postmaster's pid is the first line of its pid file
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t{next(self._names)}"
        self._run([str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port),
                   "-U", SUPERUSER, name])  # fmt: skip
        return self.url(name)

    def stop(self, timeout_s: float = 30) -> None:
        """`pg_ctl stop -m fast` (sessions are ended), waiting up to timeout_s; SIGKILL to the
        postmaster when it has not stopped by then."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        stopped = subprocess.run(
            self._as_owner([str(self.bin / "pg_ctl"), "stop", "-m", "fast", "-w",
                            "-t", str(int(timeout_s)), "-D", str(self.data)]),
            capture_output=True, cwd=self.root, timeout=timeout_s + 10,
        )  # fmt: skip
        if stopped.returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of its own for as long as the block runs (raises when one cannot start)."""
    why = unavailable()
    if why is not None:
        raise RuntimeError(why)
    where = bin_dir()
    assert where is not None
    # under /tmp, short: the unix socket's path has a length limit, and the server's user
    # (as root: postgres) must reach it, which pytest's tmp_path (mode 700, root's) would not be
    root = Path(tempfile.mkdtemp(prefix="aigc-pg-", dir="/tmp"))
    server = PostgresServer(where, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL: skipped (failed, with AIGC_REQUIRE_POSTGRES=1) where
    none can be started."""
    why = unavailable()
    if why is not None:
        if required():
            pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
        pytest.skip(f"PostgreSQL tests: {why}")
    with private_postgres() as server:
        yield server


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()
