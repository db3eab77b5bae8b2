from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from affidavit.cli import main
from affidavit.store import load_keyring, open_store, read_kek_file
from tests import pg
from tests.store import conftest as store_fixtures

db_url = store_fixtures.db_url  # every test on SQLite and on PostgreSQL, as the store's tests
postgres_url = pg.postgres_url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _kek_args(db_url: str, tmp_path: Path) -> list[str]:
    return ["--database-url", db_url, "--key-encryption-key-file", str(tmp_path / "kek")]


def test_keys_rotate_publishes_next_then_list_shows_states(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kek").write_text("00" * 32)
    args = _kek_args(db_url, tmp_path)
    open_store(db_url).close()  # `keys list` reads an existing database only (tests/cli/test_no_traceback.py)
    assert "no signing keys" in _run(capsys, "keys", "list", "--database-url", db_url)
    first = json.loads(_run(capsys, "keys", "rotate", *args, "--issuer", "https://a.test", "--json"))
    assert first["state"] == "current" and first["published"] == [first["new"]]  # the first key: at once
    with open_store(db_url) as store:  # the history names who rotated: the OS account and host
        actors = {change.actor for change in store.history("key")}
    assert actors == {f"cli:{getpass.getuser()}@{socket.gethostname()}"}
    second = json.loads(_run(capsys, "keys", "rotate", *args, "--bits", "3072", "--delay", "10m", "--json"))
    assert second["state"] == "next" and second["current"] == first["new"]
    assert second["retiring"] == first["new"] and second["issuer"] == "https://a.test"
    assert second["published"] == [first["new"], second["new"]]  # published before it signs
    # a second rotation while one is pending is refused, an emergency one replaces it
    assert main(["keys", "rotate", *args, "--json"]) == 1
    assert "still waiting" in capsys.readouterr().out  # --json: the error is JSON on stdout

    rows = json.loads(_run(capsys, "keys", "list", "--database-url", db_url, "--json"))
    assert [(r["kid"], r["state"], r["algorithm"], r["bits"], r["location"]) for r in rows] == [
        (second["new"], "next", "RS256", 3072, "database (encrypted)"),
        (first["new"], "current", "RS256", 2048, "database (encrypted)"),
    ]
    start = datetime.fromisoformat(rows[0]["current_at"])
    assert timedelta(minutes=9) < start - datetime.now(UTC) <= timedelta(minutes=10)
    assert rows[1]["retired_at"] == rows[0]["current_at"]
    table = _run(capsys, "keys", "list", "--database-url", db_url)
    assert table.splitlines()[0].split()[:4] == ["KID", "STATE", "ALGORITHM", "LOCATION"]

    third = json.loads(_run(capsys, "keys", "rotate", *args, "--now", "--algorithm", "ES256", "--json"))
    assert third["state"] == "current" and third["algorithm"] == "ES256"
    rows = json.loads(_run(capsys, "keys", "list", "--database-url", db_url, "--json"))
    assert [r["state"] for r in rows] == ["current", "retired", "retired"]
    # with a zero lifetime retired keys are no longer published and the next rotation deletes them
    assert "expired" in _run(capsys, "keys", "list", "--database-url", db_url, "--max-token-lifetime", "0")
    fourth = json.loads(
        _run(capsys, "keys", "rotate", *args, "--max-token-lifetime", "0", "--now", "--json")
    )
    assert set(fourth["deleted"]) == {first["new"], second["new"], third["new"]}  # lifetime 0: at once
    assert fourth["algorithm"] == "ES256"  # the current key's algorithm by default
    with open_store(db_url) as s:
        ring = load_keyring(s, now=datetime.now(UTC), kek=read_kek_file(tmp_path / "kek"))
        assert ring is not None and ring.current.kid == fourth["new"] and ring.current.algorithm == "ES256"


def test_keys_rotate_refuses_a_foreign_kek(db_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kek").write_text("00" * 32)
    _run(capsys, "keys", "rotate", *_kek_args(db_url, tmp_path), "--json")
    (tmp_path / "kek").write_text("11" * 32)
    assert main(["keys", "rotate", *_kek_args(db_url, tmp_path), "--now"]) == 1
    assert "sealed under key-encryption key" in capsys.readouterr().err


def test_keys_database_url_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AFFIDAVIT_DATABASE_URL", url)
    out = json.loads(_run(capsys, "keys", "rotate", "--json"))
    assert out["issuer"] == "http://127.0.0.1:8080"
    assert (tmp_path / "key-encryption-key").stat().st_mode & 0o777 == 0o600  # beside the database
    with open_store(url) as s:
        assert [k.kid for k in s.list_signing_keys()] == [out["new"]]


def test_keys_bad_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--database-url", "mysql://x"]) == 1
    assert "bad_url" in capsys.readouterr().err


def test_keys_rotate_refuses_a_kek_other_than_the_servers(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key sealed yet (say, HSM keys only), but a server has sealed its TPM secret: that names the KEK."""
    from affidavit.store import TPM_CONTEXT_SECRET, KeyEncryptionKey, load_or_create_secret

    with open_store(db_url) as s:
        load_or_create_secret(s, TPM_CONTEXT_SECRET, KeyEncryptionKey(b"\x01" * 32), now=datetime.now(UTC))
    (tmp_path / "kek").write_text("02" * 32)
    assert main(["keys", "rotate", *_kek_args(db_url, tmp_path)]) == 1
    assert "sealed under key-encryption key" in capsys.readouterr().err
