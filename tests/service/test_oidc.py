"""aad mode with an OIDC issuer: management JWTs checked against the issuer's JWKS (a local fake issuer)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.security.attestation import AttestationAdministrationClient, AttestationType
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from affidavit.service import ServiceError
from affidavit.service.auth import OidcVerifier
from tests.conftest import refused_port
from tests.service.conftest import Inputs
from tests.service.helpers import Server, StaticCredential, b64url

AUDIENCE = "https://attest.azure.net"


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class FakeIssuer:
    """An OIDC issuer: discovery, JWKS with an RSA and an EC key, and a minting function."""

    def __init__(self, port: int) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.fetches = 0
        self.fail_next = 0  # answer this many key fetches with a 503
        rn, en = self.rsa.public_key().public_numbers(), self.ec.public_key().public_numbers()
        self.jwks = {"keys": [
            {"kty": "RSA", "kid": "rsa-1", "n": _uint(rn.n), "e": _uint(rn.e)},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": _uint(en.x), "y": _uint(en.y)},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        ]}

    def documents(self, path: str) -> dict[str, Any] | None:
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": self.url + "/keys"}
        if path == "/keys":
            self.fetches += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return None
            return self.jwks
        return None

    def mint(self, *, kid: str = "rsa-1", alg: str | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": "operator", "iat": now, "nbf": now,
                  "exp": now + 600, **overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        alg = alg or ("ES256" if kid.startswith("ec") else "RS256")
        head = b64url(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        signed = f"{head}.{b64url(json.dumps(claims).encode())}"
        if alg == "ES256":
            r, s = decode_dss_signature(self.ec.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.rsa.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64url(sig)}"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    fake: FakeIssuer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            doc = fake.documents(self.path)
            body = json.dumps(doc).encode() if doc is not None else b"{}"
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks, the server keeps it
    fake = FakeIssuer(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def verify(issuer: FakeIssuer, token: str, audience: str = AUDIENCE) -> dict[str, Any]:
    return asyncio.run(OidcVerifier(issuer.url, audience).verify(token))


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_valid_tokens(issuer: FakeIssuer, kid: str) -> None:
    assert verify(issuer, issuer.mint(kid=kid, sub="operator"))["sub"] == "operator"
    assert verify(issuer, issuer.mint(kid=kid, aud=["other", AUDIENCE]))


@pytest.mark.parametrize(
    "make",
    [
        lambda i: i.mint(aud="https://elsewhere"),
        lambda i: i.mint(iss="https://impostor"),
        lambda i: i.mint(exp=int(time.time()) - 3600),
        lambda i: i.mint(exp=None),
        lambda i: i.mint(nbf=int(time.time()) + 3600),
        # issue 10 point 4: no audience, a far expiry, an iat in the future, no subject
        lambda i: i.mint(aud=None),
        lambda i: i.mint(exp=7258118400),  # 2200-01-01
        lambda i: i.mint(iat=int(time.time()) + 3600),
        lambda i: i.mint(sub=None),
        lambda i: i.mint(exp=float("nan")),
        lambda i: i.mint(kid="unknown"),
        lambda i: i.mint(kid="sym", alg="RS256"),
        lambda i: i.mint(alg="HS256"),
        lambda i: i.mint(kid="ec-1", alg="RS256"),
        lambda i: i.mint()[:-6] + "AAAAAA",
        lambda i: "a.b",
        lambda i: "!!.!!.!!",
        lambda i: b64url(b"[]") + "." + b64url(b"{}") + ".",
    ],
)
def test_invalid_tokens_are_401(issuer: FakeIssuer, make: Any) -> None:
    with pytest.raises(ServiceError) as info:
        verify(issuer, make(issuer))
    assert info.value.status == 401 and info.value.code == "Unauthorized"


def test_unknown_kids_do_not_hammer_the_issuer(issuer: FakeIssuer) -> None:
    verifier = OidcVerifier(issuer.url, AUDIENCE)
    before = issuer.fetches

    async def go() -> None:
        for _ in range(5):
            with pytest.raises(ServiceError):
                await verifier.verify(issuer.mint(kid="nope"))
        await verifier.verify(issuer.mint())

    asyncio.run(go())
    assert issuer.fetches - before == 1


def test_unreachable_issuer_is_401() -> None:
    with refused_port() as port, pytest.raises(ServiceError) as info:
        asyncio.run(OidcVerifier(f"http://127.0.0.1:{port}", AUDIENCE).verify(FakeIssuer(port).mint()))
    assert info.value.status == 401


def test_sdk_with_oidc_bearer(tmp_path: Path, inputs: Inputs, issuer: FakeIssuer) -> None:
    args = [a for a in inputs.serve_args() if a not in ("--admin-token", "test-admin-token")]
    server = Server(tmp_path / "oidc", [*args, "--admin-oidc-issuer", issuer.url,
                                        "--admin-oidc-audience", AUDIENCE]).start()
    try:
        assert not (server.data_dir / "admin-token").exists()  # OIDC replaces the generated token
        good = AttestationAdministrationClient(server.url, StaticCredential(issuer.mint()),
                                               connection_verify=server.ca_file)
        policy, _ = good.get_policy(AttestationType.SGX_ENCLAVE)
        assert policy.startswith("version=")
        bad = AttestationAdministrationClient(server.url, StaticCredential(issuer.mint(aud="nope")),
                                              connection_verify=server.ca_file)
        with pytest.raises(ClientAuthenticationError):
            bad.get_policy(AttestationType.SGX_ENCLAVE)
        good.close()
        bad.close()
        with server.client() as c:
            assert c.get("/policies/SgxEnclave", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
            assert c.get("/certs").status_code == 200  # metadata stays public
    finally:
        server.stop()


def test_an_audience_is_required(tmp_path: Path, issuer: FakeIssuer) -> None:
    from affidavit.service import ServiceConfig
    from affidavit.service.state import build_state

    with pytest.raises(ValueError):
        OidcVerifier(issuer.url, "")
    with pytest.raises(ServiceError) as info:
        build_state(ServiceConfig(data_dir=tmp_path, admin_oidc_issuer=issuer.url))
    assert info.value.code == "configuration" and "audience" in info.value.message


def test_a_failed_key_fetch_is_retried_at_once(issuer: FakeIssuer) -> None:
    issuer.fail_next = 2  # two failures, the third attempt of the same request succeeds
    assert verify(issuer, issuer.mint())["sub"] == "operator"


def test_after_a_failed_fetch_admins_wait_a_backoff_not_a_minute(issuer: FakeIssuer) -> None:
    from affidavit.service import auth

    verifier = OidcVerifier(issuer.url, AUDIENCE)

    async def go() -> None:
        issuer.fail_next = auth.FETCH_ATTEMPTS  # the whole first request fails
        with pytest.raises(ServiceError):
            await verifier.verify(issuer.mint())
        await asyncio.sleep(auth.FAILURE_BACKOFF + 0.1)
        assert (await verifier.verify(issuer.mint()))["sub"] == "operator"

    asyncio.run(go())


def test_serve_refuses_oidc_without_audience(tmp_path: Path, issuer: FakeIssuer) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    r = subprocess.run([sys.executable, "-m", "affidavit", "serve", "--data-dir", str(tmp_path),
                        "--port", "0", "--admin-oidc-issuer", issuer.url],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode != 0 and "audience" in r.stderr + r.stdout and "Traceback" not in r.stderr
