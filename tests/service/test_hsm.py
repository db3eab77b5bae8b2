"""Signing keys inside a PKCS#11 token (SoftHSM2, initialised in a temporary directory): attestation
tokens signed in the token verify with the Azure SDK and PyJWT against /certs, rotation makes new keys on
the token, and a missing token or a wrong PIN stops the start with one clear line (issue 12 point 3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from tests.conftest import ROOT
from tests.service.conftest import Inputs
from tests.service.helpers import Server, StaticCredential, b64url, jwt_header

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not Path(MODULE).exists(), reason="softhsm2 is not installed"
)


@dataclass(frozen=True)
class Token:
    label: str
    pin_file: Path

    def uri(self, obj: str | None = None, *, pin_file: Path | None = None, label: str | None = None) -> str:
        path = f"pkcs11:token={label or self.label}" + (f";object={obj}" if obj else "")
        return f"{path}?module-path={MODULE}&pin-source=file:{pin_file or self.pin_file}"


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Token]:
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))  # the servers inherit it
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "affidavit-test", "--pin", PIN,
                    "--so-pin", "13579"], check=True, capture_output=True, timeout=30)
    pin = tmp_path / "pin"
    pin.write_text(PIN + "\n")
    yield Token("affidavit-test", pin)


def _cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> object:
    """``affidavit`` in a subprocess: SoftHSM2 loaded into this process would break its later TLS
    handshakes (its OpenSSL engine handling leaves the process's OpenSSL without an engine it expects)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, "-m", "affidavit", *argv], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _jwt_verify(token: str, jwks: dict[str, list[dict[str, object]]]) -> None:
    kid = jwt_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    jwt.decode(token, key, algorithms=[jwt_header(token)["alg"]], options={"verify_aud": False})


def _wait_published(server: Server, kid: str) -> None:
    """Until ``kid`` is in /certs: the ring is re-read in the background once the reload interval passed,
    so the request that finds it due is still answered from the ring in hand."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)  # > the reload interval
        with server.client() as c:
            if kid in [k["kid"] for k in c.get("/certs").json()["keys"]]:
                return


@pytest.mark.slow
def test_attest_and_rotate_with_keys_that_never_leave_the_token(
    tmp_path: Path, inputs: Inputs, token: Token, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.security.attestation import AttestationClient

    db = f"sqlite:///{tmp_path / 'data' / 'affidavit.db'}"
    args = inputs.serve_args() + ["--signing-key", token.uri("signer-1"), "--key-reload-interval", "0.2s"]
    with Server(tmp_path / "data", args) as server:
        client = AttestationClient(server.url, StaticCredential(), connection_verify=server.ca_file)
        try:
            # the SDK checks the token's signature against /certs itself
            _, first = client.attest_open_enclave(inputs.oe_report, runtime_data=inputs.oe_runtime)
            with server.client() as c:
                jwks = c.get("/certs").json()
            _jwt_verify(first.to_jwt_string(), jwks)
            rows = _cli("keys", "list", "--database-url", db, "--json", capsys=capsys)
            assert [(r["location"], r["state"], r["algorithm"]) for r in rows] == [  # type: ignore[index]
                ("pkcs11:token=affidavit-test;object=signer-1", "current", "RS256")
            ]
            raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("affidavit.db*"))
            assert b"PRIVATE KEY" not in raw

            # rotation on the token: a new key pair generated there, current at once (--now)
            out = _cli("keys", "rotate", "--database-url", db, "--signing-key", token.uri(), "--now",
                "--json",
                       capsys=capsys)
            assert out["location"].startswith("pkcs11:token=affidavit-test;object=affidavit-")  # type: ignore[index]
            _wait_published(server, out["new"])  # type: ignore[index]
            client.close()  # the SDK keeps the signers it fetched: a new client (relying party) now
            client = AttestationClient(server.url, StaticCredential(), connection_verify=server.ca_file)
            _, second = client.attest_open_enclave(inputs.oe_report, runtime_data=inputs.oe_runtime)
            assert jwt_header(second.to_jwt_string())["kid"] == out["new"]  # type: ignore[index]
            with server.client() as c:
                jwks = c.get("/certs").json()
            assert [k["kid"] for k in jwks["keys"]] == [out["new"], jwt_header(first.to_jwt_string())["kid"]]  # type: ignore[index]
            for t in (first, second):
                _jwt_verify(t.to_jwt_string(), jwks)
            # an ES256 key on the token (CKM_ECDSA), for relying parties other than the SDK
            es = _cli("keys", "rotate", "--database-url", db, "--signing-key", token.uri("ec-1"), "--now",
                      "--algorithm", "ES256", "--json", capsys=capsys)
            assert es["location"] == "pkcs11:token=affidavit-test;object=ec-1"  # type: ignore[index]
            _wait_published(server, es["new"])  # type: ignore[index]
            with server.client() as c:
                r = c.post("/attest/OpenEnclave?api-version=2022-08-01",
                           json={"report": b64url(inputs.oe_report)})
                assert r.status_code == 200, r.text
                third = r.json()["token"]
                jwks = c.get("/certs").json()
            assert jwt_header(third) == {**jwt_header(third), "alg": "ES256", "kid": es["new"]}  # type: ignore[index]
            _jwt_verify(third, jwks)
        finally:
            client.close()

    # a restart finds its keys on the token again
    with Server(tmp_path / "data", args) as server, server.client() as c:
        assert [k["kid"] for k in c.get("/certs").json()["keys"]][0] == es["new"]  # type: ignore[index]


@pytest.mark.parametrize("case", ["wrong-pin", "missing-token", "missing-module"])
def test_bad_token_configuration_stops_the_start(tmp_path: Path, inputs: Inputs, token: Token,
    case: str) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000\n")
    uri = {
        "wrong-pin": token.uri("k", pin_file=wrong),
        "missing-token": token.uri("k", label="no-such-token"),
        "missing-module": token.uri("k").replace(MODULE, "/nonexistent/module.so"),
    }[case]
    server = Server(tmp_path / "data", inputs.serve_args() + ["--signing-key", uri], tls=False)
    with pytest.raises(RuntimeError) as err:
        server.start()
    log = server.log().strip()
    expected = {"wrong-pin": "wrong PIN for PKCS#11 token 'affidavit-test'",
                "missing-token": "PKCS#11 token 'no-such-token' not found",
                "missing-module": "PKCS#11 module /nonexistent/module.so does not exist"}[case]
    assert expected in str(err.value)
    assert len(log.splitlines()) == 1 and "Traceback" not in log, log
