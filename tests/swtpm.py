"""A software TPM for tests: swtpm on free loopback ports, a replayed boot log, an AK certificate.

Use the ``swtpm`` fixture (import it into a test module: ``from tests.swtpm import swtpm``) or the
``running_swtpm(workdir, banks)`` context manager. swtpm is stopped by its pid after ``tpm2_shutdown -c``
(an unorderly stop counts towards swtpm's dictionary-attack lockout, tpm.md §0.8).

``replay_event_log(tcti, log)`` extends every measured event's digests into the matching banks, so the
TPM's PCRs are what the firmware that wrote the log would have left; the banks given to swtpm must be the
log's banks (``log_banks``). ``TestCa`` issues AK certificates the service can be told to trust.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from affidavit.evidence.tpm import parse_event_log
from tests.conftest import free_port

BANK_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
EV_NO_ACTION = 0x3
READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Swtpm:
    pid: int
    port: int
    ctrl_port: int
    state_dir: Path

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def tools(self, *args: str) -> str:
        env = {**os.environ, "TPM2TOOLS_TCTI": self.tcti}
        proc = subprocess.run(args, env=env, capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stderr.decode(errors='replace')[-400:]}")
        return proc.stdout.decode(errors="replace")


def _two_ports() -> tuple[int, int]:
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port, port + 1
    raise RuntimeError("no two adjacent free loopback ports")


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"swtpm exited early with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"swtpm did not listen on port {port} within {READY_TIMEOUT} s")


@contextmanager
def running_swtpm(workdir: Path, banks: tuple[str, ...] = ("sha1", "sha256")) -> Iterator[Swtpm]:
    """Manufacture a TPM with exactly ``banks`` active, serve it on loopback, stop it by pid afterwards."""
    state = workdir / "swtpm-state"
    state.mkdir(parents=True, exist_ok=True)
    conf = workdir / "swtpm_setup.conf"  # our own: the system file activates sha256 only
    conf.write_text(f"active_pcr_banks = {','.join(banks)}\n")
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--config", str(conf),
         "--pcr-banks", ",".join(banks), "--overwrite"],
        check=True, capture_output=True, timeout=60,
    )
    port, ctrl = _two_ports()
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    tpm = Swtpm(proc.pid, port, ctrl, state)
    try:
        _wait_listening(port, proc)
        yield tpm
    finally:
        if proc.poll() is None:
            try:
                tpm.tools("tpm2_shutdown", "-c")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


def log_banks(log: bytes) -> tuple[str, ...]:
    return tuple(BANK_NAMES[a] for a in parse_event_log(log).banks)


def replay_event_log(tpm: Swtpm, log: bytes) -> int:
    """Extend every measured event of ``log`` into ``tpm``; returns the number of events extended."""
    parsed = parse_event_log(log)
    if parsed.startup_locality:
        raise ValueError("logs with a StartupLocality event cannot be replayed into swtpm (PCR0 start value)")
    specs = []
    for event in parsed.events:
        if event.type == EV_NO_ACTION:
            continue
        digests = ",".join(f"{BANK_NAMES[a]}={d.hex()}" for a, d in event.digests.items())
        specs.append(f"{event.pcr}:{digests}")
    for start in range(0, len(specs), 64):  # one process per 64 events, in log order
        tpm.tools("tpm2_pcrextend", *specs[start : start + 64])
    return len(specs)


@dataclass(frozen=True)
class TestCa:
    """A throwaway AK-issuing CA (P-256)."""

    __test__ = False  # not a test class, despite the name
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str = "Affidavit Test AK CA") -> TestCa:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_ak_certificate(self, ak_public_pem: bytes) -> bytes:
        """DER certificate for the AK (empty subject, as real AK certificates have)."""
        ak_key = serialization.load_pem_public_key(ak_public_pem)
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject).public_key(ak_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A fresh swtpm with SHA-1 and SHA-256 banks (use ``running_swtpm`` for other banks)."""
    with running_swtpm(tmp_path) as tpm:
        yield tpm


# ------------------------------------------------------------------------------------ the service


ADMIN_TOKEN = "tpm-test-admin-token"
SERVER_START_TIMEOUT = 60.0


@dataclass
class TpmService:
    """The Affidavit app under uvicorn (HTTPS, free loopback port) in a subprocess, stopped by pid.

    ``affidavit serve`` has no TPM trust flags yet, so the configuration (with ``extra`` holding
    ``tpm_aik_roots``) reaches the app the way ``serve`` hands it to its workers: as JSON in the
    environment.
    """

    data_dir: Path
    aik_roots: tuple[Path, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.data_dir / "tls" / "cert.pem")

    @property
    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> TpmService:
        from affidavit.service.config import CONFIG_ENV, ServiceConfig
        from affidavit.service.tls import ensure_self_signed

        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cert, key = ensure_self_signed(self.data_dir, "127.0.0.1")
        config = ServiceConfig(
            host="127.0.0.1", port=self.port, data_dir=self.data_dir, tls_cert=cert, tls_key=key,
            admin_token=ADMIN_TOKEN, extra={"tpm_aik_roots": [str(p) for p in self.aik_roots]},
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
        env[CONFIG_ENV] = config.to_json()
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
        code = ("import uvicorn; uvicorn.run('affidavit.service.app:app_from_environment', factory=True, "
                f"host='127.0.0.1', port={self.port}, ssl_certfile={str(cert)!r}, ssl_keyfile={str(key)!r}, "
                "log_level='warning', access_log=False, timeout_graceful_shutdown=5)")
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                                         env=env)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                r = httpx.get(self.url + "/.well-known/openid-configuration", verify=self.tls, timeout=2)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {SERVER_START_TIMEOUT} s:\n{self.log()}")

    def set_tpm_policy(self, text: str) -> None:
        from affidavit.tokens import unsigned_policy_jws

        r = httpx.put(self.url + "/policies/Tpm", params={"api-version": "2020-10-01"},
                      content=unsigned_policy_jws(text), verify=self.tls, timeout=30,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"})
        if r.status_code != 200:
            raise RuntimeError(f"setting the Tpm policy failed: {r.status_code} {r.text}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@contextmanager
def running_tpm_service(data_dir: Path, aik_roots: tuple[Path, ...] = ()) -> Iterator[TpmService]:
    service = TpmService(data_dir, aik_roots).start()
    try:
        yield service
    finally:
        service.stop()
