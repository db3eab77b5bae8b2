from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from affidavit.store import SCHEMA_VERSION, StoreError, open_store
from tests.conftest import refused_port


def test_schema_is_created_once(db_url: str) -> None:
    with open_store(db_url) as s:
        s.set_policy("SgxEnclave", "p", jws="j", signer_cert_der=None, actor="a")
    with open_store(db_url) as s:  # reopening does not recreate or lose anything
        assert s.get_policy("SgxEnclave") is not None


def _set_version(db_url: str, version: int) -> None:
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            conn.execute("UPDATE schema_version SET version = ?", (version,))
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (version,))


def test_newer_schema_is_refused(db_url: str) -> None:
    open_store(db_url).close()
    _set_version(db_url, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as err:
        open_store(db_url)
    assert err.value.code == "schema_too_new"


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://host/x.db", "sqlite://", "sqlite:///", "nonsense"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert err.value.code == "bad_url"


def test_unreachable_postgres() -> None:
    with refused_port() as port, pytest.raises(StoreError) as err:
        open_store(f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=2")
    assert err.value.code == "unavailable"


def test_sqlite_relative_path_and_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///var/affidavit.db") as s:
        s.add_certificate(b"c", actor="a")
    assert (tmp_path / "var" / "affidavit.db").is_file()
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "affidavit.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgres_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    from tests.pg import fresh_database

    url = fresh_database(postgres_url)
    with open_store(url) as s:
        s.set_policy("SgxEnclave", "p1", jws="a.b.", signer_cert_der=None, actor="a")
        for op in ("read", "write"):
            (pid,) = s._db.query("SELECT pg_backend_pid()")[0]
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            if op == "read":
                assert s.get_policy("SgxEnclave").text == "p1"  # type: ignore[union-attr]
            else:
                s.set_policy("SgxEnclave", "p2", jws="c.d.", signer_cert_der=None, actor="b")
                assert s.get_policy("SgxEnclave").text == "p2"  # type: ignore[union-attr]
            assert s._db.query("SELECT pg_backend_pid()")[0][0] != pid  # a new connection
