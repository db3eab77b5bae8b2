"""MAA incoming claims derived from a verified report body (sgx-dcap.md §7; maa-api.md §6.2).

SGX bodies give the ``x-ms-sgx-*`` claims (KSS claims only for enclaves with the KSS attribute, as MAA
does); TD bodies give the ``tdx_*`` names of MAA's TDX EAT profile. Verification results (TCB status,
collateral hashes, attestation type) are added by the caller, which knows the request.
"""

from __future__ import annotations

from typing import Any

from affidavit.evidence.dcap.quote import SgxReportBody, TdReportBody

# TDATTRIBUTES bits (u64 little-endian at TD report offset 120).
TD_ATTR_DEBUG = 1 << 0
TD_ATTR_SEPT_VE_DISABLE = 1 << 28
TD_ATTR_PKS = 1 << 30
TD_ATTR_KL = 1 << 31
TD_ATTR_PERFMON = 1 << 63
TDX_EAT_PROFILE = "https://aka.ms/maa-eat-profile-tdxvm"


def sgx_claims(body: SgxReportBody) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "x-ms-sgx-is-debuggable": body.is_debuggable,
        "x-ms-sgx-mrenclave": body.mrenclave.hex(),
        "x-ms-sgx-mrsigner": body.mrsigner.hex(),
        "x-ms-sgx-product-id": body.isv_prod_id,
        "x-ms-sgx-svn": body.isv_svn,
        "x-ms-sgx-report-data": body.report_data.hex(),
    }
    if body.kss:
        claims["x-ms-sgx-config-id"] = body.config_id.hex()
        claims["x-ms-sgx-config-svn"] = body.config_svn
        claims["x-ms-sgx-isv-extended-product-id"] = body.isv_ext_prod_id.hex()
        claims["x-ms-sgx-isv-family-id"] = body.isv_family_id.hex()
    return claims


def tdx_claims(body: TdReportBody) -> dict[str, Any]:
    attrs = int.from_bytes(body.td_attributes, "little")
    r0, r1, r2, r3 = body.rtmrs
    claims: dict[str, Any] = {
        "tdx_mrseam": body.mrseam.hex(),
        "tdx_mrsignerseam": body.mrsigner_seam.hex(),
        "tdx_mrtd": body.mrtd.hex(),
        "tdx_mrconfigid": body.mr_config_id.hex(),
        "tdx_mrowner": body.mr_owner.hex(),
        "tdx_mrownerconfig": body.mr_owner_config.hex(),
        "tdx_rtmr0": r0.hex(),
        "tdx_rtmr1": r1.hex(),
        "tdx_rtmr2": r2.hex(),
        "tdx_rtmr3": r3.hex(),
        "tdx_report_data": body.report_data.hex(),
        "tdx_seam_attributes": body.seam_attributes.hex(),
        "tdx_td_attributes": body.td_attributes.hex(),
        "tdx_td_attributes_debug": bool(attrs & TD_ATTR_DEBUG),
        "tdx_td_attributes_septve_disable": bool(attrs & TD_ATTR_SEPT_VE_DISABLE),
        "tdx_td_attributes_protection_keys": bool(attrs & TD_ATTR_PKS),
        "tdx_td_attributes_key_locker": bool(attrs & TD_ATTR_KL),
        "tdx_td_attributes_perfmon": bool(attrs & TD_ATTR_PERFMON),
        "tdx_tee_tcb_svn": body.tee_tcb_svn.hex(),
        "tdx_xfam": body.xfam.hex(),
        # MAA's TDX EAT profile (azure-cvm.md §6.9): the profile, EAT dbgstat/intuse, and the TDX module's
        # SVN as the u16 of TEE_TCB_SVN[0:2] (equal to byte 0 in MAA's sample; which one is unconfirmed).
        "eat_profile": TDX_EAT_PROFILE,
        "dbgstat": "enabled" if attrs & TD_ATTR_DEBUG else "disabled-since-boot",
        "intuse": "generic",
        "tdx_seamsvn": int.from_bytes(body.tee_tcb_svn[0:2], "little"),
    }
    if body.is_td15:
        claims["tdx_tee_tcb_svn2"] = body.raw[584:600].hex()
        claims["tdx_mrservicetd"] = body.raw[600:648].hex()
    return claims


def body_claims(body: SgxReportBody | TdReportBody) -> dict[str, Any]:
    return tdx_claims(body) if isinstance(body, TdReportBody) else sgx_claims(body)
