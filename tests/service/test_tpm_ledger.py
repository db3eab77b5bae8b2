"""Issue 10 point 5: a TPM challenge answers one request across the whole service.

Two servers on one PostgreSQL database (replicas) and one server with ``--workers 2``: the same signed
request succeeds once, whichever server or worker it reaches. A request whose TPM quote does not check
does not spend the challenge of the legitimate one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit.client.tpm import TpmEvidenceSource, build_request
from affidavit.client.tpm_tools import DEFAULT_AK_HANDLE, parse_pcr_list
from affidavit.jose import b64url
from affidavit.simulate.swtpm import AkCertificateAuthority
from tests.pg import (
    fresh_database,
    postgres_url,  # noqa: F401 -- the session's PostgreSQL
)
from tests.service.helpers import ADMIN_TOKEN, BootedTpm, Server, booted_tpm

LOG = "tpm/keylime/binary_bios_measurements-secureboot"
POLICY = ('version=1.2; authorizationrules { c:[type=="aikValidated", value==true] => permit(); };'
          ' issuancerules{};')


@dataclass(frozen=True)
class Tpm:
    booted: BootedTpm
    log: bytes
    ca_pem: Path

    def source(self, quote_with: bytes | None = None) -> TpmEvidenceSource:
        return TpmEvidenceSource(
            ak=self.booted.ak, event_log=self.log,
            quoter=lambda data: self.booted.tools.quote(DEFAULT_AK_HANDLE, parse_pcr_list("0-23"),
                                                        quote_with or data))


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[Tpm]:
    work = tmp_path_factory.mktemp("tpm-ledger")
    ca = AkCertificateAuthority.create()
    (work / "ak-ca.pem").write_bytes(ca.pem)
    log = (vectors / LOG).read_bytes()
    with booted_tpm(work, log, ca) as booted:
        yield Tpm(booted, log, work / "ak-ca.pem")


def _server(data: Path, tpm: Tpm, *extra: str) -> Server:
    return Server(data, ["--admin-token", ADMIN_TOKEN, "--tpm-aik-root", str(tpm.ca_pem), *extra], tls=False)


def _post(server: Server, message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    inner = json.dumps({"payload": message}).encode()
    with httpx.Client(base_url=server.url, timeout=60) as c:  # a new connection: any worker may take it
        r = c.post("/attest/Tpm", params={"api-version": "2022-08-01"}, json={"data": b64url(inner)},
                   headers={"Connection": "close"})
    body = r.json()
    if r.status_code == 200:
        text = base64.urlsafe_b64decode(body["data"] + "=" * (-len(body["data"]) % 4))
        return 200, json.loads(text)["payload"]
    return r.status_code, body["error"]


def _request(server: Server, tpm: Tpm, key: rsa.RSAPrivateKey, **kwargs: Any) -> tuple[str, str, str]:
    status, init = _post(server, {"type": "aikcert"})
    assert status == 200
    jws = build_request(tpm.source(**kwargs), init["challenge"], init["service_context"], key)
    return init["challenge"], init["service_context"], jws


def test_a_request_replayed_to_another_replica_is_refused(
    tmp_path: Path, tpm: Tpm, postgres_url: str  # noqa: F811
) -> None:
    db = fresh_database(postgres_url)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kek = tmp_path / "kek"  # replicas on one database share its key-encryption key
    kek.write_text("00" * 32)
    shared = ("--database-url", db, "--key-encryption-key-file", str(kek))
    with _server(tmp_path / "a", tpm, *shared) as a, _server(tmp_path / "b", tpm, *shared) as b:
        a.put_policy("Tpm", POLICY)
        _challenge, context, jws = _request(a, tpm, key)
        assert _post(b, {"request": jws})[0] == 200  # a context sealed by a opens on b: one store, one key
        status, error = _post(a, {"request": jws})
        assert status == 400 and "already used" in error["message"]

        # A request whose quote is not over this challenge (a forgery, or a stolen service_context) is
        # refused without spending it: the legitimate request still gets its report.
        challenge, context, good = _request(a, tpm, key)
        forged = build_request(tpm.source(quote_with=b"\x00" * 32), challenge, context, key)
        assert _post(b, {"request": forged})[0] == 400
        assert _post(a, {"request": good})[0] == 200


@pytest.mark.slow
def test_two_workers_share_the_ledger(tmp_path: Path, tpm: Tpm) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with _server(tmp_path / "w", tpm, "--workers", "2") as server:
        server.put_policy("Tpm", POLICY)
        for _ in range(3):  # new connections land on either worker; none answers a challenge twice
            _c, _ctx, jws = _request(server, tpm, key)
            statuses = [_post(server, {"request": jws})[0] for _ in range(4)]
            assert statuses == [200, 400, 400, 400]
