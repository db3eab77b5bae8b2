"""Intel's signed JSON collateral documents: TCB Info (v2, v3; SGX and TDX) and Enclave Identity (v2).

These parse the exact signed bytes into frozen dataclasses; the signature over those bytes is checked
by the verifier, never here. Hex fields become bytes, dates become aware datetimes.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from affidavit import strict_json
from affidavit.evidence import EvidenceError
from affidavit.timefmt import parse_time

# Intel's TCB statuses (TCB Info levels; Enclave Identity levels), best first: the one list.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
ENCLAVE_STATUSES = ("UpToDate", "OutOfDate", "Revoked")
PLATFORM_STATUSES = frozenset(TCB_STATUSES)
IDENTITY_STATUSES = frozenset(ENCLAVE_STATUSES)


def _fail(message: str) -> EvidenceError:
    return EvidenceError(message, code="collateral_malformed")


class _Obj:
    """Typed access to one JSON object, with error messages naming the document and field."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(f"{where} must be a JSON object")
        self.d = value
        self.where = where

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.d:
            if optional:
                return None
            raise _fail(f"{self.where}: missing field {key!r}")
        v = self.d[key]
        if isinstance(v, bool) and kind is not bool:
            raise _fail(f"{self.where}.{key} has the wrong type")
        if not isinstance(v, kind):
            raise _fail(f"{self.where}.{key} has the wrong type")
        return v

    def int(
        self, key: str, *, optional: bool = False, limit: builtins.int = 0xFFFF
    ) -> builtins.int | None:
        v: builtins.int | None = self.get(key, builtins.int, optional=optional)
        if v is not None and not 0 <= v <= limit:
            raise _fail(f"{self.where}.{key} out of range: {v}")
        return v

    def hex(self, key: str, size: builtins.int) -> bytes:
        v = self.get(key, str)
        try:
            b = bytes.fromhex(v)
        except ValueError:
            raise _fail(f"{self.where}.{key} is not hex") from None
        if len(b) != size:
            raise _fail(f"{self.where}.{key} must be {size} bytes, found {len(b)}")
        return b

    def date(self, key: str) -> datetime:
        v = self.get(key, str)
        try:
            return parse_time(v)  # a zone required (none: ValueError), the result in UTC
        except ValueError:
            raise _fail(f"{self.where}.{key} is not an ISO-8601 date with a time zone: {v!r}") from None

    def status(self, key: str, allowed: frozenset[str]) -> str:
        v: str = self.get(key, str)
        if v not in allowed:
            raise _fail(f"{self.where}.{key}: unknown status {v!r}")
        return v

    def advisories(self) -> tuple[str, ...]:
        v = self.get("advisoryIDs", list, optional=True) or []
        if not all(isinstance(a, str) for a in v):
            raise _fail(f"{self.where}.advisoryIDs must be strings")
        return tuple(v)

    def list(self, key: str, *, optional: bool = False) -> list[Any]:
        return self.get(key, list, optional=optional) or []


@dataclass(frozen=True, slots=True)
class TcbLevel:
    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdentityTcbLevel:
    """A level of an enclave identity or a TDX module identity: ISVSVN → status."""

    isvsvn: int
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    id: str  # "TDX_01", ...; "" for the version-0 `tdxModule` entry
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[IdentityTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    id: str  # "SGX" or "TDX" ("SGX" for v2, which has no id)
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    id: str  # "QE", "TD_QE", "QVE", "QAE"
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    tcb_levels: tuple[IdentityTcbLevel, ...]


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(f"{what} is not valid JSON: {exc}") from None


def _identity_levels(obj: _Obj) -> tuple[IdentityTcbLevel, ...]:
    levels = []
    for i, item in enumerate(obj.list("tcbLevels")):
        lv = _Obj(item, f"{obj.where}.tcbLevels[{i}]")
        tcb = _Obj(lv.get("tcb", dict), f"{lv.where}.tcb")
        levels.append(
            IdentityTcbLevel(
                isvsvn=tcb.int("isvsvn"),  # type: ignore[arg-type]
                tcb_date=lv.date("tcbDate"),
                status=lv.status("tcbStatus", IDENTITY_STATUSES),
                advisory_ids=lv.advisories(),
            )
        )
    if not levels:
        raise _fail(f"{obj.where} has no tcbLevels")
    # QVL keeps levels in a set ordered by ISVSVN, highest first; PCS publishes them that way too.
    return tuple(sorted(levels, key=lambda lv: lv.isvsvn, reverse=True))


def _module(obj: _Obj, ident: str, *, with_levels: bool) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=ident,
        mrsigner=obj.hex("mrsigner", 48),
        attributes=obj.hex("attributes", 8),
        attributes_mask=obj.hex("attributesMask", 8),
        tcb_levels=_identity_levels(obj) if with_levels else (),
    )


def _components(tcb: _Obj, key: str) -> tuple[int, ...]:
    comps = tcb.list(key)
    if len(comps) != 16:
        raise _fail(f"{tcb.where}.{key} must have 16 entries, found {len(comps)}")
    return tuple(_Obj(c, f"{tcb.where}.{key}[{i}]").int("svn", limit=255) for i, c in enumerate(comps))  # type: ignore[misc]


def parse_tcb_info(raw: bytes) -> TcbInfo:
    """Parse the exact signed ``tcbInfo`` JSON text (version 2 or 3)."""
    o = _Obj(_load_json(raw, "TCB Info"), "tcbInfo")
    version = o.int("version")
    if version not in (2, 3):
        raise _fail(f"TCB Info version {version} is not supported (2 or 3)")
    ident = "SGX" if version == 2 else o.get("id", str)
    if ident not in ("SGX", "TDX"):
        raise _fail(f"TCB Info id {ident!r} is neither SGX nor TDX")
    levels = []
    for i, item in enumerate(o.list("tcbLevels")):
        lv = _Obj(item, f"tcbInfo.tcbLevels[{i}]")
        tcb = _Obj(lv.get("tcb", dict), f"{lv.where}.tcb")
        if version == 2:
            sgx = tuple(tcb.int(f"sgxtcbcomp{n:02d}svn", limit=255) for n in range(1, 17))
            tdx = None
        else:
            sgx = _components(tcb, "sgxtcbcomponents")
            tdx = _components(tcb, "tdxtcbcomponents") if ident == "TDX" else None
        levels.append(
            TcbLevel(
                sgx_components=sgx,  # type: ignore[arg-type]
                pcesvn=tcb.int("pcesvn"),  # type: ignore[arg-type]
                tdx_components=tdx,
                tcb_date=lv.date("tcbDate"),
                status=lv.status("tcbStatus", PLATFORM_STATUSES),
                advisory_ids=lv.advisories(),
            )
        )
    if not levels:
        raise _fail("tcbInfo has no tcbLevels")
    # QVL orders levels descending by (SGX components, PCESVN, TDX components); PCS publishes that order.
    levels.sort(key=lambda lv: (lv.sgx_components, lv.pcesvn, lv.tdx_components or ()), reverse=True)
    module = None
    identities: list[TdxModuleIdentity] = []
    if ident == "TDX":
        m = o.get("tdxModule", dict, optional=True)
        if m is not None:
            module = _module(_Obj(m, "tcbInfo.tdxModule"), "", with_levels=False)
        for i, item in enumerate(o.list("tdxModuleIdentities", optional=True)):
            mo = _Obj(item, f"tcbInfo.tdxModuleIdentities[{i}]")
            identities.append(_module(mo, mo.get("id", str), with_levels=True))
    return TcbInfo(
        id=ident,
        version=version,
        issue_date=o.date("issueDate"),
        next_update=o.date("nextUpdate"),
        fmspc=o.hex("fmspc", 6),
        pce_id=o.hex("pceId", 2),
        tcb_type=o.int("tcbType"),  # type: ignore[arg-type]
        tcb_evaluation_data_number=o.int("tcbEvaluationDataNumber", limit=2**31),  # type: ignore[arg-type]
        tcb_levels=tuple(levels),
        tdx_module=module,
        tdx_module_identities=tuple(identities),
    )


def parse_enclave_identity(raw: bytes) -> EnclaveIdentity:
    """Parse the exact signed ``enclaveIdentity`` JSON text (version 2)."""
    o = _Obj(_load_json(raw, "Enclave Identity"), "enclaveIdentity")
    version = o.int("version")
    if version != 2:
        raise _fail(f"Enclave Identity version {version} is not supported (2)")
    return EnclaveIdentity(
        id=o.get("id", str),
        version=version,
        issue_date=o.date("issueDate"),
        next_update=o.date("nextUpdate"),
        tcb_evaluation_data_number=o.int("tcbEvaluationDataNumber", limit=2**31),  # type: ignore[arg-type]
        miscselect=o.hex("miscselect", 4),
        miscselect_mask=o.hex("miscselectMask", 4),
        attributes=o.hex("attributes", 16),
        attributes_mask=o.hex("attributesMask", 16),
        mrsigner=o.hex("mrsigner", 32),
        isvprodid=o.int("isvprodid"),  # type: ignore[arg-type]
        tcb_levels=_identity_levels(o),
    )
