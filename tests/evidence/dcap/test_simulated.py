"""The simulator's quotes through the real DCAP verifier: the statuses and failures real vectors lack."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import DcapResult, DcapVerifier, TrustAnchors, load_collateral, platform_of
from affidavit.simulate import (
    TCB_STATUSES,
    EnclaveLevel,
    PlatformTcb,
    SimulatedEnclave,
    SimulatedPlatform,
    SimulatedTd,
    TcbLevel,
)

MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))
REPORT_DATA = bytes(range(64))


def _verify(verifier: DcapVerifier, quote: bytes, collateral: dict[str, Any], at: dt.datetime) -> DcapResult:
    return verifier.verify(quote, load_collateral(collateral), at)


def _sgx_quote(platform: SimulatedPlatform, **fields: Any) -> bytes:
    defaults: dict[str, Any] = dict(
        mrenclave=MRENCLAVE, mrsigner=MRSIGNER, isv_prod_id=3, isv_svn=5, report_data=REPORT_DATA
    )
    return platform.sgx_quote(**{**defaults, **fields})


# -- accepted quotes ---------------------------------------------------------------------------------


def test_sgx_up_to_date_with_claims(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    result = _verify(sgx_verifier, _sgx_quote(sgx_platform), sgx_platform.collateral(now=now), now)
    assert (result.tee, result.tcb_status, tuple(result.advisory_ids)) == ("sgx", "UpToDate", ())
    assert result.report_data == REPORT_DATA
    claims = result.claims
    assert claims["x-ms-sgx-mrenclave"] == MRENCLAVE.hex()
    assert claims["x-ms-sgx-mrsigner"] == MRSIGNER.hex()
    assert (claims["x-ms-sgx-product-id"], claims["x-ms-sgx-svn"]) == (3, 5)
    assert claims["x-ms-sgx-is-debuggable"] is False
    assert claims["x-ms-sgx-report-data"] == REPORT_DATA.hex()
    assert len(result.collateral_hashes) == 7


@pytest.mark.parametrize("version", [3, 4, 5])
def test_sgx_quote_versions(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime, version: int
) -> None:
    quote = _sgx_quote(sgx_platform, version=version, trailing=64)
    result = _verify(sgx_verifier, quote, sgx_platform.collateral(now=now), now)
    assert result.tcb_status == "UpToDate"
    assert result.claims["x-ms-sgx-mrenclave"] == MRENCLAVE.hex()


@pytest.mark.parametrize(("version", "td15"), [(4, False), (5, False), (5, True)])
def test_tdx_up_to_date_with_measurements(
    tdx_platform: SimulatedPlatform, tdx_verifier: DcapVerifier, now: dt.datetime, version: int, td15: bool
) -> None:
    mrtd = b"\x5a" * 48
    rtmrs = [bytes([0x10 + i]) * 48 for i in range(4)]
    quote = tdx_platform.tdx_quote(
        mrtd=mrtd, rtmrs=rtmrs, report_data=REPORT_DATA, version=version, td15=td15
    )
    result = _verify(tdx_verifier, quote, tdx_platform.collateral(now=now), now)
    assert (result.tee, result.tcb_status) == ("tdx", "UpToDate")
    assert result.report_data == REPORT_DATA
    values = {str(v).lower() for v in result.claims.values()}
    assert {mrtd.hex(), *(r.hex() for r in rtmrs), tdx_platform.mrseam.hex()} <= values


def test_platform_of_reads_the_pck_certificate(
    sgx_platform: SimulatedPlatform, tdx_platform: SimulatedPlatform
) -> None:
    sgx = platform_of(sgx_platform.sgx_quote())
    assert (sgx.fmspc, sgx.ca, sgx.tee) == ("00906ED50000", "processor", "sgx")
    tdx = platform_of(tdx_platform.tdx_quote())
    assert (tdx.fmspc, tdx.ca, tdx.tee) == ("90C06F000000", "platform", "tdx")


def test_debug_enclave_is_reported(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    quote = _sgx_quote(sgx_platform, debug=True)
    result = _verify(sgx_verifier, quote, sgx_platform.collateral(now=now), now)
    assert result.claims["x-ms-sgx-is-debuggable"] is True


def test_simulated_enclave_binds_runtime_data(now: dt.datetime) -> None:
    enclave = SimulatedEnclave.create(seed=b"enclave", now=now, isv_prod_id=9)
    quote = enclave.quote_for_runtime_data(b'{"key":"value"}')
    result = DcapVerifier(TrustAnchors.from_pem(enclave.platform.root_pem)).verify(
        quote, load_collateral(enclave.collateral(now=now)), now
    )
    assert result.report_data[:32] == hashlib.sha256(b'{"key":"value"}').digest()
    assert result.claims["x-ms-sgx-product-id"] == 9


def test_simulated_td_quotes(now: dt.datetime) -> None:
    td = SimulatedTd.create(seed=b"td", now=now, ca="platform")
    result = DcapVerifier(TrustAnchors.from_pem(td.platform.root_pem)).verify(
        td.quote(b"nonce"), load_collateral(td.collateral(now=now)), now
    )
    assert result.tee == "tdx" and result.report_data[:5] == b"nonce"


# -- TCB status evaluation ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", TCB_STATUSES)
def test_each_platform_tcb_status(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime, status: str
) -> None:
    advisories = () if status == "UpToDate" else ("INTEL-SA-00615", "INTEL-SA-00828")
    collateral = sgx_platform.collateral(now=now, tcb_levels=[sgx_platform.tcb.level(status, advisories)])
    result = _verify(sgx_verifier, _sgx_quote(sgx_platform), collateral, now)
    assert result.tcb_status == status
    assert set(result.advisory_ids) == set(advisories)


def test_first_matching_level_wins(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    tcb = sgx_platform.tcb
    lower = TcbLevel(
        tuple(max(0, s - 1) for s in tcb.sgx_svns), tcb.pcesvn - 1, "OutOfDate", ("INTEL-SA-00002",)
    )
    levels = [tcb.raised(), tcb.level("SWHardeningNeeded", ["INTEL-SA-00001"]), lower]
    result = _verify(
        sgx_verifier, _sgx_quote(sgx_platform), sgx_platform.collateral(now=now, tcb_levels=levels), now
    )
    assert (result.tcb_status, tuple(result.advisory_ids)) == ("SWHardeningNeeded", ("INTEL-SA-00001",))
    higher_pce = TcbLevel(tcb.sgx_svns, tcb.pcesvn + 1, "UpToDate")
    collateral = sgx_platform.collateral(now=now, tcb_levels=[higher_pce, lower])
    assert _verify(sgx_verifier, _sgx_quote(sgx_platform), collateral, now).tcb_status == "OutOfDate"


@pytest.mark.parametrize(
    ("platform_status", "expected"),
    [("UpToDate", "OutOfDate"), ("ConfigurationNeeded", "OutOfDateConfigurationNeeded")],
)
def test_out_of_date_qe_converges(
    sgx_platform: SimulatedPlatform,
    sgx_verifier: DcapVerifier,
    now: dt.datetime,
    platform_status: str,
    expected: str,
) -> None:
    qe_levels = [EnclaveLevel(sgx_platform.qe_svn + 1), EnclaveLevel(0, "OutOfDate", ("INTEL-SA-00777",))]
    collateral = sgx_platform.collateral(
        now=now, tcb_levels=[sgx_platform.tcb.level(platform_status)], qe_levels=qe_levels
    )
    result = _verify(sgx_verifier, _sgx_quote(sgx_platform), collateral, now)
    assert result.tcb_status == expected
    assert "INTEL-SA-00777" in result.advisory_ids


def test_out_of_date_tdx_module_converges(
    tdx_platform: SimulatedPlatform, tdx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    svn = tdx_platform.tcb.tdx_svns[0]
    module = [EnclaveLevel(svn + 1), EnclaveLevel(0, "OutOfDate", ("INTEL-SA-00888",))]
    collateral = tdx_platform.collateral(now=now, tdx_module_levels=module)
    result = _verify(tdx_verifier, tdx_platform.tdx_quote(), collateral, now)
    assert result.tcb_status == "OutOfDate"
    assert "INTEL-SA-00888" in result.advisory_ids


def test_tdx_components_select_the_level(
    tdx_platform: SimulatedPlatform, tdx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    tcb = tdx_platform.tcb
    above = list(tcb.tdx_svns)
    above[2] += 1  # index 2: TDX late microcode; 0 and 1 are judged by the module identity
    levels = [
        TcbLevel(tcb.sgx_svns, tcb.pcesvn, "UpToDate", (), tuple(above)),
        TcbLevel(tcb.sgx_svns, tcb.pcesvn, "OutOfDate", ("INTEL-SA-00960",), tcb.tdx_svns),
    ]
    result = _verify(
        tdx_verifier, tdx_platform.tdx_quote(), tdx_platform.collateral(now=now, tcb_levels=levels), now
    )
    assert (result.tcb_status, tuple(result.advisory_ids)) == ("OutOfDate", ("INTEL-SA-00960",))


# -- rejections --------------------------------------------------------------------------------------


def _rejected(
    verifier: DcapVerifier, quote: bytes, collateral: dict[str, Any], at: dt.datetime, *codes: str
) -> EvidenceError:
    with pytest.raises(EvidenceError) as info:
        _verify(verifier, quote, collateral, at)
    assert info.value.code in codes, info.value
    assert info.value.message
    return info.value


def test_root_not_trusted_by_default(sgx_platform: SimulatedPlatform, now: dt.datetime) -> None:
    quote, collateral = _sgx_quote(sgx_platform), sgx_platform.collateral(now=now)
    _rejected(DcapVerifier(TrustAnchors.intel()), quote, collateral, now, "pck_chain_untrusted")
    other_root = SimulatedPlatform.create(seed=b"another pki", now=now).root_pem
    _rejected(DcapVerifier(TrustAnchors.from_pem(other_root)), quote, collateral, now, "pck_chain_untrusted")


def test_revoked_pck_certificate(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    collateral = sgx_platform.collateral(now=now, revoked=[12345, sgx_platform.pck_serial])
    _rejected(sgx_verifier, _sgx_quote(sgx_platform), collateral, now, "pck_revoked")
    # Other serials on the CRL do not matter.
    assert _verify(
        sgx_verifier, _sgx_quote(sgx_platform), sgx_platform.collateral(now=now, revoked=[12345]), now
    )


def test_revoked_pck_ca(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    collateral = sgx_platform.collateral(now=now, root_revoked=[sgx_platform.pki.pck_ca("processor").serial])
    # The PCK CA also issues the PCK CRL, so the collateral check may be the one that notices.
    _rejected(sgx_verifier, _sgx_quote(sgx_platform), collateral, now, "ca_revoked", "collateral_revoked")
    collateral = sgx_platform.collateral(now=now, root_revoked=[sgx_platform.pki.tcb_signing.serial])
    _rejected(sgx_verifier, _sgx_quote(sgx_platform), collateral, now, "collateral_revoked")


def test_expired_collateral(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    collateral = sgx_platform.collateral(now=now)  # issued now - 1 day, next update now + 29 days
    quote = _sgx_quote(sgx_platform)
    assert _verify(sgx_verifier, quote, collateral, now + dt.timedelta(days=28)).tcb_status == "UpToDate"
    _rejected(
        sgx_verifier, quote, collateral, now + dt.timedelta(days=30), "collateral_expired", "crl_expired"
    )


def test_wrong_fmspc_or_pce_id(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    quote = _sgx_quote(sgx_platform)
    _rejected(
        sgx_verifier, quote, sgx_platform.collateral(now=now, fmspc="00606A000000"), now, "tcb_info_mismatch"
    )
    _rejected(sgx_verifier, quote, sgx_platform.collateral(now=now, pce_id="0100"), now, "tcb_info_mismatch")


def test_collateral_for_the_other_tee(
    tdx_platform: SimulatedPlatform, tdx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    mismatch = ("tcb_info_mismatch", "qe_identity_mismatch")
    _rejected(
        tdx_verifier, tdx_platform.tdx_quote(), tdx_platform.collateral(now=now, tee="sgx"), now, *mismatch
    )
    _rejected(
        tdx_verifier, tdx_platform.sgx_quote(), tdx_platform.collateral(now=now, tee="tdx"), now, *mismatch
    )


def test_no_matching_tcb_level(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime
) -> None:
    collateral = sgx_platform.collateral(now=now, tcb_levels=[sgx_platform.tcb.raised()])
    _rejected(sgx_verifier, _sgx_quote(sgx_platform), collateral, now, "tcb_not_supported")
    qe_too_new = sgx_platform.collateral(now=now, qe_levels=[EnclaveLevel(sgx_platform.qe_svn + 1)])
    _rejected(sgx_verifier, _sgx_quote(sgx_platform), qe_too_new, now, "tcb_not_supported")


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (100, "quote_signature_invalid"),  # report body
        (440, "quote_signature_invalid"),  # quote signature
        (520, "qe_report_data_mismatch"),  # attestation key
        (700, "qe_report_signature_invalid"),  # QE report
        (1000, "qe_report_signature_invalid"),  # QE report signature
    ],
)
def test_tampered_quote(
    sgx_platform: SimulatedPlatform, sgx_verifier: DcapVerifier, now: dt.datetime, offset: int, code: str
) -> None:
    quote = bytearray(_sgx_quote(sgx_platform))
    quote[offset] ^= 0x01
    _rejected(sgx_verifier, bytes(quote), sgx_platform.collateral(now=now), now, code)


def test_tdx_module_version_zero_compares_all_components(now: dt.datetime) -> None:
    tcb = PlatformTcb(tdx_svns=(3, 0, 2, *([0] * 13)))
    platform = SimulatedPlatform.create(seed=b"module 0", now=now, tee="tdx", tcb=tcb)
    verifier = DcapVerifier(TrustAnchors.from_pem(platform.root_pem))
    quote = platform.tdx_quote()
    assert _verify(verifier, quote, platform.collateral(now=now), now).tcb_status == "UpToDate"
    newer_module = TcbLevel(tcb.sgx_svns, tcb.pcesvn, "UpToDate", (), (4, *tcb.tdx_svns[1:]))
    levels = [newer_module, tcb.level("OutOfDate", ["INTEL-SA-00999"])]
    result = _verify(verifier, quote, platform.collateral(now=now, tcb_levels=levels), now)
    assert (result.tcb_status, tuple(result.advisory_ids)) == ("OutOfDate", ("INTEL-SA-00999",))
