"""Persistence of verified collateral items: one table, SQLite or PostgreSQL.

The table lives beside the service's own (``affidavit_collateral``, created on open). Writes are
conditional upserts, so several service instances sharing one PostgreSQL database can refresh
concurrently and an older document still never overwrites a newer one.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralItem, ItemKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS affidavit_collateral (
    kind TEXT NOT NULL,
    tee TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL,
    chain TEXT NOT NULL,
    issue_date TEXT NOT NULL,
    next_update TEXT NOT NULL,
    number BIGINT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (kind, tee, name)
)
"""
_COLUMNS = "kind, tee, name, body, signature, chain, issue_date, next_update, number, stored_at"
_UPSERT = f"""
INSERT INTO affidavit_collateral ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, tee, name) DO UPDATE SET
    body = excluded.body, signature = excluded.signature, chain = excluded.chain,
    issue_date = excluded.issue_date, next_update = excluded.next_update, number = excluded.number,
    stored_at = excluded.stored_at
WHERE affidavit_collateral.number < excluded.number
   OR (affidavit_collateral.number = excluded.number
       AND affidavit_collateral.issue_date < excluded.issue_date)
"""


def _iso(when: datetime) -> str:
    # Fixed width, UTC, so that the text order in SQL is the time order.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class CollateralDb:
    """The ``affidavit_collateral`` table in a SQLite file or a PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._pg = url.startswith(("postgresql://", "postgres://"))
        try:
            if self._pg:
                import psycopg

                self._conn: Any = psycopg.connect(url, autocommit=True)
            elif url.startswith("sqlite://"):
                path = url[len("sqlite://") :].removeprefix("/") or ":memory:"
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA busy_timeout = 5000")
            else:
                raise CollateralError(
                    f"unsupported collateral cache URL {url!r} (sqlite:/// or postgresql://)"
                )
            self._execute(_SCHEMA)
        except CollateralError:
            raise
        except Exception as exc:  # sqlite3.Error, psycopg.Error: reported as the layer's error
            raise CollateralError(
                f"cannot open collateral cache {url}: {exc}", code="collateral_cache"
            ) from exc

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self._pg:
            sql = sql.replace("?", "%s")
        with self._lock:
            try:
                return self._conn.execute(sql, params)
            except Exception as exc:
                raise CollateralError(f"collateral cache: {exc}", code="collateral_cache") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def upsert_if_newer(self, item: CollateralItem, stored_at: datetime) -> bool:
        """Store ``item`` unless the row for its key ranks at least as high; True if stored."""
        k = item.key
        cur = self._execute(
            _UPSERT,
            (
                k.kind,
                k.tee,
                k.name,
                item.body,
                item.signature,
                item.chain,
                _iso(item.issue_date),
                _iso(item.next_update),
                item.number,
                _iso(stored_at),
            ),
        )
        return bool(cur.rowcount and cur.rowcount > 0)

    def get(self, key: ItemKey) -> tuple[CollateralItem, datetime] | None:
        rows = self._execute(
            f"SELECT {_COLUMNS} FROM affidavit_collateral WHERE kind = ? AND tee = ? AND name = ?",
            (key.kind, key.tee, key.name),
        ).fetchall()
        return _row(rows[0]) if rows else None

    def all(self) -> list[tuple[CollateralItem, datetime]]:
        """Every stored item with the time it was stored."""
        sql = f"SELECT {_COLUMNS} FROM affidavit_collateral ORDER BY kind, tee, name"
        rows = self._execute(sql).fetchall()
        return [_row(r) for r in rows]


def _row(r: Any) -> tuple[CollateralItem, datetime]:
    kind, tee, name, body, signature, chain, issue, nxt, number, stored = r
    key = ItemKey(kind, tee, name)
    item = CollateralItem(key, body, signature, chain, _parse(issue), _parse(nxt), int(number))
    return item, _parse(stored)
