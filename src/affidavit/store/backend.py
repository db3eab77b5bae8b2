"""Database connections behind one small interface, so the SQL in :mod:`affidavit.store.store` runs on
SQLite (stdlib, WAL) and PostgreSQL (psycopg 3) unchanged.

Statements use ``?`` placeholders; the PostgreSQL backend rewrites them to ``%s``. Writes run in explicit
transactions that take a write lock first (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory
lock on PostgreSQL), so concurrent writers from several processes serialise instead of interleaving.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from affidavit.store.errors import StoreError

Row = tuple[Any, ...]
_WRITE_LOCK_ID = 0x4166666964617669  # "Affidavi": PostgreSQL advisory lock key for all writers


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count."""

    def fetchall(self) -> list[Row]: ...


class Backend(Protocol):
    dialect: str
    types: dict[str, str]

    def write(self) -> Any:
        """Context manager: a serialised read-write transaction yielding a :class:`Cursor`."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one read statement (its own consistent snapshot) and return the rows."""

    def close(self) -> None: ...


class Conflict(StoreError):
    code = "conflict"


class _SqliteCursor:
    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            self._cur.execute(sql, tuple(params))
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None
        return self._cur.rowcount

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]


class SqliteBackend:
    dialect = "sqlite"
    types = {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            _create_private(Path(path))
        try:
            self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            # Deleted and overwritten content (a key sealed on upgrade) is zeroed, not left in free pages.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path}: {exc}", code="unavailable") from None
        self._lock = threading.RLock()

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}", code="database_error") from None
            try:
                yield _SqliteCursor(self._conn.cursor())
            except BaseException:
                self._conn.rollback()
                raise
            try:
                self._conn.commit()
            except sqlite3.Error as exc:
                self._conn.rollback()
                raise StoreError(f"SQLite commit failed: {exc}", code="database_error") from None

    def write(self) -> Any:
        return _wrap(self._tx(), sqlite3.Error)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:  # autocommit: the single statement is its own consistent snapshot
            try:
                return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}", code="database_error") from None

    def scrub(self) -> None:
        """Copy the WAL into the database and truncate it, so no old page image stays in ``-wal``."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite checkpoint failed: {exc}", code="database_error") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _create_private(path: Path) -> None:
    """Create the database file 0600 in a 0700 directory before SQLite opens it: SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode, so they are private from their first byte."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create SQLite database {path}: {exc.strerror}",
            code="unavailable") from None
    os.close(fd)


class _PgCursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        import psycopg

        try:
            self._cur.execute(sql.replace("?", "%s"), tuple(params))
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(str(exc).strip()) from None
        return int(self._cur.rowcount)

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]


class PostgresBackend:
    dialect = "postgresql"
    types = {"blob": "BYTEA", "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"}

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.RLock()
        self._conn: Any = None
        self._connect()

    def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to PostgreSQL: {exc}", code="unavailable") from None
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """A write transaction. If the connection turns out to be dead before anything was written (the
        server restarted since the last call), it is replaced and the transaction started again."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                stack = ExitStack()
                try:
                    stack.enter_context(conn.transaction())
                    cur = stack.enter_context(conn.cursor())
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_ID,))
                except psycopg.OperationalError as exc:
                    try:
                        stack.__exit__(type(exc), exc, exc.__traceback__)
                    except psycopg.Error:
                        pass
                    if attempt == 2 or not conn.broken:
                        raise
                    continue
                with stack:
                    yield _PgCursor(cur)
                return

    def write(self) -> Any:
        import psycopg

        return _wrap(self._tx(), psycopg.Error)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Autocommit read. A connection lost since the last call (server restart, idle timeout) is
        replaced and the read retried once; writes are never retried (their outcome may be unknown)."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql.replace("?", "%s"), tuple(params))
                        return [tuple(r) for r in cur.fetchall()]
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not conn.broken:
                        raise StoreError(f"database error: {exc}", code="database_error") from None
                except psycopg.Error as exc:
                    raise StoreError(f"database error: {exc}", code="database_error") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


@contextmanager
def _wrap(tx: Any, db_error: type[BaseException]) -> Iterator[Cursor]:
    """Turn driver errors into StoreError; anything else (including injected failures) passes through."""
    try:
        with tx as cur:
            yield cur
    except StoreError:
        raise
    except db_error as exc:
        raise StoreError(f"database error: {exc}", code="database_error") from None


def connect(url: str) -> Backend:
    """A backend for ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:`` or
    ``postgresql://user@host:port/db`` (also ``postgres://``)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise StoreError("sqlite URLs have no host: use sqlite:///path/to.db", code="bad_url")
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if not path:
            raise StoreError("sqlite URL has no path: use sqlite:///path/to.db", code="bad_url")
        return SqliteBackend(path)
    if parts.scheme in ("postgresql", "postgres"):
        return PostgresBackend(url)
    raise StoreError(
        f"unsupported database URL scheme {parts.scheme!r} (sqlite or postgresql)", code="bad_url"
    )
