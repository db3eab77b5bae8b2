"""TCB Info v3 and enclave identity v2 documents, signed by the TCB signing key, in the offline JSON form.

The offline form (``shared/vectors/sgx/README.md``, dcap-qvl's ``QuoteCollateralV3``) holds each signed
document as the exact text that was signed, so the documents are serialised once and signed as text.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.evidence.dcap.tcbinfo import ENCLAVE_STATUSES as ENCLAVE_STATUSES  # noqa: E402 -- re-exported
from affidavit.evidence.dcap.tcbinfo import TCB_STATUSES as TCB_STATUSES  # noqa: E402
from affidavit.simulate.keys import sign_raw

# Identity of Intel's quoting enclaves as published in 2025 collateral (sgx-dcap.md §3.2).
QE_MRSIGNER = bytes.fromhex("8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF")
TD_QE_MRSIGNER = bytes.fromhex("DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5")
QE_MISCSELECT, QE_MISCSELECT_MASK = "00000000", "FFFFFFFF"
QE_ATTRIBUTES, QE_ATTRIBUTES_MASK = "11000000000000000000000000000000", "FBFFFFFFFFFFFFFF0000000000000000"


def timestamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check(status: str, allowed: Sequence[str]) -> None:
    if status not in allowed:
        raise ValueError(f"status {status!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class TcbLevel:
    """One platform TCB level of TCB Info. ``tdx_svns`` is only written for TDX (zeros when not given)."""

    sgx_svns: tuple[int, ...]
    pcesvn: int
    status: str = "UpToDate"
    advisory_ids: tuple[str, ...] = ()
    tdx_svns: tuple[int, ...] | None = None
    tcb_date: dt.datetime | None = None

    def __post_init__(self) -> None:
        _check(self.status, TCB_STATUSES)
        if len(self.sgx_svns) != 16 or (self.tdx_svns is not None and len(self.tdx_svns) != 16):
            raise ValueError("a TCB level has 16 SGX (and 16 TDX) component SVNs")

    def to_json(self, tdx: bool, default_date: dt.datetime) -> dict[str, Any]:
        tcb: dict[str, Any] = {"sgxtcbcomponents": [{"svn": s} for s in self.sgx_svns], "pcesvn": self.pcesvn}
        if tdx:
            tcb["tdxtcbcomponents"] = [{"svn": s} for s in (self.tdx_svns or (0,) * 16)]
        return _level(tcb, self.tcb_date or default_date, self.status, self.advisory_ids)


@dataclass(frozen=True)
class EnclaveLevel:
    """One TCB level of an enclave identity (QE, TD_QE) or of a TDX module identity."""

    isvsvn: int
    status: str = "UpToDate"
    advisory_ids: tuple[str, ...] = ()
    tcb_date: dt.datetime | None = None

    def __post_init__(self) -> None:
        _check(self.status, ENCLAVE_STATUSES)

    def to_json(self, default_date: dt.datetime) -> dict[str, Any]:
        return _level({"isvsvn": self.isvsvn}, self.tcb_date or default_date, self.status, self.advisory_ids)


def _level(
    tcb: dict[str, Any], date: dt.datetime, status: str, advisories: tuple[str, ...]
) -> dict[str, Any]:
    level: dict[str, Any] = {"tcb": tcb, "tcbDate": timestamp(date), "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


@dataclass(frozen=True)
class TdxModuleIdentity:
    """A ``tdxModuleIdentities`` entry: the TDX module of major version ``version`` (id ``TDX_%02X``)."""

    version: int
    levels: tuple[EnclaveLevel, ...]
    mrsigner: bytes = bytes(48)
    attributes: bytes = bytes(8)
    attributes_mask: bytes = b"\xff" * 8

    def to_json(self, default_date: dt.datetime) -> dict[str, Any]:
        return {
            "id": f"TDX_{self.version:02X}",
            "mrsigner": self.mrsigner.hex().upper(),
            "attributes": self.attributes.hex().upper(),
            "attributesMask": self.attributes_mask.hex().upper(),
            "tcbLevels": [lvl.to_json(default_date) for lvl in self.levels],
        }


@dataclass(frozen=True)
class DocumentDates:
    issue_date: dt.datetime
    next_update: dt.datetime
    tcb_evaluation_data_number: int = 17


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True)
class TcbInfoSpec:
    """Contents of a TCB Info v3 document."""

    tee: str  # "sgx" or "tdx"
    fmspc: bytes
    pce_id: bytes
    levels: tuple[TcbLevel, ...]
    tdx_modules: tuple[TdxModuleIdentity, ...] = field(default=())

    def document(self, dates: DocumentDates) -> str:
        tdx = self.tee == "tdx"
        info: dict[str, Any] = {
            "id": "TDX" if tdx else "SGX",
            "version": 3,
            "issueDate": timestamp(dates.issue_date),
            "nextUpdate": timestamp(dates.next_update),
            "fmspc": self.fmspc.hex().upper(),
            "pceId": self.pce_id.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": dates.tcb_evaluation_data_number,
        }
        if tdx:
            info["tdxModule"] = {
                "mrsigner": bytes(48).hex().upper(),
                "attributes": bytes(8).hex().upper(),
                "attributesMask": (b"\xff" * 8).hex().upper(),
            }
            info["tdxModuleIdentities"] = [m.to_json(dates.issue_date) for m in self.tdx_modules]
        info["tcbLevels"] = [lvl.to_json(tdx, dates.issue_date) for lvl in self.levels]
        return _dumps(info)


@dataclass(frozen=True)
class QeIdentitySpec:
    """Contents of an enclave identity v2 document for the QE (SGX) or the TD QE (TDX)."""

    tee: str
    levels: tuple[EnclaveLevel, ...]
    mrsigner: bytes
    isv_prod_id: int

    def document(self, dates: DocumentDates) -> str:
        return _dumps(
            {
                "id": "TD_QE" if self.tee == "tdx" else "QE",
                "version": 2,
                "issueDate": timestamp(dates.issue_date),
                "nextUpdate": timestamp(dates.next_update),
                "tcbEvaluationDataNumber": dates.tcb_evaluation_data_number,
                "miscselect": QE_MISCSELECT,
                "miscselectMask": QE_MISCSELECT_MASK,
                "attributes": QE_ATTRIBUTES,
                "attributesMask": QE_ATTRIBUTES_MASK,
                "mrsigner": self.mrsigner.hex().upper(),
                "isvprodid": self.isv_prod_id,
                "tcbLevels": [lvl.to_json(dates.issue_date) for lvl in self.levels],
            }
        )


def sign_document(key: ec.EllipticCurvePrivateKey, text: str) -> str:
    """Hex of the raw r||s signature over the document's exact bytes, as PCS publishes it."""
    return sign_raw(key, text.encode()).hex()
