"""Signing keys at rest and in rotation, against real servers (issue 12): private data directory, keys
sealed under the key-encryption key, legacy plaintext sealed on first start, ES256, and a rotation under
load with two servers on one database that no relying party notices."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from affidavit.cli import main
from affidavit.simulate import SimulatedPlatform
from affidavit.store import load_keyring, open_store, read_kek_file
from affidavit.store.schema import MIGRATIONS
from affidavit.tokens import SigningKey
from tests.service.conftest import Inputs
from tests.service.helpers import Server, b64url, jwt_header

HARNESS_LOG = "server.log"  # written by the test harness (tests/service/helpers.py), not by the server


def _attest(client: httpx.Client, sim: SimulatedPlatform) -> str:
    r = client.post("/attest/SgxEnclave?api-version=2022-08-01", json={"quote": b64url(sim.sgx_quote())})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    header = jwt_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key, algorithms=[header["alg"]], options={"verify_aud": False})


def _private_ders(db_url: str, kek_path: Path) -> list[bytes]:
    with open_store(db_url) as s:
        ring = load_keyring(s, now=datetime.now(UTC),
                            kek=read_kek_file(kek_path))
    assert ring is not None
    return [ring.current.private_key.private_bytes(serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption())]


def _raw_files(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data.glob("affidavit.db*")))


def test_first_start_makes_a_private_data_directory_and_seals_the_key(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    data = tmp_path / "data"
    with Server(data, inputs.serve_args(), tls=True) as server, server.client() as c:
        _attest(c, sim)
        jwks = c.get("/certs").json()
        raw = _raw_files(data)
        log = server.log()
        # point 1, while it runs: 0700 directories, 0600 files, the database's -wal and -shm included
        seen = set()
        for path in [data, *data.rglob("*")]:
            mode = path.stat().st_mode & 0o777
            if path.name == HARNESS_LOG:
                continue
            seen.add(path.name)
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
    assert {"affidavit.db", "affidavit.db-wal", "affidavit.db-shm", "key-encryption-key", "tls"} <= seen
    # point 2: the KEK was generated into the data directory, said once; no private key in the files
    assert log.count("production deployments keep the key-encryption key elsewhere") == 1
    assert b"PRIVATE KEY" not in raw
    (der,) = _private_ders(f"sqlite:///{data / 'affidavit.db'}", data / "key-encryption-key")
    assert der not in raw and der[-64:] not in raw
    assert jwks["keys"][0]["alg"] == "RS256"


def test_existing_plaintext_database_is_sealed_on_first_start(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    """A database as Affidavit wrote it before keys were encrypted (schema 1, PEM in the row)."""
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    db = data / "affidavit.db"
    legacy = SigningKey.generate("http://127.0.0.1", now=datetime.now(UTC))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    for sql in MIGRATIONS[0]:
        conn.execute(sql.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO signing_keys (kid, pem, created_at) VALUES (?, ?, ?)",
                 (legacy.kid, legacy.to_pem(), "2026-01-01T00:00:00.000000Z"))
    conn.commit()
    conn.close()
    assert b"PRIVATE KEY" in db.read_bytes()
    (row,) = json.loads(_keys_list(f"sqlite:///{db}"))
    assert row["location"].startswith("database (PLAINTEXT") and row["kid"] == legacy.kid
    kek = tmp_path / "kek"
    kek.write_text("ab" * 32)
    with Server(data, inputs.serve_args() + ["--key-encryption-key-file", str(kek)], tls=False) as server:
        with server.client() as c:
            token = _attest(c, sim)
            jwks = c.get("/certs").json()
        assert "production deployments" not in server.log()  # a KEK was given
    assert jwt_header(token)["kid"] == legacy.kid  # the same key, now sealed
    _verify(token, jwks)
    raw = _raw_files(data)
    legacy_der = legacy.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert b"PRIVATE KEY" not in raw and legacy_der not in raw
    assert data.stat().st_mode & 0o777 == 0o700  # tightened
    assert not (data / "key-encryption-key").exists()
    # the wrong KEK stops the start with one clear line
    kek.write_text("cd" * 32)
    bad = Server(data, inputs.serve_args() + ["--key-encryption-key-file", str(kek)], tls=False)
    with pytest.raises(RuntimeError) as err:
        bad.start()
    assert "sealed under key-encryption key" in str(err.value) and "Traceback" not in str(err.value)


def test_es256_deployment(tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform) -> None:
    args = inputs.serve_args() + ["--signing-algorithm", "ES256"]
    with Server(tmp_path / "es", args, tls=False) as server, server.client() as c:
        token = _attest(c, sim)
        jwks = c.get("/certs").json()
        metadata = c.get("/.well-known/openid-configuration").json()
    assert jwt_header(token)["alg"] == "ES256" and jwks["keys"][0]["kty"] == "EC"
    assert metadata["id_token_signing_alg_values_supported"] == ["ES256"]
    assert _verify(token, jwks)["x-ms-attestation-type"] == "sgx"


class RelyingParty:
    """Caches one server's JWKS; an unknown kid refetches it, at most once per ``refetch`` seconds."""

    def __init__(self, server: Server, refetch: float) -> None:
        self.server, self.refetch = server, refetch
        self.jwks: dict[str, Any] = {"keys": []}
        self.fetched = float("-inf")

    def verify(self, token: str) -> None:
        kid = jwt_header(token)["kid"]
        known = {k["kid"] for k in self.jwks["keys"]}
        if kid not in known and time.monotonic() - self.fetched >= self.refetch:
            with self.server.client() as c:
                self.jwks = c.get("/certs").json()
            self.fetched = time.monotonic()
        _verify(token, self.jwks)


@pytest.mark.slow
def test_rotation_under_load_with_two_servers_fails_no_relying_party(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    """Point 5: publish before use. The new key waits longer than reload (0.5 s) + refetch (1 s)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    kek = tmp_path / "kek"
    kek.write_text("5a" * 32)
    args = inputs.serve_args() + ["--database-url", url, "--key-encryption-key-file", str(kek),
                                  "--key-reload-interval", "0.5s"]
    one = Server(tmp_path / "one", args, tls=False).start()
    two = Server(tmp_path / "two", args, tls=False).start()
    try:
        rps = {one.url: RelyingParty(two, 1.0), two.url: RelyingParty(one, 1.0)}  # the OTHER server's /certs
        failures: list[str] = []
        kids: dict[str, set[str]] = {one.url: set(), two.url: set()}
        stop = threading.Event()
        count = [0]

        def load() -> None:
            with one.client() as a, two.client() as b:
                while not stop.is_set():
                    for server, c in ((one, a), (two, b)):
                        token = _attest(c, sim)
                        kids[server.url].add(jwt_header(token)["kid"])
                        try:
                            rps[server.url].verify(token)
                        except Exception as exc:  # noqa: BLE001 -- every failure is counted
                            failures.append(f"{jwt_header(token)['kid']}: {exc!r}")
                        count[0] += 1

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(1.5)
            assert main(["keys", "rotate", "--database-url", url, "--key-encryption-key-file", str(kek),
                         "--delay", "3s", "--json"]) == 0
            time.sleep(5.0)
        finally:
            stop.set()
            worker.join(30)
        rows = json.loads(_keys_list(url))
        assert [r["state"] for r in rows] == ["current", "retired"]
        new, old = rows[0]["kid"], rows[1]["kid"]
        assert failures == [] and count[0] > 20
        assert kids[one.url] == kids[two.url] == {new, old}  # both servers switched, under load
    finally:
        one.stop()
        two.stop()


def _keys_list(url: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["keys", "list", "--database-url", url, "--json"]) == 0
    return out.getvalue()
