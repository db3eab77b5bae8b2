"""QVL's TCB rules on small synthetic TCB Info documents: level choice, convergence, TDX module, relaunch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from affidavit.evidence.dcap import EvidenceError, PckExtension, SgxReportBody, TdReportBody
from affidavit.evidence.dcap.tcb import converge, evaluate, match_qe_identity, tdx_module_level
from affidavit.evidence.dcap.tcbinfo import (
    EnclaveIdentity,
    IdentityTcbLevel,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
)

T = datetime(2025, 1, 1, tzinfo=UTC)
PLATFORM = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
]


def _level(
    sgx: int, pcesvn: int, status: str, tdx: tuple[int, ...] | None = None, adv: tuple[str, ...] = ()
) -> TcbLevel:
    return TcbLevel((sgx,) * 16, pcesvn, tdx, T, status, adv)


def _ident(isvsvn: int, status: str, adv: tuple[str, ...] = ()) -> IdentityTcbLevel:
    return IdentityTcbLevel(isvsvn, T, status, adv)


def _pck(sgx: int, pcesvn: int) -> PckExtension:
    return PckExtension(bytes(16), (sgx,) * 16, pcesvn, bytes(16), b"\0\0", bytes(6), 0)


def _tcb(levels: list[TcbLevel], modules: tuple[TdxModuleIdentity, ...] = (), kind: str = "SGX") -> TcbInfo:
    module = TdxModuleIdentity("", bytes(48), bytes(8), b"\xff" * 8, ())
    return TcbInfo(kind, 3, T, T, bytes(6), b"\0\0", 0, 17, tuple(levels), module, modules)


def _td(tee_tcb_svn: bytes, svn2: bytes | None = None) -> TdReportBody:
    raw = bytearray(648 if svn2 is not None else 584)
    raw[0:16] = tee_tcb_svn
    if svn2 is not None:
        raw[584:600] = svn2
    return TdReportBody(bytes(raw))


SGX_BODY = SgxReportBody(bytes(384))


@pytest.mark.parametrize("platform", PLATFORM)
def test_convergence_table(platform: str) -> None:
    assert converge(platform, "UpToDate") == platform
    assert converge(platform, None) == platform
    assert converge(platform, "Revoked") == "Revoked"
    expected = {
        "UpToDate": "OutOfDate",
        "SWHardeningNeeded": "OutOfDate",
        "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded",
    }.get(platform, platform)
    assert converge(platform, "OutOfDate") == expected


def test_first_level_that_the_pck_reaches_wins_and_advisories_are_ordered() -> None:
    tcb = _tcb(
        [
            _level(5, 10, "UpToDate"),
            _level(3, 10, "SWHardeningNeeded", adv=("SA-2", "SA-1")),
            _level(1, 1, "OutOfDate", adv=("SA-9",)),
        ]
    )
    qe = _ident(3, "UpToDate", ("SA-1", "SA-Q"))
    out = evaluate(tcb, _pck(4, 10), SGX_BODY, qe, None)
    assert (out.status, out.advisory_ids) == ("SWHardeningNeeded", ("SA-2", "SA-1", "SA-Q"))
    # PCESVN below the level: fall to the next one.
    assert evaluate(tcb, _pck(9, 5), SGX_BODY, qe, None).status == "OutOfDate"
    with pytest.raises(EvidenceError) as info:
        evaluate(tcb, _pck(0, 99), SGX_BODY, qe, None)
    assert info.value.code == "tcb_not_supported"


def test_revoked_level_is_a_result_not_an_error() -> None:
    out = evaluate(_tcb([_level(1, 1, "Revoked")]), _pck(1, 1), SGX_BODY, _ident(0, "UpToDate"), None)
    assert out.status == "Revoked"


def test_qe_identity_match_masks_and_levels() -> None:
    raw = bytearray(384)
    raw[48] = 0x15  # INIT | MODE64BIT | PROVISIONKEY
    raw[56] = 0xE7  # XFRM: masked away
    raw[128:160] = b"\x11" * 32
    raw[256:258] = (1).to_bytes(2, "little")
    raw[258:260] = (7).to_bytes(2, "little")
    ident = EnclaveIdentity(
        "QE",
        2,
        T,
        T,
        17,
        bytes(4),
        b"\xff" * 4,
        bytes([0x11]) + bytes(15),
        bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000"),
        b"\x11" * 32,
        1,
        (_ident(8, "UpToDate"), _ident(6, "OutOfDate", ("SA-QE",))),
    )
    assert match_qe_identity(SgxReportBody(bytes(raw)), ident).status == "OutOfDate"
    for offset, value in [(128, 0x12), (256, 2), (16, 1), (48, 0x17)]:
        bad = bytearray(raw)
        bad[offset] = value
        with pytest.raises(EvidenceError) as info:
            match_qe_identity(SgxReportBody(bytes(bad)), ident)
        assert info.value.code == "qe_identity_mismatch"
    low = bytearray(raw)
    low[258] = 5
    with pytest.raises(EvidenceError) as info:
        match_qe_identity(SgxReportBody(bytes(low)), ident)
    assert info.value.code == "tcb_not_supported"


TDX_LEVELS = [
    _level(2, 5, "UpToDate", tdx=(5, 0, 3) + (0,) * 13),
    _level(2, 5, "OutOfDate", tdx=(2, 0, 2) + (0,) * 13, adv=("SA-T",)),
]
MODULES = (
    TdxModuleIdentity(
        "TDX_01", bytes(48), bytes(8), b"\xff" * 8, (_ident(4, "UpToDate"), _ident(2, "OutOfDate", ("SA-M",)))
    ),
)


def test_tdx_levels_skip_module_bytes_when_version_is_set() -> None:
    tcb = _tcb(TDX_LEVELS, MODULES, "TDX")
    td = _td(bytes([1, 1, 3]) + bytes(13))  # module 1 SVN 1 is below TDX_01's levels
    with pytest.raises(EvidenceError) as info:
        tdx_module_level(tcb, td)
    assert info.value.code == "tcb_not_supported"
    td = _td(bytes([3, 1, 3]) + bytes(13))  # byte 0 (3) < level tdx[0] (5) is ignored: module judges it
    module = tdx_module_level(tcb, td)
    assert module is not None and module.status == "OutOfDate"
    out = evaluate(tcb, _pck(2, 5), td, _ident(0, "UpToDate"), module)
    assert (out.status, out.advisory_ids) == ("OutOfDate", ("SA-M",))
    td = _td(bytes([9, 1, 2]) + bytes(13))  # TEE_TCB_SVN[2] = 2 reaches only the second level
    out = evaluate(tcb, _pck(2, 5), td, _ident(0, "UpToDate"), tdx_module_level(tcb, td))
    assert (out.status, out.advisory_ids) == ("OutOfDate", ("SA-T",))


def test_tdx_module_identity_missing_or_mismatched() -> None:
    tcb = _tcb(TDX_LEVELS, MODULES, "TDX")
    with pytest.raises(EvidenceError) as info:
        tdx_module_level(tcb, _td(bytes([3, 2, 3]) + bytes(13)))  # no TDX_02
    assert info.value.code == "tdx_module_mismatch"
    raw = bytearray(_td(bytes([3, 1, 3]) + bytes(13)).raw)
    raw[64] = 1  # MRSIGNERSEAM
    with pytest.raises(EvidenceError) as info:
        tdx_module_level(tcb, TdReportBody(bytes(raw)))
    assert info.value.code == "tdx_module_mismatch"
    # Module version 0: the `tdxModule` identity, no module TCB level; bytes 0 and 1 count for the level.
    assert tdx_module_level(tcb, _td(bytes([5, 0, 3]) + bytes(13))) is None
    out = evaluate(tcb, _pck(2, 5), _td(bytes([4, 0, 3]) + bytes(13)), _ident(0, "UpToDate"), None)
    assert out.status == "OutOfDate"


def test_td15_relaunch_advised() -> None:
    tcb = _tcb(TDX_LEVELS, MODULES, "TDX")
    running = bytes([3, 1, 2]) + bytes(13)  # module SVN 3 (OutOfDate), TDX level OutOfDate
    td = _td(running, svn2=bytes([4, 1, 3]) + bytes(13))  # the platform already runs module SVN 4
    module = tdx_module_level(tcb, td)
    out = evaluate(tcb, _pck(2, 5), td, _ident(0, "UpToDate"), module)
    assert out.status == "TDRelaunchAdvised"
    stale = _td(running, svn2=running)
    assert evaluate(tcb, _pck(2, 5), stale, _ident(0, "UpToDate"), module).status == "OutOfDate"
    # A QE that is itself out of date rules relaunch out.
    assert evaluate(tcb, _pck(2, 5), td, _ident(0, "OutOfDate"), module).status == "OutOfDate"
    config = _tcb(
        [
            replace(lv, status=s)
            for lv, s in zip(TDX_LEVELS, ["ConfigurationNeeded", "OutOfDateConfigurationNeeded"], strict=True)
        ],
        MODULES,
        "TDX",
    )
    out = evaluate(config, _pck(2, 5), td, _ident(0, "UpToDate"), module)
    assert out.status == "TDRelaunchAdvisedConfigurationNeeded"


def test_levels_are_ordered_as_qvl_orders_them() -> None:
    import json

    from affidavit.evidence.dcap import parse_enclave_identity, parse_tcb_info
    from tests.evidence.dcap.conftest import vector_cases

    case = next(c for c in vector_cases() if c.set.startswith("phala-tdx"))
    doc = json.loads(case.collateral_path.read_text())
    tcb, qe = json.loads(doc["tcb_info"]), json.loads(doc["qe_identity"])
    original = parse_tcb_info(doc["tcb_info"].encode())
    tcb["tcbLevels"].reverse()
    qe["tcbLevels"].reverse()
    assert parse_tcb_info(json.dumps(tcb).encode()).tcb_levels == original.tcb_levels
    assert (
        parse_enclave_identity(json.dumps(qe).encode()).tcb_levels
        == parse_enclave_identity(doc["qe_identity"].encode()).tcb_levels
    )
