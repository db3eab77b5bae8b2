"""Shared pieces of the service tests: a live server in a subprocess (also with TPM trust), a booted
software TPM, signer certificates, encodings."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette

from affidavit.client.tpm import AkMaterial
from affidavit.client.tpm_tools import DEFAULT_AK_HANDLE, TpmTools
from affidavit.jose import b64url  # noqa: F401 -- the tests' base64url, re-exported
from affidavit.simulate.swtpm import (
    AkCertificateAuthority,
    Swtpm,
    event_log_banks,
    replay_event_log,
    running_swtpm,
)
from tests.conftest import ROOT

ADMIN_TOKEN = "test-admin-token"
START_TIMEOUT = 60.0


def jwt_body(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def jwt_header(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


class StaticCredential:
    """An azure-core TokenCredential that hands out a fixed bearer token."""

    def __init__(self, token: str = ADMIN_TOKEN) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class Signer:
    """An RSA key and its self-signed (CA) certificate, PEM, as the SDK takes them."""

    key_pem: str
    cert_pem: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def make_signer(cn: str, *, not_before: datetime | None = None, not_after: datetime | None = None) -> Signer:
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Signer(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert, key)


BANNER_PORT = re.compile(r"Affidavit attestation service \(\w+ mode\) at https?://[^\s:/]+:(\d+)")


@dataclass
class Server:
    """``affidavit serve`` in a subprocess, stopped by its process id. It binds port 0 (the OS picks a free
    port and the server keeps it: no window in which another process can take it) and the port is read
    from its banner; a fixed ``port`` may be given instead."""

    data_dir: Path
    args: Sequence[str] = ()
    tls: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra environment (AFFIDAVIT_* variables)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.data_dir / "tls" / "cert.pem")

    def client(self, **kwargs: Any) -> httpx.Client:
        verify = ssl.create_default_context(cafile=self.ca_file) if self.tls else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=30, **kwargs)

    def start(self) -> Server:
        fixed = self.port
        cmd = [sys.executable, "-m", "affidavit", "serve", "--host", "127.0.0.1", "--port", str(fixed),
               "--data-dir", str(self.data_dir), "--log-level", "warning", *self.args]
        if self.tls:
            cmd.append("--tls-self-signed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
        env["PYTHONPATH"] = str(ROOT / "src")
        env.update(self.env)
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            if fixed == 0:
                found = BANNER_PORT.search(self.log_path.read_bytes()[start:].decode("utf-8", "replace"))
                if found is None:
                    time.sleep(0.05)
                    continue
                self.port = int(found.group(1))
            try:
                with self.client() as c:
                    if c.get("/.well-known/openid-configuration").status_code == 200:
                        return self
            except (httpx.TransportError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {START_TIMEOUT}s:\n{self.log()}")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def put_policy(self, att_type: str, text: str) -> None:
        """Set a policy unsigned, with the tests' admin token (the server needs ``--admin-token``)."""
        self._manage(f"/policies/{att_type}", "PUT", unsigned_policy(text))

    def reset_policy(self, att_type: str) -> None:
        self._manage(f"/policies/{att_type}:reset", "POST", "eyJhbGciOiJub25lIn0..")

    def _manage(self, path: str, method: str, jws: str) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"}
        with self.client() as c:
            r = c.request(method, path, params={"api-version": "2020-10-01"}, content=jws, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"{method} {path} failed: {r.status_code} {r.text}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def tpm_server(data_dir: Path, aik_roots: Sequence[Path] = ()) -> Server:
    """``affidavit serve`` trusting ``aik_roots`` for TPM AK certificates (``--tpm-aik-root``; without any,
    ``tpm-aik-roots.pem`` in ``data_dir`` if it is there), with the tests' admin token."""
    args = ["--admin-token", ADMIN_TOKEN]
    for root in aik_roots:
        args += ["--tpm-aik-root", str(root)]
    return Server(data_dir, args)


@dataclass(frozen=True)
class BootedTpm:
    """swtpm after a replayed boot, with the client's default AK (public area, PEM key, certificate)."""

    tpm: Swtpm
    tools: TpmTools
    ak: AkMaterial
    ak_pem: bytes


@contextmanager
def booted_tpm(workdir: Path, log: bytes, ca: AkCertificateAuthority) -> Iterator[BootedTpm]:
    """A fresh swtpm with ``log``'s banks and ``log`` replayed into its PCRs (so the log verifies against
    its quotes), the default AK created and certified by ``ca``; stopped in order afterwards."""
    with running_swtpm(workdir, event_log_banks(log)) as tpm:
        replay_event_log(tpm, log)
        tools = TpmTools(tpm.tcti)
        public = tools.ensure_ak(DEFAULT_AK_HANDLE)
        pem = tools.read_public_pem(DEFAULT_AK_HANDLE)
        yield BootedTpm(tpm, tools, AkMaterial(public, ca.issue(pem)), pem)


def compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sign_jws(
    payload: dict[str, Any] | None,
    signer: Signer,
    *,
    alg: str = "RSA256",
    sdk_form: bool = True,
    more_x5c: Sequence[str] = (),
) -> str:
    """A JWS signed as the SDK does (``RSA256`` and ``jwk.x5c``), or the standard ``RS256``/``x5c`` form;
    ``more_x5c``: entries after the signer's certificate."""
    from cryptography.hazmat.primitives.asymmetric import padding

    x5c = [base64.b64encode(signer.cert.public_bytes(serialization.Encoding.DER)).decode(), *more_x5c]
    header = {"alg": alg, "jwk": {"x5c": x5c}} if sdk_form else {"alg": alg, "x5c": x5c}
    body = b64url(compact_json(payload)) if payload is not None else ""
    signing_input = b64url(compact_json(header)) + "." + body
    signature = signer.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def unsigned_policy(text: str) -> str:
    body = json.dumps({"AttestationPolicy": b64url(text.encode())})
    return "eyJhbGciOiJub25lIn0." + b64url(body.encode()) + "."


def certificate_payload(signer: Signer) -> dict[str, Any]:
    der = signer.cert.public_bytes(serialization.Encoding.DER)
    return {"policyCertificate": {"kty": "RSA", "x5c": [base64.b64encode(der).decode()]}}


class AsgiClient:
    """Requests to the ASGI app in process, synchronously, through httpx's ASGITransport (which re-raises
    any exception escaping the app, so a path to the 500 catch-all fails the test)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://asgi") as client:
                return await client.request(method, path, **kwargs)

        return self._loop.run_until_complete(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._loop.close()
