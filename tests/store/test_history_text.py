"""The policy history keeps every text and JWS byte for byte (schema migration 2), on SQLite and
PostgreSQL, across reopening (a restart) and between two stores on one database (replicas)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from affidavit.store import open_store, policy_hash
from affidavit.store.schema import MIGRATIONS, SCHEMA_VERSION

ODD = "version=1.0;\r\nauthorizationrules { => permit(); };  \n// ü \t trailing\n\n"
OTHER = "version=1.0; authorizationrules { => deny(); };"


def test_history_keeps_texts_across_restart_and_replicas(db_url: str) -> None:
    with open_store(db_url) as a:
        a.set_policy("SgxEnclave", ODD, jws="h.p1.s", signer_cert_der=None, actor="admin-token@127.0.0.1")
        a.set_policy("SgxEnclave", OTHER, jws="h.p2.", signer_cert_der=None, actor="oidc:bob@10.0.0.2")
        a.reset_policy("SgxEnclave", actor="admin-token@127.0.0.1")
    with open_store(db_url) as b, open_store(db_url) as c:  # after a restart, seen by two servers
        for store in (b, c):
            history = store.policy_history("SgxEnclave")
            assert [(h.action, h.hash, h.text, h.jws) for h in history] == [
                ("set", policy_hash(ODD), ODD, "h.p1.s"),
                ("set", policy_hash(OTHER), OTHER, "h.p2."),
                ("reset", None, None, None),
            ]
            assert history[0].id < history[1].id < history[2].id
            assert history[1].actor == "oidc:bob@10.0.0.2"
        assert [h.text for h in b.policy_history("SgxEnclave", limit=2)] == [OTHER, None]  # the newest two
        (found,) = c.policy_history("SgxEnclave", hash_=policy_hash(ODD))
        assert found.text == ODD
        # a rollback sets the old text again: the same hash
        c.set_policy("SgxEnclave", found.text, jws=found.jws or "", signer_cert_der=None, actor="x")
        got = b.get_policy("SgxEnclave")
        assert got is not None and got.text == ODD and got.hash == policy_hash(ODD)
        assert b.policy_history("Tpm") == []


def test_rows_from_before_migration_2_read_as_without_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a database as schema version 1 left it
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        types = {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}
        for sql in MIGRATIONS[0]:
            conn.execute(sql.format(**types))
        conn.execute("INSERT INTO history (kind, subject, action, hash, actor, at) VALUES "
                     "('policy', 'Tpm', 'set', 'H', 'old', '2026-01-01T00:00:00.000000Z')")
    with open_store(f"sqlite:///{path}") as store:
        (old,) = store.policy_history("Tpm")
        assert (old.hash, old.text, old.jws) == ("H", None, None)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
