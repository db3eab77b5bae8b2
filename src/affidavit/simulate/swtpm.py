"""A software TPM for development and demos: swtpm on a Unix socket, a replayed boot log, an AK certificate.

``running_swtpm(workdir, banks)`` manufactures a fresh TPM (``swtpm_setup``) with exactly the given PCR
banks, serves it on a Unix socket in a private temporary directory (its control channel beside it, as
``SOCKET.ctrl``, where tpm2-tss's swtpm TCTI looks for it), and stops it by its pid after
``tpm2_shutdown -c`` (an unorderly stop counts towards the TPM's dictionary-attack lockout). A socket
file, unlike a TCP port chosen in advance, cannot be taken by another process before swtpm binds it. swtpm
runs TPM2_Startup itself (``startup-clear``), so the TPM is usable as soon as it listens.

``replay_event_log(tpm, log)`` extends every measured event of a TCG event log into the matching banks, so
the PCRs hold what the firmware that wrote the log would have left: the log then verifies against quotes
from this TPM. ``AkCertificateAuthority`` issues AK certificates that a service configured with its
certificate (``tpm-aik-roots.pem``) trusts. Needs the Debian packages swtpm, swtpm-tools and tpm2-tools.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from affidavit.errors import AffidavitError

BANK_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
EV_NO_ACTION = 0x3
READY_TIMEOUT = 10.0
TOOL_TIMEOUT = 60.0
EVENTS_PER_EXTEND = 64  # tpm2_pcrextend takes many PCR specs per call: one process per 64 events


class SwtpmError(AffidavitError):
    """The software TPM could not be started, driven or replayed into."""

    code = "swtpm_error"


def run_tool(tcti: str, *args: str) -> str:
    """Run one tpm2-tools command against ``tcti`` (the client's ``TpmTools.run``); its stdout, or a
    SwtpmError with the tool's complaint."""
    from affidavit.client.tpm_tools import TpmToolError, TpmTools

    try:
        return TpmTools(tcti).run(*args)
    except TpmToolError as exc:
        raise SwtpmError(exc.message) from None


@dataclass(frozen=True)
class Swtpm:
    """A running swtpm: its pid, the Unix socket of its TPM commands (the control channel is
    ``socket_path.ctrl``), and its state directory."""

    pid: int
    socket_path: Path
    state_dir: Path

    @property
    def tcti(self) -> str:
        """The tpm2-tools TCTI string (``TPM2TOOLS_TCTI``, ``affidavit attest tpm --tcti``)."""
        return f"swtpm:path={self.socket_path}"

    def tool(self, *args: str) -> str:
        return run_tool(self.tcti, *args)


def _wait_listening(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SwtpmError(f"swtpm exited at start with status {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(0.2)
                probe.connect(str(path))
                return
        except OSError:
            time.sleep(0.05)
    raise SwtpmError(f"swtpm did not listen on {path} within {READY_TIMEOUT:.0f} s")


def _manufacture(workdir: Path, banks: tuple[str, ...]) -> Path:
    state = workdir / "swtpm-state"
    state.mkdir(parents=True, exist_ok=True)
    conf = workdir / "swtpm_setup.conf"  # our own: the system file would activate sha256 only
    conf.write_text(f"active_pcr_banks = {','.join(banks)}\n")
    try:
        subprocess.run(
            ["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--config", str(conf),
             "--pcr-banks", ",".join(banks), "--overwrite"],
            check=True, capture_output=True, timeout=TOOL_TIMEOUT,
        )
    except FileNotFoundError:
        raise SwtpmError("swtpm_setup not found: install swtpm and swtpm-tools") from None
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip()[-300:]
        raise SwtpmError(f"swtpm_setup failed: {detail}") from None
    except subprocess.TimeoutExpired:
        raise SwtpmError("swtpm_setup did not finish in time") from None
    return state


def _stop(tpm: Swtpm, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        tpm.tool("tpm2_shutdown", "-c")
    except SwtpmError:
        pass  # stopping anyway
    finally:  # even when interrupted (Ctrl-C) during the orderly shutdown
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def running_swtpm(workdir: Path, banks: tuple[str, ...] = ("sha256",)) -> Iterator[Swtpm]:
    """A freshly manufactured TPM with exactly ``banks`` active, served on loopback until the block ends.

    swtpm runs in its own session, so a Ctrl-C at the terminal reaches only the caller, which then stops
    the TPM in order.
    """
    state = _manufacture(workdir, banks)
    # A short private directory: a Unix socket path has at most 107 bytes, and a TCTI string cannot hold
    # the commas or colons a test's working directory might have.
    sockets = Path(tempfile.mkdtemp(prefix="swtpm-"))
    path = sockets / "tpm"
    try:
        proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
             "--server", f"type=unixio,path={path},mode=0600",
             "--ctrl", f"type=unixio,path={path}.ctrl,mode=0600",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
    except FileNotFoundError:
        shutil.rmtree(sockets, ignore_errors=True)
        raise SwtpmError("swtpm not found: install swtpm") from None
    tpm = Swtpm(proc.pid, path, state)
    try:
        _wait_listening(path, proc)
        yield tpm
    finally:
        try:
            _stop(tpm, proc)
        finally:
            shutil.rmtree(sockets, ignore_errors=True)


def event_log_banks(log: bytes) -> tuple[str, ...]:
    """The PCR banks a log measures into: the banks swtpm must have for the log to replay."""
    from affidavit.evidence.tpm import parse_event_log

    banks = parse_event_log(log).banks
    unknown = [a for a in banks if a not in BANK_NAMES]
    if unknown:
        raise SwtpmError(f"the log uses hash algorithms swtpm cannot bank: {unknown}")
    return tuple(BANK_NAMES[a] for a in banks)


def replay_event_log(tpm: Swtpm | str, log: bytes) -> int:
    """Extend every measured event of ``log`` into ``tpm`` (or a TCTI string), in log order; returns how
    many were extended."""
    from affidavit.evidence.tpm import parse_event_log

    tcti = tpm if isinstance(tpm, str) else tpm.tcti

    parsed = parse_event_log(log)
    if parsed.startup_locality:
        raise SwtpmError("a log with a StartupLocality event cannot be replayed (PCR0 starts elsewhere)")
    specs = [
        f"{event.pcr}:" + ",".join(f"{BANK_NAMES[a]}={d.hex()}" for a, d in event.digests.items())
        for event in parsed.events
        if event.type != EV_NO_ACTION
    ]
    for start in range(0, len(specs), EVENTS_PER_EXTEND):
        run_tool(tcti, "tpm2_pcrextend", *specs[start : start + EVENTS_PER_EXTEND])
    return len(specs)


@dataclass(frozen=True)
class AkCertificateAuthority:
    """A throwaway CA (P-256) that certifies attestation keys, standing in for a TPM vendor's AK CA."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(
        cls, name: str = "Affidavit Demo AK CA", *, now: datetime | None = None
    ) -> AkCertificateAuthority:
        now = now or datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
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

    def issue(self, ak_public_pem: bytes, *, now: datetime | None = None) -> bytes:
        """A DER certificate for the AK; its subject is empty, as in real AK certificates."""
        now = now or datetime.now(UTC)
        ak_key = serialization.load_pem_public_key(ak_public_pem)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject).public_key(ak_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)
