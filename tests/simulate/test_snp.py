"""The simulated AMD PKI against the SEV-SNP verifier: every version and layout verifies, and each way a
report or certificate can be wrong is refused with its code."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache

import pytest

from affidavit.evidence.snp import SnpError, SnpOptions, SnpVerifier, verify_report
from affidavit.simulate.snp import ReportFields, SimulatedAmdPki, Tcb

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TCB = Tcb(bootloader=4, tee=0, snp=24, microcode=219, fmc=1)


@cache
def pki(product: str) -> SimulatedAmdPki:
    return SimulatedAmdPki.create(product, now=NOW)


def code_of(report: bytes, vek: object, chain: object = None, *, product: str = "Milan", **kw: object) -> str:
    with pytest.raises(SnpError) as info:
        verify_report(report, vek, chain, pki(product).trust(), kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return info.value.code


@pytest.mark.parametrize("product", ["Milan", "Genoa", "Turin"])
@pytest.mark.parametrize("version", [2, 3, 5])
def test_every_version_and_layout_verifies(product: str, version: int) -> None:
    p = pki(product)
    vcek = p.vcek(tcb=TCB, now=NOW)
    result = verify_report(vcek.report(version=version), vcek.der, p.cert_chain_vcek, p.trust(), NOW)
    assert result.product == product and result.signing_key == "VCEK"
    assert result.claims["x-ms-sevsnpvm-microcode-svn"] == 219
    assert result.claims["x-ms-sevsnpvm-snpfw-svn"] == 24
    assert result.claims["x-ms-sevsnpvm-bootloader-svn"] == 4
    assert result.reported_tcb.fmc == (1 if product == "Turin" else None)
    vlek = p.vlek(TCB, now=NOW)
    result = verify_report(vlek.report(version=version), vlek.pem, p.cert_chain_vlek, p.trust(), NOW)
    assert result.signing_key == "VLEK"


def test_vcek_chain_as_one_bundle_and_from_the_trust() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    assert verify_report(vcek.report(), vcek.chain_pem, None, p.trust(), NOW).product == "Milan"
    assert verify_report(vcek.report(), None, vcek.chain_pem, p.trust(), NOW).product == "Milan"
    assert verify_report(vcek.report(), vcek.der, None, p.trust(), NOW).product == "Milan"


def test_tampered_report() -> None:
    vcek = pki("Milan").vcek(tcb=TCB, now=NOW)
    data = bytearray(vcek.report())
    data[0x90] ^= 0x80  # MEASUREMENT
    assert code_of(bytes(data), vcek.der) == "snp_signature_invalid"


def test_wrong_chip() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    other = p.vcek(tcb=TCB, now=NOW)
    # Signed by the right key, but CHIP_ID is another chip's: the VCEK's hwID disagrees.
    assert code_of(vcek.report(chip_id=other.chip_id), vcek.der) == "snp_chip_id_mismatch"
    # Another chip's VCEK: its key did not sign the report.
    assert code_of(vcek.report(), other.der) == "snp_signature_invalid"


def test_turin_hwid_is_eight_bytes() -> None:
    p = pki("Turin")
    vcek = p.vcek(tcb=TCB, now=NOW)
    assert len(vcek.certificate.extensions.get_extension_for_oid(
        __import__("cryptography").x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")).value.value) == 8
    chip = bytearray(vcek.chip_id)
    chip[40] = 1  # bytes 8..63 must be zero on Turin
    assert code_of(vcek.report(chip_id=bytes(chip)), vcek.der, product="Turin") == "snp_chip_id_mismatch"


def test_masked_chip_id_skips_the_hwid_match() -> None:
    p = pki("Genoa")
    vcek = p.vcek(tcb=TCB, now=NOW)
    assert verify_report(vcek.report(chip_id=bytes(64)), vcek.der, None, p.trust(), NOW)


def test_tcb_mismatch() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    fields = ReportFields().with_tcb(replace(TCB, microcode=220))
    assert code_of(vcek.report(fields), vcek.der) == "snp_tcb_mismatch"
    # The certificate's TCB above CURRENT_TCB
    fields = replace(ReportFields().with_tcb(TCB), current_tcb=replace(TCB, snp=23))
    assert code_of(vcek.report(fields), vcek.der) == "snp_tcb_mismatch"


def test_turin_fmc_is_compared() -> None:
    p = pki("Turin")
    vcek = p.vcek(tcb=TCB, now=NOW)
    fields = ReportFields().with_tcb(replace(TCB, fmc=2))
    assert code_of(vcek.report(fields), vcek.der, product="Turin") == "snp_tcb_mismatch"


def test_azure_style_reported_below_current_verifies() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=Tcb(3, 0, 8, 115), now=NOW)
    fields = replace(ReportFields().with_tcb(Tcb(3, 0, 8, 115)), current_tcb=Tcb(3, 0, 8, 206))
    result = verify_report(vcek.report(fields), vcek.der, None, p.trust(), NOW)
    assert result.claims["x-ms-sevsnpvm-microcode-svn"] == 115


def test_product_mismatch() -> None:
    """A v3 report whose CPUID says Genoa, certified by Milan's chain."""
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    data = bytearray(vcek.report(version=3))
    data[0x189] = 0x11
    from affidavit.simulate.snp import sign_report

    assert code_of(sign_report(data, vcek.key), vcek.der) == "snp_product_mismatch"
    wrong_name = p.vcek(tcb=TCB, now=NOW, product_name="Genoa")
    assert code_of(wrong_name.report(), wrong_name.der) == "snp_product_mismatch"


def test_signing_key_field_must_match_certificate_kind() -> None:
    p = pki("Milan")
    vlek = p.vlek(TCB, now=NOW)
    from affidavit.simulate.snp import build_report, sign_report

    as_vcek = sign_report(build_report(ReportFields().with_tcb(TCB), "Milan", bytes(64), 0), vlek.key)
    assert code_of(as_vcek, vlek.der, p.cert_chain_vlek) == "snp_key_kind_mismatch"
    unsigned = bytes(build_report(ReportFields().with_tcb(TCB), "Milan", bytes(64), 7))
    assert code_of(unsigned, vlek.der) == "snp_report_unsigned"


def test_vlek_needs_the_asvk() -> None:
    p = pki("Milan")
    vlek = p.vlek(TCB, now=NOW)
    assert code_of(vlek.report(), vlek.der, p.cert_chain_vcek) == "snp_chain_untrusted"


def test_foreign_ark_is_refused() -> None:
    """Another PKI's perfectly valid chain (same CNs) does not chain to the pinned ARK."""
    rogue = SimulatedAmdPki.create("Milan", now=NOW)
    vcek = rogue.vcek(tcb=TCB, now=NOW)
    assert code_of(vcek.report(), vcek.der, rogue.cert_chain_vcek) == "snp_chain_untrusted"
    assert code_of(vcek.report(), vcek.der, rogue.ask) == "snp_chain_untrusted"  # without its ARK


def test_validity_window() -> None:
    vcek = pki("Milan").vcek(tcb=TCB, now=NOW, lifetime=dt.timedelta(days=30))
    assert code_of(vcek.report(), vcek.der, now=NOW + dt.timedelta(days=40)) == "snp_certificate_not_valid"
    assert code_of(vcek.report(), vcek.der, now=NOW - dt.timedelta(days=2)) == "snp_certificate_not_valid"


def test_revocation() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    report = vcek.report()
    serial = vcek.certificate.serial_number
    good = [p.crl([], now=NOW), p.crl([12345], issuer="ask", now=NOW)]
    assert verify_report(report, vcek.der, None, p.trust(), NOW, crl=good)
    assert code_of(report, vcek.der, crl=p.crl([serial], issuer="ask", now=NOW)) == "snp_revoked"
    assert code_of(report, vcek.der, crl=p.crl([p.ask.serial_number], now=NOW)) == "snp_revoked"
    stale = p.crl([], now=NOW - dt.timedelta(days=30))
    assert code_of(report, vcek.der, crl=stale) == "snp_crl_invalid"
    foreign = SimulatedAmdPki.create("Milan", now=NOW).crl([], now=NOW)
    assert code_of(report, vcek.der, crl=foreign) == "snp_crl_invalid"
    assert code_of(report, vcek.der, options=SnpOptions(require_crl=True)) == "snp_crl_unavailable"
    # A verifier's cached chain and CRL check still see the revocation.
    verifier = SnpVerifier(p.trust())
    verifier.verify(report, vcek.der, None, NOW, crl=good)
    with pytest.raises(SnpError, match="revoked"):
        verifier.verify(report, vcek.der, None, NOW, crl=p.crl([serial], issuer="ask", now=NOW))


def test_options_forbid_debug_migration_and_other_vmpls() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    debug = vcek.report(policy=0xB0000)
    assert verify_report(debug, vcek.der, None, p.trust(), NOW).claims["x-ms-sevsnpvm-is-debuggable"] is True
    assert code_of(debug, vcek.der, options=SnpOptions(allow_debug=False)) == "snp_policy_violation"
    migrate = vcek.report(policy=0x70000)
    no_ma = SnpOptions(allow_migration_agent=False)
    assert code_of(migrate, vcek.der, options=no_ma) == "snp_policy_violation"
    vmpl1 = vcek.report(vmpl=1)
    assert code_of(vmpl1, vcek.der, options=SnpOptions(vmpl=0)) == "snp_policy_violation"
    assert code_of(vcek.report(version=6), vcek.der) == "snp_unsupported_version"


def test_reserved_fields_and_bits_are_refused() -> None:
    p = pki("Milan")
    vcek = p.vcek(tcb=TCB, now=NOW)
    from affidavit.simulate.snp import sign_report

    for offset in (0x04C, 0x18B, 0x1EB, 0x208, 0x29F):
        data = bytearray(vcek.report(version=3 if offset != 0x208 else 5))
        data[offset] = 1
        assert code_of(sign_report(data, vcek.key), vcek.der) == "snp_report_malformed", hex(offset)
    assert code_of(vcek.report(policy=0x1001F), vcek.der) == "snp_report_malformed"  # bit 17 clear
    assert code_of(vcek.report(policy=0x3001F | 1 << 40), vcek.der) == "snp_report_malformed"
