"""The vectors' exhaustive single-byte mutants (XOR 0x01): every one listed as rejected is rejected,
including the VEK bytes a lax X.509 stack accepts (outer signatureAlgorithm, unused-bits byte)."""

from __future__ import annotations

import pytest

from affidavit.evidence.snp import AmdTrust, SnpError, SnpVerifier
from tests.evidence.snp.conftest import POSITIVE, Case


def _ranges(case: Case) -> list[tuple[str, int, int]]:
    out = []
    for name, cls in case.raw["mutants"]["classes"].items():
        if name == "vek_der":
            continue
        lo, hi = (int(x, 16) for x in cls["range"].split("-"))
        assert cls["still_verified"] == []
        out.append((name, lo, hi))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_every_report_mutant_is_rejected(case: Case) -> None:
    verifier = SnpVerifier(AmdTrust.from_pem(case.ark))
    verifier.verify(case.report, case.vek, case.chain, case.now)  # the original verifies (and is cached)
    flipped = 0
    for _, lo, hi in _ranges(case):
        for offset in range(lo, hi + 1):
            data = bytearray(case.report)
            data[offset] ^= 0x01
            with pytest.raises(SnpError):
                verifier.verify(bytes(data), case.vek, case.chain, case.now)
            flipped += 1
    assert flipped == 672 + 72 + 72


@pytest.mark.slow
@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_every_vek_mutant_is_rejected(case: Case) -> None:
    verifier = SnpVerifier(AmdTrust.from_pem(case.ark))
    vek = case.vek
    cls = case.raw["mutants"]["classes"]["vek_der"]
    assert cls["still_verified"] == []
    if vek.startswith(b"-----BEGIN"):  # PEM (the ACI set's is a bundle): mutate the VEK's DER
        from cryptography.hazmat.primitives.serialization import Encoding

        from affidavit.evidence.snp import load_certificates

        certs = load_certificates(vek)
        vek = certs[0].public_bytes(Encoding.DER)
        chain = [c.public_bytes(Encoding.DER) for c in certs[1:]] + case.chain
    else:
        chain = case.chain
    verifier.verify(case.report, vek, chain, case.now)
    lo, hi = (int(x) for x in cls["range"].split("-"))
    assert hi == len(vek) - 1
    lax = set(cls.get("still_verified_without_strict_x509_checks", []))
    for offset in range(len(vek)):
        data = bytearray(vek)
        data[offset] ^= 0x01
        with pytest.raises(SnpError) as info:
            verifier.verify(case.report, bytes(data), chain, case.now)
        if offset in lax:
            assert info.value.code == "snp_certificate_malformed", offset
