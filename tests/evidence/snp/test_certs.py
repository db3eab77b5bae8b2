"""The two readers of a certificate's common name agree: ``cn`` (cryptography's parsed name) and the
strict DER walk (``der_names``), which the chain and CRL look-ups use."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from affidavit.evidence.snp.certs import cn, der_names, issuer_cn, load_certificate


def test_a_name_with_two_common_names_reads_the_same_in_both_readers() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "SEV-Milan"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK"),
    ])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    cert = load_certificate(
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(when).not_valid_after(when).sign(key, hashes.SHA384())
    )
    assert cn(cert) == issuer_cn(cert) == der_names(cert)[0] == "SEV-VCEK"
