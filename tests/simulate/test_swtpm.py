"""The software-TPM harness: a replayed log leaves the PCRs the log predicts; swtpm is stopped afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.evidence.tpm import parse_event_log, replay
from affidavit.simulate.swtpm import (
    AkCertificateAuthority,
    Swtpm,
    SwtpmError,
    event_log_banks,
    replay_event_log,
    running_swtpm,
)

SECURE_BOOT_LOG = "tpm/keylime/binary_bios_measurements-secureboot"  # SHA-256 only, no StartupLocality
LOCALITY_LOG = "tpm/keylime/binary_bios_measurements"  # SHA-1 + SHA-256, StartupLocality 3


def _pcr_values(tpm: Swtpm, bank: str, pcrs: list[int]) -> dict[int, bytes]:
    text = tpm.tool("tpm2_pcrread", f"{bank}:{','.join(map(str, pcrs))}")
    out: dict[int, bytes] = {}
    for line in text.splitlines():
        left, _, right = line.strip().partition(":")
        if left.strip().isdigit() and right.strip().startswith("0x"):
            out[int(left)] = bytes.fromhex(right.strip()[2:])
    return out


def test_replayed_log_gives_the_pcrs_the_log_predicts(tmp_path: Path, vectors: Path) -> None:
    log = (vectors / SECURE_BOOT_LOG).read_bytes()
    expected = replay(parse_event_log(log))["sha256"]
    assert event_log_banks(log) == ("sha256",)
    with running_swtpm(tmp_path, event_log_banks(log)) as tpm:
        pid = tpm.pid
        assert replay_event_log(tpm.tcti, log) > 50  # a TCTI string works as well as the Swtpm
        got = _pcr_values(tpm, "sha256", sorted(expected))
    assert got == expected
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped


def test_a_log_with_startup_locality_is_refused(tmp_path: Path, vectors: Path) -> None:
    log = (vectors / LOCALITY_LOG).read_bytes()
    assert event_log_banks(log) == ("sha1", "sha256")
    with running_swtpm(tmp_path, event_log_banks(log)) as tpm, pytest.raises(SwtpmError, match="Locality"):
        replay_event_log(tpm, log)


def test_ak_ca_issues_a_certificate_for_the_key() -> None:
    from cryptography.hazmat.primitives import serialization

    ca = AkCertificateAuthority.create()
    ak = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = ak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert = x509.load_der_x509_certificate(ca.issue(pem))
    assert cert.public_key() == ak and cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)
    assert x509.load_pem_x509_certificate(ca.pem) == ca.certificate
