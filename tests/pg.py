"""A throwaway PostgreSQL 15 for tests: ``postgres_url`` (session) and ``postgres_db`` (a fresh database);
``fresh_database(url)`` and ``fresh_schema(url)`` for parametrised fixtures.

The server runs from /usr/lib/postgresql/15/bin in a temporary directory and listens on a Unix socket in
that directory only (``listen_addresses=''``): no TCP port to choose, so no window in which another process
could take it (postgres cannot bind port 0 and report it), and every server (pytest-xdist workers,
``RestartablePostgres``) has its own socket. The URL names the directory as its host, percent-encoded
(``postgresql://affidavit@%2Ftmp%2Faffidavit-pg-x/postgres``), which libpq reads as a socket directory.
It refuses to run as root, so as root every server command runs as the ``postgres`` user (``runuser``). It
is stopped by the process id in ``postmaster.pid`` when the session ends. Other test packages reuse it with
``from tests.pg import postgres_db, postgres_url  # noqa: F401``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

PG_BIN = Path(os.environ.get("AFFIDAVIT_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 30.0
_db_counter = itertools.count()


def _options(socket_dir: Path) -> str:
    """Server options: the Unix socket in ``socket_dir`` only, and no durability (a throwaway database)."""
    return (f"-k {socket_dir} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")


def _url(socket_dir: Path, database: str = "postgres") -> str:
    return f"postgresql://affidavit@{quote(str(socket_dir), safe='')}/{database}"


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server, yield ``postgresql://affidavit@SOCKET-DIR/postgres``, stop it by pid."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}")
    tmp = Path(tempfile.mkdtemp(prefix="affidavit-pg-"))
    data = tmp / "data"
    run = _as_postgres()
    if run:
        shutil.chown(tmp, "postgres", "postgres")
    pid: int | None = None
    try:
        subprocess.run(
            run + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "affidavit", "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )
        started = subprocess.run(
            run + [str(PG_BIN / "pg_ctl"), "start", "-D", str(data), "-o", _options(tmp),
                   "-l", str(tmp / "server.log"), "-w", "-t", str(int(START_TIMEOUT))],
            capture_output=True, timeout=START_TIMEOUT + 10,
        )
        if started.returncode != 0:
            log = (tmp / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr.decode()}\n{log}")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        url = _url(tmp)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back open transactions, then exit
            if not _wait_gone(pid, 20):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def fresh_schema(server_url: str) -> str:
    """Create an empty schema and return a URL whose connections use it (much faster than a database)."""
    name = f"s{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{server_url}?options=-csearch_path%3D{name}"


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """A URL to an empty database of its own on the session's server."""
    return fresh_database(postgres_url)


class RestartablePostgres:
    """A throwaway PostgreSQL that a test can stop and start again on the same socket and data (outages).

    ``with RestartablePostgres() as pg: pg.url; pg.stop(); pg.start()``; stopped by pid at the end.
    """

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="affidavit-pg-"))
        self.data = self.tmp / "data"
        self.url = _url(self.tmp)

    def __enter__(self) -> RestartablePostgres:
        run = _as_postgres()
        if run:
            shutil.chown(self.tmp, "postgres", "postgres")
        subprocess.run(
            run + [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "affidavit", "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )
        self.start()
        return self

    def start(self) -> None:
        subprocess.run(
            _as_postgres() + [str(PG_BIN / "pg_ctl"), "start", "-D", str(self.data), "-o", _options(self.tmp),
                              "-l", str(self.tmp / "server.log"), "-w", "-t", str(int(START_TIMEOUT))],
            check=True, capture_output=True, timeout=START_TIMEOUT + 10,
        )

    def stop(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # "fast" shutdown: connections are cut
        if not _wait_gone(pid, 20):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        pidfile.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
