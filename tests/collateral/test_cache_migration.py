"""Collateral persistence on the store's backend: databases written before schema migration 5 (when
``collateral.db`` opened its own connection and created ``affidavit_collateral`` itself) keep their cached
collateral, on SQLite and on PostgreSQL 15."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from affidavit.collateral import CollateralError
from affidavit.collateral.cache import CollateralCache
from affidavit.collateral.db import CollateralDb
from affidavit.collateral.items import CollateralItem, CollateralSet
from affidavit.store import SCHEMA_VERSION, open_store
from affidavit.store.backend import connect
from affidavit.store.schema import MIGRATIONS
from tests.collateral.conftest import AZURE_AT
from tests.pg import fresh_database, postgres_url  # noqa: F401

# The table exactly as collateral/db.py created it before migration 5, and how it wrote a row.
OLD_TABLE = """
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
OLD_INSERT = (
    "INSERT INTO affidavit_collateral (kind, tee, name, body, signature, chain, issue_date, next_update, "
    "number, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STORED_AT = datetime(2025, 6, 9, 12, 30, tzinfo=UTC)


def _old_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _old_rows(items: CollateralSet) -> list[tuple[Any, ...]]:
    return [
        (i.key.kind, i.key.tee, i.key.name, i.body, i.signature, i.chain, _old_time(i.issue_date),
         _old_time(i.next_update), i.number, _old_time(STORED_AT))
        for i in items.items
    ]


def _raw(url: str, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run statements on a connection of the driver's own, as the old collateral.db did."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        try:
            for sql, params in statements:
                conn.execute(sql, params)
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            for sql, params in statements:
                pg.execute(sql.replace("?", "%s"), params)


def _store_at_version_4(url: str) -> None:
    backend = connect(url)
    try:
        with backend.write() as cur:
            cur.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for statements in MIGRATIONS[:4]:
                for sql in statements:
                    cur.execute(sql.format(**backend.types))
            cur.execute("INSERT INTO schema_version (version) VALUES (4)")
    finally:
        backend.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("layout", ["store-v4", "collateral-only"])
def test_an_old_database_keeps_its_cached_collateral(
    url: str, layout: str, anchors: Any, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    """``store-v4``: a served database (schema 4) whose cache table the old code added beside the store's;
    ``collateral-only``: `affidavit collateral import` into a fresh file before the first `serve`."""
    old = CollateralSet.from_json(standard)
    if layout == "store-v4":
        _store_at_version_4(url)
    _raw(url, [(OLD_TABLE, ()), *((OLD_INSERT, row) for row in _old_rows(old))])

    cache = CollateralCache.open(url, anchors)  # migrates to the current schema
    try:
        assert [e.item for e in cache.entries()] == sorted(old.items, key=lambda i: i.key)
        assert {e.stored_at for e in cache.entries()} == {STORED_AT}
        new = CollateralSet.from_json(early).tcb_info  # a newer document still replaces the kept one
        assert cache.offer(new, AZURE_AT) is True
    finally:
        cache.close()
    with open_store(url) as store:  # the store opens the migrated database and finds its schema current
        assert store._db.query("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    db = CollateralDb(url)
    try:
        rows = {item.key: item for item, _ in db.all()}
    finally:
        db.close()
    assert len(rows) == 4 and rows[new.key] == new
    assert rows[old.qe_identity.key] == old.qe_identity


def test_a_fresh_database_gets_the_table_from_the_store_migrations(url: str) -> None:
    with open_store(url) as store:
        assert store._db.query("SELECT count(*) FROM affidavit_collateral") == [(0,)]


def test_the_cache_shares_a_backend_its_caller_owns(
    url: str, anchors: Any, standard: dict[str, Any]
) -> None:
    backend = connect(url)
    try:
        cache = CollateralCache(CollateralDb(backend), anchors)
        assert cache.offer_set(CollateralSet.from_json(standard), AZURE_AT) == [True] * 4
        cache.close()  # the backend is the caller's: still open
        assert backend.query("SELECT count(*) FROM affidavit_collateral") == [(4,)]
    finally:
        backend.close()


def test_database_failures_are_the_collateral_layers_error(tmp_path: Path, standard: dict[str, Any]) -> None:
    db = CollateralDb(f"sqlite:///{tmp_path / 'c.db'}")
    item: CollateralItem = CollateralSet.from_json(standard).tcb_info
    db.backend.close()  # a closed connection: every statement fails in the driver
    with pytest.raises(CollateralError) as err:
        db.upsert_if_newer(item, AZURE_AT)
    assert err.value.code == "collateral_cache"
    with pytest.raises(CollateralError) as err:
        db.all()
    assert err.value.code == "collateral_cache"


@pytest.mark.slow
def test_the_cache_writes_again_after_postgresql_restarts(
    anchors: Any, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    """The store backend's reconnection serves the cache too: a restart of the server fails the writes
    made while it is down (the layer's error; reads stay in memory) and the next write reconnects."""
    from tests.pg import RestartablePostgres

    old, new = CollateralSet.from_json(standard), CollateralSet.from_json(early)
    with RestartablePostgres() as pg:
        cache = CollateralCache.open(pg.url, anchors)
        try:
            assert cache.offer_set(old, AZURE_AT) == [True] * 4
            pg.stop()
            with pytest.raises(CollateralError) as err:
                cache.offer(new.tcb_info, AZURE_AT)
            assert err.value.code == "collateral_cache"
            assert cache.get(old.tcb_info.key) == old.tcb_info  # still served from memory
            pg.start()
            assert cache.offer(new.tcb_info, AZURE_AT) is True  # a new connection, no restart of ours
        finally:
            cache.close()
        reopened = CollateralCache.open(pg.url, anchors)
        try:
            assert reopened.get(new.tcb_info.key) == new.tcb_info
        finally:
            reopened.close()
