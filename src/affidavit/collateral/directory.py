"""Offline collateral: a directory tree of files in dcap-qvl's ``QuoteCollateralV3`` JSON form.

Files are indexed once, at construction, by what they serve: FMSPC (from the TCB info), PCK CA type
(from the PCK CRL issuer) and TEE (TCB info ``id``: SGX or TDX). A tree may hold several files for one
platform (monthly snapshots, Intel's standard and early updates); ``get`` picks the one whose whole
validity window (TCB info, QE identity and both CRLs) contains the provider's clock, the most recently
issued if several do. When none does, it returns the closest one anyway so that the verifier, which
owns the freshness check, reports the precise reason. Anything that is not collateral is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from affidavit import strict_json
from affidavit.collateral import CollateralError
from affidavit.collateral.items import parse_time
from affidavit.evidence.dcap.names import pck_ca_kind

if TYPE_CHECKING:
    from affidavit.evidence.dcap import Platform

_REQUIRED_KEYS = frozenset(
    {"pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info", "tcb_info_signature", "qe_identity"}
)
_MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class CollateralFile:
    """One collateral file and what it serves."""

    path: Path
    fmspc: str  # upper-case hex
    ca: str  # "processor" | "platform"
    tee: str  # "sgx" | "tdx"
    not_before: datetime
    not_after: datetime
    issued: datetime

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when <= self.not_after


def _time(text: str) -> datetime:
    try:
        return parse_time(text, "date")
    except CollateralError as exc:
        raise ValueError(exc.message) from None  # index_file: not a collateral file


def _crl_window(hex_der: str) -> tuple[datetime, datetime, str | None]:
    crl = x509.load_der_x509_crl(bytes.fromhex(hex_der))
    issuer_cn = [a.value for a in crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)]
    nxt = crl.next_update_utc or datetime.max.replace(tzinfo=UTC)
    return crl.last_update_utc, nxt, (str(issuer_cn[0]) if issuer_cn else None)


def index_file(path: Path) -> CollateralFile | None:
    """What ``path`` serves, or None when it is not a collateral file in the offline JSON form."""
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            return None
        obj = strict_json.loads(path.read_bytes())
        if not isinstance(obj, dict) or not _REQUIRED_KEYS <= obj.keys():
            return None
        tcb = strict_json.loads(obj["tcb_info"])
        qe = strict_json.loads(obj["qe_identity"])
        pck_from, pck_to, issuer = _crl_window(obj["pck_crl"])
        root_from, root_to, _ = _crl_window(obj["root_ca_crl"])
        ca = pck_ca_kind(issuer or "")
        if ca is None:
            return None
        tee = "tdx" if str(tcb.get("id", "SGX")).upper() == "TDX" else "sgx"
        tcb_from, tcb_to = _time(tcb["issueDate"]), _time(tcb["nextUpdate"])
        qe_from, qe_to = _time(qe["issueDate"]), _time(qe["nextUpdate"])
        return CollateralFile(
            path=path,
            fmspc=str(tcb["fmspc"]).upper(),
            ca=ca,
            tee=tee,
            not_before=max(tcb_from, qe_from, pck_from, root_from),
            not_after=min(tcb_to, qe_to, pck_to, root_to),
            issued=max(tcb_from, qe_from),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _best(candidates: list[CollateralFile], when: datetime) -> CollateralFile:
    valid = [c for c in candidates if c.valid_at(when)]
    if valid:
        return max(valid, key=lambda c: (c.issued, str(c.path)))
    earlier = [c for c in candidates if c.not_before <= when]
    if earlier:  # expired: the newest of those, so the verifier names the expiry
        return max(earlier, key=lambda c: (c.issued, str(c.path)))
    return min(candidates, key=lambda c: (c.not_before, str(c.path)))  # all in the future


class DirectoryProvider:
    """Collateral from a directory tree (or a single file) of offline JSON collateral files."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None) -> None:
        root = Path(path)
        if not root.exists():
            raise CollateralError(f"collateral directory {root} does not exist")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if p.is_file())
        self.files: tuple[CollateralFile, ...] = tuple(f for f in map(index_file, files) if f is not None)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._by_platform: dict[tuple[str, str, str], list[CollateralFile]] = {}
        for f in self.files:
            self._by_platform.setdefault((f.fmspc, f.ca, f.tee), []).append(f)
        self._loaded: dict[Path, Any] = {}

    def select(self, fmspc: str, ca: str, tee: str = "sgx", when: datetime | None = None) -> CollateralFile:
        """The file to use for a platform at ``when`` (default: the provider's clock)."""
        candidates = self._by_platform.get((fmspc.upper(), ca, tee))
        if not candidates:
            raise CollateralError(
                f"no collateral for FMSPC {fmspc.upper()} ({tee}, {ca} CA) in the collateral directory",
                code="collateral_not_found",
            )
        return _best(candidates, when or self._clock())

    async def get(self, platform: Platform) -> Any:
        chosen = self.select(platform.fmspc, platform.ca, getattr(platform, "tee", "sgx"))
        loaded = self._loaded.get(chosen.path)
        if loaded is None:
            from affidavit.evidence import EvidenceError
            from affidavit.evidence.dcap import load_collateral

            try:
                loaded = load_collateral(chosen.path.read_bytes())
            except (OSError, EvidenceError) as exc:
                raise CollateralError(f"cannot load collateral {chosen.path.name}: {exc}") from exc
            self._loaded[chosen.path] = loaded
        return loaded
