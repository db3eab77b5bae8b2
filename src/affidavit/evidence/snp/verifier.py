"""`verify_report` (pure, uncached) and `SnpVerifier` (the same with a cache of verified chains).

Order (sev-snp.md §4): parse -> version, signing key -> chain to a pinned ARK -> validity at ``now`` ->
CRLs -> report signature -> signing key vs certificate kind, product, TCB, chip id -> options.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.evidence.snp.appraise import SnpOptions, appraise, check_version
from affidavit.evidence.snp.authenticate import (
    CrlInput,
    VerifiedChain,
    check_crl_signatures,
    check_crls,
    check_validity,
    load_crls,
    verify_chain,
    verify_report_signature,
)
from affidavit.evidence.snp.certs import CertInput, load_certificate, load_certificates
from affidavit.evidence.snp.claims import maa_claims, platform_claims
from affidavit.evidence.snp.errors import UNSIGNED_REPORT, SnpError
from affidavit.evidence.snp.report import SIGNING_KEY_NONE, SnpReport, TcbVersion, parse_report
from affidavit.evidence.snp.trust import AmdTrust

DEFAULT_OPTIONS = SnpOptions()


@dataclass(frozen=True)
class SnpResult:
    """A verified report: ``claims`` (MAA's ``x-ms-sevsnpvm-*``), ``platform_claims``
    (``x-affidavit-sevsnp-*``), the parsed ``report``, the ``product``, ``signing_key`` (VCEK|VLEK),
    ``reported_tcb`` (decoded with the product's layout) and the verified ``chain``."""

    report: SnpReport
    claims: dict[str, Any]
    product: str
    signing_key: str
    reported_tcb: TcbVersion
    chain: VerifiedChain = field(repr=False)

    @cached_property
    def platform_claims(self) -> dict[str, Any]:
        """``x-affidavit-sevsnp-*`` (built on first use: the hot path of a service may not need them)."""
        return platform_claims(self.report, self.product, self.signing_key)

    @property
    def report_data(self) -> bytes:
        return self.report.report_data

    @property
    def host_data(self) -> bytes:
        return self.report.host_data

    def to_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "signing_key": self.signing_key,
            "report_version": self.report.version,
            "reported_tcb": self.reported_tcb.to_dict(),
            "claims": dict(self.claims),
            "platform_claims": dict(self.platform_claims),
        }


def _as_report(report: bytes | SnpReport) -> SnpReport:
    return report if isinstance(report, SnpReport) else parse_report(report)


def _require_time(now: datetime | None) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    return now


def _precheck(report: SnpReport, options: SnpOptions) -> None:
    check_version(report, options)
    if report.signing_key == SIGNING_KEY_NONE:
        raise SnpError("the report is unsigned (SIGNING_KEY = 7)", code=UNSIGNED_REPORT)


def _finish(
    report: SnpReport,
    chain: VerifiedChain,
    paired_crls: list[tuple[x509.CertificateRevocationList, x509.Certificate]],
    now: datetime,
    options: SnpOptions,
) -> SnpResult:
    check_validity(chain, now)
    check_crls(chain, paired_crls, now, require=options.require_crl)
    verify_report_signature(report, chain.vek_key)
    reported = appraise(report, chain, options)
    return SnpResult(
        report=report,
        claims=maa_claims(report, reported),
        product=chain.product,
        signing_key=chain.kind,
        reported_tcb=reported,
        chain=chain,
    )


def verify_report(
    report: bytes | SnpReport,
    vek: CertInput | None = None,
    chain: CertInput | Iterable[CertInput] | None = None,
    trust: AmdTrust | None = None,
    now: datetime | None = None,
    crl: CrlInput | Iterable[CrlInput] | None = None,
    *,
    options: SnpOptions = DEFAULT_OPTIONS,
) -> SnpResult:
    """Verify one report against its VEK (VCEK or VLEK; None: take it from ``chain``), the CA certificates
    sent with it (``chain``: ASK/ASVK and ARK, PEM bundle, DER or certificates; None: the trust's
    shipped ones), pinned roots (``trust``, default AMD's), at ``now`` (aware; required), with optional
    CRLs. Returns an `SnpResult` or raises `SnpError`."""
    now = _require_time(now)
    parsed = _as_report(report)
    _precheck(parsed, options)
    verified = verify_chain(vek, chain, trust or AmdTrust.amd())
    paired = check_crl_signatures(verified, load_crls(crl))
    return _finish(parsed, verified, paired, now, options)


def _der(item: CertInput) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(Encoding.DER)
    return item.encode() if isinstance(item, str) else bytes(item)


class SnpVerifier:
    """`verify_report` with caches the caller owns: verified chains (by the certificate bytes and the
    trust) and verified CRL signatures. Time windows, CRL currency, the report signature and every
    appraisal run on each call, so a cached chain never makes an expired or revoked one pass."""

    def __init__(self, trust: AmdTrust | None = None, *, cache_size: int = 1024) -> None:
        self.trust = trust or AmdTrust.amd()
        self._size = cache_size
        self._lock = threading.Lock()  # verify may run on several threads at once
        self._chains: OrderedDict[tuple[bytes, ...], VerifiedChain] = OrderedDict()
        self._crls: OrderedDict[bytes, list[tuple[x509.CertificateRevocationList, x509.Certificate]]] = (
            OrderedDict()
        )

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        if len(cache) > self._size:
            cache.popitem(last=False)

    def chain(self, vek: CertInput | None, chain: CertInput | Iterable[CertInput] | None) -> VerifiedChain:
        # Keyed by the exact bytes given (a dict hashes them once per call; no digest needed).
        parts: list[bytes] = [b"" if vek is None else _der(vek)]
        if chain is not None:
            if isinstance(chain, bytes | bytearray | str | x509.Certificate):
                parts.append(_der(chain))
            else:
                chain = list(chain)
                parts.extend(_der(c) for c in chain)
        key = tuple(parts)
        with self._lock:
            hit = self._chains.get(key)
        if hit is None:
            hit = verify_chain(vek, chain, self.trust)
            with self._lock:
                self._remember(self._chains, key, hit)
        return hit

    def verify(
        self,
        report: bytes | SnpReport,
        vek: CertInput | None = None,
        chain: CertInput | Iterable[CertInput] | None = None,
        now: datetime | None = None,
        crl: CrlInput | Iterable[CrlInput] | None = None,
        *,
        options: SnpOptions = DEFAULT_OPTIONS,
    ) -> SnpResult:
        now = _require_time(now)
        parsed = _as_report(report)
        _precheck(parsed, options)
        verified = self.chain(vek, chain)
        paired: list[tuple[x509.CertificateRevocationList, x509.Certificate]] = []
        if crl is not None:
            crls = load_crls(crl)
            ckey = hashlib.sha256(
                b"".join(c.public_bytes(Encoding.DER) for c in crls)
                + verified.vek.fingerprint(hashes.SHA256())
            ).digest()
            with self._lock:
                cached = self._crls.get(ckey)
            if cached is None:
                cached = check_crl_signatures(verified, crls)
                with self._lock:
                    self._remember(self._crls, ckey, cached)
            paired = cached
        return _finish(parsed, verified, paired, now, options)


__all__ = ["SnpResult", "SnpVerifier", "load_certificate", "load_certificates", "verify_report"]
