from __future__ import annotations

import json

import pytest

from affidavit.cli import main
from affidavit.store import load_keyring, open_store


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_keys_rotate_and_list(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    open_store(db_url).close()  # `keys list` reads an existing database only (tests/cli/test_no_traceback.py)
    assert "no signing keys" in _run(capsys, "keys", "list", "--database-url", db_url)
    first = json.loads(_run(capsys, "keys", "rotate", "--database-url", db_url, "--issuer", "https://a.test",
                            "--json"))
    assert first["retired"] is None and first["published"] == [first["current"]]
    second = json.loads(_run(capsys, "keys", "rotate", "--database-url", db_url, "--bits", "3072", "--json"))
    assert second["retired"] == first["current"]
    assert second["issuer"] == "https://a.test"  # taken from the current key's certificate
    assert second["published"] == [second["current"], first["current"]]

    rows = json.loads(_run(capsys, "keys", "list", "--database-url", db_url, "--json"))
    assert [(r["kid"], r["status"], r["bits"]) for r in rows] == [
        (second["current"], "current", 3072), (first["current"], "published", 2048),
    ]
    table = _run(capsys, "keys", "list", "--database-url", db_url)
    assert table.splitlines()[0].split()[:3] == ["KID", "STATUS", "BITS"] and second["current"] in table

    # with a zero lifetime the retired key is no longer published and the next rotation deletes it
    assert "expired" in _run(capsys, "keys", "list", "--database-url", db_url, "--max-token-lifetime", "0")
    third = json.loads(
        _run(capsys, "keys", "rotate", "--database-url", db_url, "--max-token-lifetime", "0", "--json")
    )
    assert set(third["deleted"]) == {first["current"], second["current"]}
    with open_store(db_url) as s:
        from datetime import UTC, datetime

        ring = load_keyring(s, now=datetime.now(UTC))
        assert ring is not None and ring.current.kid == third["current"]


def test_keys_database_url_from_environment(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: ANN001
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AFFIDAVIT_DATABASE_URL", url)
    out = json.loads(_run(capsys, "keys", "rotate", "--json"))
    assert out["issuer"] == "http://127.0.0.1:8080"
    with open_store(url) as s:
        assert [k.kid for k in s.list_signing_keys()] == [out["current"]]


def test_keys_bad_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--database-url", "mysql://x"]) == 1
    assert "bad_url" in capsys.readouterr().err
