"""Persistence of verified collateral items: the ``affidavit_collateral`` table of the service's database.

The table is the store's (created by its migration 5, :mod:`affidavit.store.schema`) and so are the
connections (:mod:`affidavit.store.backend`: SQLite in WAL mode or PostgreSQL, ``?`` placeholders,
reconnection after a lost PostgreSQL connection, serialised writers). Writes are conditional upserts, so
several service instances sharing one PostgreSQL database can refresh concurrently and an older document
still never overwrites a newer one. Every failure is a :class:`CollateralError` (``collateral_cache``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralItem, ItemKey
from affidavit.store.backend import Backend, connect
from affidavit.store.errors import StoreError
from affidavit.store.schema import migrate
from affidavit.timefmt import db_time, parse_db_time

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


def _cache_error(exc: StoreError) -> CollateralError:
    if exc.code == "bad_url":
        return CollateralError(f"unsupported collateral cache URL: {exc.message}")
    return CollateralError(f"collateral cache: {exc.message}", code="collateral_cache")


class CollateralDb:
    """The ``affidavit_collateral`` table, through a store backend.

    ``CollateralDb(url)`` connects (and migrates the schema) itself and closes the connection on
    :meth:`close`; ``CollateralDb(backend)`` uses a backend its caller owns and leaves it open.
    """

    def __init__(self, source: str | Backend) -> None:
        self._owned = isinstance(source, str)
        try:
            if isinstance(source, str):
                self.url = source
                self._db: Backend = connect(source)
            else:
                self.url = f"{source.dialect} backend"
                self._db = source
            try:
                migrate(self._db)  # creates or keeps the table (migration 5)
            except BaseException:
                if self._owned:
                    self._db.close()
                raise
        except StoreError as exc:
            raise _cache_error(exc) from None

    @property
    def backend(self) -> Backend:
        return self._db

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def upsert_if_newer(self, item: CollateralItem, stored_at: datetime) -> bool:
        """Store ``item`` unless the row for its key ranks at least as high; True if stored."""
        k = item.key
        params = (
            k.kind, k.tee, k.name, item.body, item.signature, item.chain,
            db_time(item.issue_date), db_time(item.next_update), item.number, db_time(stored_at),
        )
        try:
            with self._db.write() as cur:
                count = cur.execute(_UPSERT, params)
        except StoreError as exc:
            raise _cache_error(exc) from None
        return count > 0

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.query(sql, params)
        except StoreError as exc:
            raise _cache_error(exc) from None

    def get(self, key: ItemKey) -> tuple[CollateralItem, datetime] | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM affidavit_collateral WHERE kind = ? AND tee = ? AND name = ?",
            (key.kind, key.tee, key.name),
        )
        return _row(rows[0]) if rows else None

    def all(self) -> list[tuple[CollateralItem, datetime]]:
        """Every stored item with the time it was stored."""
        rows = self._query(f"SELECT {_COLUMNS} FROM affidavit_collateral ORDER BY kind, tee, name")
        return [_row(r) for r in rows]


def _row(r: Any) -> tuple[CollateralItem, datetime]:
    kind, tee, name, body, signature, chain, issue, nxt, number, stored = r
    key = ItemKey(kind, tee, name)
    item = CollateralItem(key, body, signature, chain, parse_db_time(issue), parse_db_time(nxt), int(number))
    return item, parse_db_time(stored)
