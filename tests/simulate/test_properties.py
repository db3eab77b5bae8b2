"""Any report body the simulator signs comes back out of the real verifier unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.evidence.dcap import DcapVerifier, SgxCollateral
from affidavit.simulate import SimulatedPlatform
from tests.simulated_platforms import NOW


def _bytes(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


@settings(max_examples=40)
@given(
    mrenclave=_bytes(32),
    mrsigner=_bytes(32),
    isv_prod_id=st.integers(0, 0xFFFF),
    isv_svn=st.integers(0, 0xFFFF),
    report_data=_bytes(64),
    debug=st.booleans(),
    version=st.sampled_from([3, 4, 5]),
    trailing=st.integers(0, 300),
)
def test_any_sgx_report_round_trips(
    sgx_platform: SimulatedPlatform,
    sgx_verifier: DcapVerifier,
    sgx_collateral: SgxCollateral,
    mrenclave: bytes,
    mrsigner: bytes,
    isv_prod_id: int,
    isv_svn: int,
    report_data: bytes,
    debug: bool,
    version: int,
    trailing: int,
) -> None:
    quote = sgx_platform.sgx_quote(
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        debug=debug,
        report_data=report_data,
        version=version,
        trailing=trailing,
    )
    result = sgx_verifier.verify(quote, sgx_collateral, NOW)
    claims = result.claims
    assert result.tcb_status == "UpToDate" and result.report_data == report_data
    assert (claims["x-ms-sgx-mrenclave"], claims["x-ms-sgx-mrsigner"]) == (mrenclave.hex(), mrsigner.hex())
    assert (claims["x-ms-sgx-product-id"], claims["x-ms-sgx-svn"]) == (isv_prod_id, isv_svn)
    assert claims["x-ms-sgx-is-debuggable"] is debug


@settings(max_examples=30)
@given(
    mrtd=_bytes(48),
    rtmrs=st.lists(_bytes(48), min_size=4, max_size=4),
    report_data=_bytes(64),
    form=st.sampled_from([(4, False), (5, False), (5, True)]),
)
def test_any_td_report_round_trips(
    tdx_platform: SimulatedPlatform,
    tdx_verifier: DcapVerifier,
    tdx_collateral: SgxCollateral,
    mrtd: bytes,
    rtmrs: list[bytes],
    report_data: bytes,
    form: tuple[int, bool],
) -> None:
    version, td15 = form
    quote = tdx_platform.tdx_quote(
        mrtd=mrtd, rtmrs=rtmrs, report_data=report_data, version=version, td15=td15
    )
    result = tdx_verifier.verify(quote, tdx_collateral, NOW)
    assert result.tcb_status == "UpToDate" and result.report_data == report_data
    values = {str(v).lower() for v in result.claims.values()}
    assert {mrtd.hex(), *(r.hex() for r in rtmrs)} <= values
