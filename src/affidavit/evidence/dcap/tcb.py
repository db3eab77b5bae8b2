"""TCB evaluation as Intel's QVL does it: level selection (SGX, TDX), TDX module identity, QE identity,
status convergence and TD relaunch (sgx-dcap.md §5 D-G).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap.pck import PckExtension
from affidavit.evidence.dcap.quote import SgxReportBody, TdReportBody
from affidavit.evidence.dcap.tcbinfo import (
    EnclaveIdentity,
    IdentityTcbLevel,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
)

_CONFIG = frozenset({"ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"})
_CURRENT = frozenset({"UpToDate", "SWHardeningNeeded"}) | _CONFIG


def fail(code: str, message: str) -> EvidenceError:
    return EvidenceError(message, code=code)


def converge(platform: str, other: str | None) -> str:
    """Combine a platform status with the QE (or TDX module) status, per QVL's table."""
    if other == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in _CONFIG:
            return "OutOfDateConfigurationNeeded"
    return platform


def identity_level(levels: tuple[IdentityTcbLevel, ...], isvsvn: int) -> IdentityTcbLevel | None:
    """The first (highest) level whose ISVSVN the given ISVSVN reaches."""
    for lv in levels:
        if isvsvn >= lv.isvsvn:
            return lv
    return None


def _masked_equal(value: bytes, mask: bytes, expected: bytes) -> bool:
    """``value & mask == expected``, byte for byte (all three the same length), as integers."""
    if not len(value) == len(mask) == len(expected):
        raise ValueError("value, mask and expected value differ in length")
    return int.from_bytes(value) & int.from_bytes(mask) == int.from_bytes(expected)


def match_qe_identity(qe: SgxReportBody, ident: EnclaveIdentity) -> IdentityTcbLevel:
    """Check the QE report against the QE identity; return the QE's TCB level."""
    raw = qe.raw
    if not _masked_equal(raw[16:20], ident.miscselect_mask, ident.miscselect):
        raise fail("qe_identity_mismatch", "QE MISCSELECT does not match the QE identity")
    if not _masked_equal(raw[48:64], ident.attributes_mask, ident.attributes):
        raise fail("qe_identity_mismatch", "QE ATTRIBUTES do not match the QE identity")
    if qe.mrsigner != ident.mrsigner:
        raise fail(
            "qe_identity_mismatch",
            f"QE MRSIGNER {qe.mrsigner.hex()} is not the identity's {ident.mrsigner.hex()}",
        )
    if qe.isv_prod_id != ident.isvprodid:
        raise fail("qe_identity_mismatch", f"QE ISVPRODID {qe.isv_prod_id} is not {ident.isvprodid}")
    lv = identity_level(ident.tcb_levels, qe.isv_svn)
    if lv is None:
        raise fail("tcb_not_supported", f"QE ISVSVN {qe.isv_svn} is below every QE identity TCB level")
    return lv


def check_identity_kind(tcb: TcbInfo, ident: EnclaveIdentity, tee: str) -> None:
    """TCB Info and QE identity must be the ones for this TEE (QVL's *_MISMATCH statuses)."""
    if tee == "tdx":
        if tcb.id != "TDX" or tcb.version < 3:
            raise fail("tcb_info_mismatch", f"a TDX quote needs TDX TCB Info v3, got {tcb.id} v{tcb.version}")
        if ident.id != "TD_QE":
            raise fail("qe_identity_mismatch", f"a TDX quote needs the TD_QE identity, got {ident.id}")
    else:
        if tcb.id != "SGX":
            raise fail("tcb_info_mismatch", f"an SGX quote needs SGX TCB Info, got {tcb.id}")
        if ident.id != "QE":
            raise fail("qe_identity_mismatch", f"an SGX quote needs the QE identity, got {ident.id}")


def _module_identity(tcb: TcbInfo, version: int) -> TdxModuleIdentity | None:
    want = f"TDX_{version:02X}"
    for m in tcb.tdx_module_identities:
        if m.id.upper() == want:
            return m
    return None


def tdx_module_level(tcb: TcbInfo, body: TdReportBody) -> IdentityTcbLevel | None:
    """Check the TDX module identity; the module's TCB level (None for module version 0)."""
    svn = body.tee_tcb_svn
    version = svn[1]
    ident = _module_identity(tcb, version) if version > 0 else tcb.tdx_module
    if ident is None:
        what = f"TDX_{version:02X}" if version > 0 else "tdxModule"
        raise fail("tdx_module_mismatch", f"TCB Info has no TDX module identity {what}")
    if body.mrsigner_seam != ident.mrsigner:
        raise fail("tdx_module_mismatch", "MRSIGNERSEAM does not match the TDX module identity")
    if body.seam_attributes != ident.attributes or any(body.seam_attributes):
        raise fail("tdx_module_mismatch", "SEAMATTRIBUTES do not match the TDX module identity")
    if version == 0:
        return None
    lv = identity_level(ident.tcb_levels, svn[0])
    if lv is None:
        raise fail("tcb_not_supported", f"TDX module SVN {svn[0]} is below every level of {ident.id}")
    return lv


def _sgx_ok(lv: TcbLevel, pck: PckExtension) -> bool:
    comps, level = pck.tcb_components, lv.sgx_components
    if len(comps) != len(level):
        raise ValueError("SGX TCB components differ in number")
    return pck.pcesvn >= lv.pcesvn and all(map(operator.ge, comps, level))


def _tdx_ok(lv: TcbLevel, tee_tcb_svn: bytes) -> bool:
    comps = lv.tdx_components
    if comps is None:
        return False
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[i] >= comps[i] for i in range(start, 16))


def platform_levels(tcb: TcbInfo, pck: PckExtension, td: TdReportBody | None) -> tuple[TcbLevel, TcbLevel]:
    """(first level matching the SGX components, the level that decides: SGX match or TDX match)."""
    sgx_level = None
    for lv in tcb.tcb_levels:
        if not _sgx_ok(lv, pck):
            continue
        if sgx_level is None:
            sgx_level = lv
        if td is None:
            return lv, lv
        if _tdx_ok(lv, td.tee_tcb_svn):
            return sgx_level, lv
    comps = ",".join(str(c) for c in pck.tcb_components)
    if sgx_level is None:
        raise fail(
            "tcb_not_supported",
            f"TCB level not supported: PCK SGX TCB components [{comps}] PCESVN "
            f"{pck.pcesvn} are below every level of the TCB Info",
        )
    assert td is not None  # without a TD body the first SGX match returned
    raise fail(
        "tcb_not_supported",
        f"TCB level not supported: TEE_TCB_SVN {td.tee_tcb_svn.hex()} is below "
        "every TDX level that the SGX components reach",
    )


def _relaunch(tcb: TcbInfo, td: TdReportBody, sgx: str, tdx: str, module: str | None, qe: str) -> str | None:
    """QVL's checkForRelaunch for TD 1.5 reports: the TD may reach a newer TCB by relaunching."""
    svn2 = td.tee_tcb_svn2
    if svn2 is None or qe in ("OutOfDate", "Revoked") or module != "OutOfDate":
        return None
    if sgx not in _CURRENT or tdx not in ("OutOfDate", "OutOfDateConfigurationNeeded"):
        return None
    newest = tcb.tcb_levels[0]
    if newest.tdx_components is None:
        return None
    if svn2[1] == 0:
        ok = svn2[0] >= newest.tdx_components[0] and svn2[2] >= newest.tdx_components[2]
    else:
        ident = _module_identity(tcb, svn2[1])
        ok = (
            ident is not None
            and svn2[0] >= ident.tcb_levels[0].isvsvn
            and svn2[2] >= newest.tdx_components[2]
        )
    if not ok:
        return None
    if sgx in _CONFIG or tdx == "OutOfDateConfigurationNeeded":
        return "TDRelaunchAdvisedConfigurationNeeded"
    return "TDRelaunchAdvised"


@dataclass(frozen=True)
class TcbOutcome:
    status: str
    advisory_ids: tuple[str, ...]
    platform_level: TcbLevel
    qe_level: IdentityTcbLevel
    module_level: IdentityTcbLevel | None


def evaluate(
    tcb: TcbInfo,
    pck: PckExtension,
    body: SgxReportBody | TdReportBody,
    qe_level: IdentityTcbLevel,
    module_level: IdentityTcbLevel | None,
) -> TcbOutcome:
    """The final TCB status and advisory IDs (platform level, then module level, then QE level).

    ``module_level`` comes from `tdx_module_level` (checked earlier, in QVL's order).
    """
    td = body if isinstance(body, TdReportBody) else None
    sgx_level, level = platform_levels(tcb, pck, td)
    status = level.status
    if td is not None:
        module_status = module_level.status if module_level is not None else None
        status = converge(level.status, module_status)
        relaunch = _relaunch(tcb, td, sgx_level.status, level.status, module_status, qe_level.status)
        if relaunch is not None:
            status = relaunch
    status = converge(status, qe_level.status)
    advisories: dict[str, None] = {}
    for src in (level, module_level, qe_level):
        if src is not None:
            advisories.update(dict.fromkeys(src.advisory_ids))
    return TcbOutcome(status, tuple(advisories), level, qe_level, module_level)
