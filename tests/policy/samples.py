"""Incoming claims shaped like MAA's (maa-policy.md §6) for the example policies' outcomes."""

from __future__ import annotations

import json
from typing import Any

from affidavit.policy import Claim, claims_from_mapping

SECURE_BOOT_GUID = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C"


def tpm_events(*, secure_boot: bool = True, elam: bool = True, bitlocker: int = 4) -> dict[str, Any]:
    """A TCG log as MAA's ``events`` claim presents it, holding what the v1.2 TPM samples query."""
    drivers = [{"EVENT_FILEPATH": "\\windows\\system32\\drivers\\acpi.sys", "EVENT_IMAGEVALIDATED": True}]
    if elam:
        drivers.append(
            {"EVENT_FILEPATH": "\\Windows\\System32\\drivers\\WdBoot.sys", "EVENT_IMAGEVALIDATED": True}
        )
    return {
        "Events": [
            {
                "EventSeq": 1,
                "PcrIndex": 7,
                "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                "ProcessedData": {
                    "VariableGuid": SECURE_BOOT_GUID,
                    "UnicodeName": "SecureBoot",
                    "VariableData": "AQ" if secure_boot else "AA",
                },
            },
            {
                "EventSeq": 2,
                "PcrIndex": 7,
                "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                "ProcessedData": {
                    "VariableGuid": SECURE_BOOT_GUID,
                    "UnicodeName": "PK",
                    "VariableData": "UEtEQVRB",
                },
            },
            {
                "EventSeq": 3,
                "PcrIndex": 12,
                "EventTypeString": "EV_EVENT_TAG",
                "ProcessedData": {
                    "EVENT_TRUSTBOUNDARY": {
                        "EVENT_CODEINTEGRITY": True,
                        "EVENT_BITLOCKER_UNLOCK": {"Value": bitlocker},
                        "EVENT_LOADEDMODULE_AGGREGATION": drivers,
                    }
                },
            },
            {
                "EventSeq": 4,
                "PcrIndex": 13,
                "EventTypeString": "EV_EVENT_TAG",
                "ProcessedData": {
                    "EVENT_TRUSTBOUNDARY": {
                        "EVENT_CODEINTEGRITY": True,
                        "EVENT_DRIVER_LOAD_POLICY": {"String": "enforced"},
                    }
                },
            },
            {
                "EventSeq": 10,
                "PcrIndex": 20,
                "EventTypeString": "EV_EVENT_TAG",
                "ProcessedData": {"EVENT_DRTM_SMM": {"Value": 2}},
            },
            {
                "EventSeq": 12,
                "PcrIndex": 20,
                "EventTypeString": "EV_EVENT_TAG",
                "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_DRTM_STATE_AUTH": {"SignatureValid": True}}},
            },
        ]
    }


PCR_SHA256 = {
    0: "4c833b1c361fceffd8dc0f81eec76081b71e1a0eb2193caed0b6e1c7735ec33e",
    1: "8c25e3be6ad6f5bd33c9ae40d5d5461e88c1a7366df0c9ee5c7e5ff40d3d1d0e",
    2: "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    3: "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
}


def tpm_pcrs(overrides: dict[int, str] | None = None) -> dict[str, Any]:
    digests = {**PCR_SHA256, **(overrides or {})}
    return {"PCRs": [{"Index": i, "Digests": {"SHA1": "00" * 20, "SHA256": d}} for i, d in digests.items()]}


def tpm_claims(**flags: Any) -> list[Claim]:
    base: dict[str, Any] = {
        "aikValidated": True,
        "aikPubHash": "3q2+7w==",
        "tpmVersion": 2,
        "secureBootEnabled": True,
        "iommuEnabled": True,
        "bootDebuggingDisabled": True,
        "notSafeMode": True,
        "notWinPE": True,
        "vbsEnabled": True,
        "vbsReportPresent": False,
        "events": tpm_events(),
        "bootEvents": {"Events": []},
        "pcrs": tpm_pcrs(),
    }
    base.update(flags)
    return claims_from_mapping({k: v for k, v in base.items() if v is not None})


def sgx_claims(*, debuggable: bool = False, mrsigner: str = "mrsigner1", legacy: bool = True) -> list[Claim]:
    current: dict[str, Any] = {
        "x-ms-sgx-is-debuggable": debuggable,
        "x-ms-sgx-mrsigner": mrsigner,
        "x-ms-sgx-mrenclave": "e3c2f2a5b8409a1a8cb9fd1b9f1c1e4d9a4cbd0bb1fdaa7e1fbe2a13d3c1d2a1",
        "x-ms-sgx-product-id": 1,
        "x-ms-sgx-svn": 3,
        "x-ms-attestation-type": "sgx",
        "x-ms-sgx-collateral": {"qeidhash": "ab", "tcbinfohash": "cd"},
    }
    if legacy:
        current.update(
            {
                "$is-debuggable": debuggable,
                "$sgx-mrsigner": mrsigner,
                "$sgx-mrenclave": current["x-ms-sgx-mrenclave"],
                "$product-id": 1,
                "$svn": 3,
                "$tee": "sgx",
            }
        )
    return claims_from_mapping(current)


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
