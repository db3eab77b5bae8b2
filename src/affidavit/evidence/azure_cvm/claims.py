"""MAA's ``azurevm`` claims for a verified CVM (azure-cvm.md §6.7) and ``x-ms-compliance-status``.

``x-ms-compliance-status`` is ``azure-compliant-cvm`` when the verified hardware claims meet one of the
operator's baselines, else ``azure-noncompliant-cvm`` (Affidavit's value: MAA documents only the
compliant one). With no baseline configured nothing is compliant (fail closed). A baseline is a JSON
object for one TEE::

    {"tee": "sevsnpvm",                                   # or "tdxvm"
     "x-ms-sevsnpvm-launchmeasurement": ["<hex>", ...],   # any claim name: the value must be listed
     "x-ms-sevsnpvm-idkeydigest": ["<hex>"],
     "minimum": {"x-ms-sevsnpvm-bootloader-svn": 3, "x-ms-sevsnpvm-snpfw-svn": 8},   # numeric floors
     "tcb_status": ["UpToDate"]}                          # TDX: Intel's TCB status must be listed

Hex comparisons ignore case. The Windows boot booleans (``x-ms-azurevm-*-enabled`` & co) come from the
TPM claims of the replayed log where the log shows them, otherwise they take the values every real
Linux ``azurevm`` token carries. The OS fields are the request's, echoed (``-ostype``, ``-is-windows``)
as MAA does; they never decide a boot claim (``-elam-enabled`` is false: no ELAM event is verified).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from affidavit.evidence.azure_cvm.errors import HclFormatError
from affidavit.evidence.azure_cvm.verify import AzureCvmResult

COMPLIANT = "azure-compliant-cvm"
NON_COMPLIANT = "azure-noncompliant-cvm"
BASELINE_KEYS = frozenset({"tee", "minimum", "tcb_status"})


@dataclass(frozen=True)
class OsInfo:
    """The request's OS fields, already base64-decoded (OSType, OSDistro, OSBuild) and numeric."""

    os_type: str
    distro: str
    build: str
    version_major: int
    version_minor: int
    protocol_version: str = "2.0"


def check_baselines(baselines: object) -> tuple[Mapping[str, Any], ...]:
    """Validate the operator's baselines (a list of objects as in the module docstring)."""
    if not isinstance(baselines, list):
        raise HclFormatError("Azure CVM baselines must be a JSON list of objects")
    out = []
    for b in baselines:
        if not isinstance(b, dict) or b.get("tee") not in ("sevsnpvm", "tdxvm"):
            raise HclFormatError('each baseline needs "tee": "sevsnpvm" or "tdxvm"')
        minimum = b.get("minimum", {})
        if not isinstance(minimum, dict) or not all(type(v) is int for v in minimum.values()):
            raise HclFormatError("a baseline's minimum must map claim names to integers")
        for k, v in b.items():
            if k not in BASELINE_KEYS and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise HclFormatError(f"baseline claim {k!r} must list the accepted values as strings")
        out.append(b)
    return tuple(out)


def _meets(baseline: Mapping[str, Any], tee: str, claims: Mapping[str, Any], tcb_status: str | None) -> bool:
    if baseline["tee"] != tee:
        return False
    for name, floor in baseline.get("minimum", {}).items():
        value = claims.get(name)
        if type(value) is not int or value < floor:
            return False
    statuses = baseline.get("tcb_status")
    if statuses is not None and tcb_status not in statuses:
        return False
    for name, allowed in baseline.items():
        if name in BASELINE_KEYS:
            continue
        value = claims.get(name)
        if not isinstance(value, str) or value.lower() not in {a.lower() for a in allowed}:
            return False
    return True


def compliance_status(
    tee: str, claims: Mapping[str, Any], baselines: Sequence[Mapping[str, Any]], tcb_status: str | None = None
) -> str:
    return COMPLIANT if any(_meets(b, tee, claims, tcb_status) for b in baselines) else NON_COMPLIANT


def isolation_tee_claims(result: AzureCvmResult, baselines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``x-ms-isolation-tee``: the hardware claims, the runtime claims, the attestation type and the
    compliance status."""
    tcb = result.dcap.tcb_status if result.dcap is not None else None
    tee: dict[str, Any] = dict(result.hardware_claims)
    if result.dcap is not None:
        tee["attester_tcb_status"] = result.dcap.tcb_status
        tee["attester_advisory_ids"] = list(result.dcap.advisory_ids)
    tee["x-ms-attestation-type"] = result.tee
    tee["x-ms-compliance-status"] = compliance_status(result.tee, result.hardware_claims, baselines, tcb)
    tee["x-ms-runtime"] = result.runtime.value
    return tee


def _flag(tpm: Mapping[str, Any], name: str, default: bool) -> bool:
    value = tpm.get(name)
    return value if isinstance(value, bool) else default


def azurevm_claims(
    result: AzureCvmResult,
    os_info: OsInfo,
    *,
    client_payload: Any,
    encryption_key_jwk: Mapping[str, Any],
    baselines: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The token claims MAA's AzureGuest emits (iss/iat/exp/jti/policy hash are the pipeline's)."""
    tpm = result.tpm.claims
    windows = os_info.os_type.lower() == "windows"
    config = result.runtime.vm_configuration
    secureboot = _flag(tpm, "secureBootEnabled", bool(config.get("secure-boot", False)))
    boot_debug = not _flag(tpm, "bootDebuggingDisabled", True)
    attested = sorted({i for values in result.tpm.pcrs.values() for i in values})
    claims: dict[str, Any] = {
        "x-ms-attestation-type": "azurevm",
        "x-ms-azurevm-attestation-protocol-ver": os_info.protocol_version,
        "x-ms-azurevm-attested-pcrs": attested,
        "x-ms-azurevm-bootdebug-enabled": boot_debug,
        "x-ms-azurevm-dbvalidated": secureboot,
        "x-ms-azurevm-dbxvalidated": secureboot,
        "x-ms-azurevm-debuggersdisabled": not boot_debug,
        "x-ms-azurevm-default-securebootkeysvalidated": secureboot,
        "x-ms-azurevm-elam-enabled": False,  # not from OSType, the client's word (module docstring)
        "x-ms-azurevm-flightsigning-enabled": False,
        "x-ms-azurevm-hvci-policy": 0,
        "x-ms-azurevm-hypervisordebug-enabled": False,
        "x-ms-azurevm-is-windows": windows,
        "x-ms-azurevm-kerneldebug-enabled": False,
        "x-ms-azurevm-osbuild": os_info.build,
        "x-ms-azurevm-osdistro": os_info.distro,
        "x-ms-azurevm-ostype": os_info.os_type,
        "x-ms-azurevm-osversion-major": os_info.version_major,
        "x-ms-azurevm-osversion-minor": os_info.version_minor,
        "x-ms-azurevm-signingdisabled": True,
        "x-ms-azurevm-testsigning-enabled": False,
        "secureboot": secureboot,
        "x-ms-isolation-tee": isolation_tee_claims(result, baselines),
        "x-ms-runtime": {"client-payload": client_payload, "keys": [dict(encryption_key_jwk)]},
    }
    vmid = result.runtime.vm_unique_id
    if vmid is not None:
        claims["x-ms-azurevm-vmid"] = vmid
    return claims
