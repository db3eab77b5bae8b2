"""The TPM verification entry point: quote(s), AK trust, event log, claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.aik import (
    ChainCache,
    PublicKey,
    TpmTrust,
    load_certificate,
    spki_der,
    verify_ak_certificate,
)
from affidavit.evidence.tpm.analysis import LogAnalysis, analyze_log
from affidavit.evidence.tpm.claims import derive_claims
from affidavit.evidence.tpm.errors import (
    EventDataError,
    EventLogReplayError,
    TpmAkError,
    TpmError,
    TpmFormatError,
    TpmPcrError,
)
from affidavit.evidence.tpm.maa_json import EventCache
from affidavit.evidence.tpm.quote import (
    check_nonce,
    check_pcr_digest,
    check_quote_structure,
    verify_signature,
)
from affidavit.evidence.tpm.replay import PcrValues
from affidavit.evidence.tpm.structures import (
    Attest,
    TpmPublic,
    key_sha256_b64,
    parse_attest,
    parse_public,
    parse_signature,
)

DEFAULT_REQUIRED_PCR_MASK = 0xFFFFFF


@dataclass(frozen=True)
class TpmEvidence:
    """What a client sends. ``pcrs``: bank (name like "sha256" or TPM_ALG_ID) -> PCR index -> value.

    ``ak_public`` is a TPM2B_PUBLIC / TPMT_PUBLIC (preferred: its attributes prove a restricted key) or
    a ``cryptography`` public key (MAA's ``aik_pub`` JWK). ``more_quotes`` holds further
    (TPMS_ATTEST, TPMT_SIGNATURE) pairs by the same AK, e.g. one quote per bank (go-tpm-tools).
    """

    quote: bytes
    signature: bytes
    pcrs: Mapping[str | int, Mapping[int, bytes]]
    ak_public: bytes | PublicKey | None = None
    ak_certificate: bytes | None = None
    ak_intermediates: tuple[bytes, ...] = ()
    event_log: bytes | None = None
    more_quotes: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True)
class TpmResult:
    claims: dict[str, Any]  # MAA incoming claims; `events`, `bootEvents`, `pcrs` are JSON values (dicts)
    attest: Attest  # the (first) quote
    ak: TpmPublic
    aik_validated: bool
    pcrs: PcrValues  # quoted PCR values (checked against the pcrDigest)
    analysis: LogAnalysis | None
    covered_pcrs: frozenset[int] = field(default_factory=frozenset)  # log PCRs bound by the quote

    @property
    def replayed(self) -> PcrValues:
        return self.analysis.replayed if self.analysis else {}


def _normalise_pcrs(pcrs: Mapping[str | int, Mapping[int, bytes]]) -> PcrValues:
    out: PcrValues = {}
    for bank, values in pcrs.items():
        if isinstance(bank, int):
            name = c.HASH_NAMES.get(bank)
        else:
            name = bank.lower().replace("-", "") if bank.lower().replace("-", "") in c.HASH_IDS else None
        if name is None:
            raise TpmFormatError(f"unknown PCR bank {bank!r}")
        if name in out:
            raise TpmFormatError(f"PCR bank {name} given twice")
        out[name] = {int(i): bytes(v) for i, v in values.items()}
    return out


def public_from_key(key: PublicKey) -> TpmPublic:
    """A TpmPublic for a bare key (no TPM attributes known, no fixed scheme)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return TpmPublic(b"", c.ALG_RSA, c.ALG_NULL, 0, b"", c.ALG_NULL, c.ALG_NULL, key.key_size, 0, key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": c.ECC_NIST_P256, "secp384r1": c.ECC_NIST_P384, "secp521r1": c.ECC_NIST_P521}
        curve = curves.get(key.curve.name)
        if curve is None:
            raise TpmFormatError(f"unsupported AK curve {key.curve.name}")
        return TpmPublic(
            b"", c.ALG_ECC, c.ALG_NULL, 0, b"", c.ALG_NULL, c.ALG_NULL, key.curve.key_size, curve, key
        )
    raise TpmFormatError("the AK public key is neither RSA nor ECC")


def _resolve_ak(evidence: TpmEvidence, cert: x509.Certificate | None) -> TpmPublic:
    if isinstance(evidence.ak_public, bytes | bytearray):
        ak = parse_public(bytes(evidence.ak_public))
        if not ak.is_restricted_signing():
            raise TpmAkError(
                f"the AK is not a restricted signing key (attributes 0x{ak.object_attributes:08x})"
            )
    elif evidence.ak_public is not None:
        ak = public_from_key(evidence.ak_public)
    elif cert is not None:
        ak = public_from_key(cert.public_key())  # type: ignore[arg-type]
    else:
        raise TpmAkError("no AK public key or AK certificate was given")
    if cert is not None and spki_der(cert.public_key()) != spki_der(ak.public_key):  # type: ignore[arg-type]
        raise TpmAkError("the AK certificate is for another key than the AK")
    return ak


@dataclass
class TpmCache:
    """What a long-lived verifier remembers: per-event work and verified AK certificate chains."""

    events: EventCache = field(default_factory=EventCache)
    chains: ChainCache = field(default_factory=ChainCache)


def _ak_trust(
    evidence: TpmEvidence,
    cert: x509.Certificate | None,
    ak: TpmPublic,
    trust: TpmTrust,
    now: datetime,
    require_valid_aik_cert: bool,
    chains: ChainCache | None,
) -> bool:
    problem = "no AK certificate was given and the AK is not registered"
    if cert is not None:
        try:
            if chains is not None and evidence.ak_certificate is not None:
                chains.verify(bytes(evidence.ak_certificate), tuple(evidence.ak_intermediates), trust, now)
            else:
                inter = [load_certificate(d) for d in evidence.ak_intermediates]
                verify_ak_certificate(cert, trust, now, inter)
            return True
        except TpmAkError as exc:
            problem = exc.message
    if spki_der(ak.public_key) in trust.registered_aks:
        return True
    if require_valid_aik_cert:
        raise TpmAkError(problem)
    return False


def verify_tpm(
    evidence: TpmEvidence,
    nonce: bytes,
    trust: TpmTrust,
    now: datetime,
    *,
    require_valid_aik_cert: bool = True,
    required_pcr_mask: int = DEFAULT_REQUIRED_PCR_MASK,
    allow_sha1_signature: bool = False,
    cache: TpmCache | None = None,
) -> TpmResult:
    """Verify TPM evidence end to end; raises a ``TpmError`` subclass (an ``EvidenceError``).

    Order: AK and its trust, each quote (magic/type, signature, nonce, PCR digest), required PCRs,
    the event log (parse, data-vs-digest of every event, replay == quoted PCRs), then claims.
    """
    cert = load_certificate(evidence.ak_certificate) if evidence.ak_certificate else None
    ak = _resolve_ak(evidence, cert)
    chains = cache.chains if cache else None
    validated = _ak_trust(evidence, cert, ak, trust, now, require_valid_aik_cert, chains)
    given = _normalise_pcrs(evidence.pcrs)
    quoted: PcrValues = {}
    first: Attest | None = None
    for quote_bytes, sig_bytes in ((evidence.quote, evidence.signature), *evidence.more_quotes):
        attest = parse_attest(quote_bytes)
        sig = parse_signature(sig_bytes)
        check_quote_structure(attest)
        verify_signature(attest.raw, sig, ak, allow_sha1=allow_sha1_signature)
        check_nonce(attest, nonce)
        for bank, values in check_pcr_digest(attest, sig, given).items():
            quoted.setdefault(bank, {}).update(values)
        first = first or attest
    assert first is not None
    quoted_mask = 0
    for values in quoted.values():
        for i in values:
            quoted_mask |= 1 << i
    if required_pcr_mask & ~quoted_mask:
        missing = [i for i in range(32) if (required_pcr_mask & ~quoted_mask) >> i & 1]
        raise TpmPcrError(f"required PCRs not quoted: {missing}")
    analysis: LogAnalysis | None = None
    covered: frozenset[int] = frozenset()
    if evidence.event_log is not None:
        analysis = analyze_log(evidence.event_log, cache.events if cache else None)
        covered = _check_log(analysis, quoted)
    claims = derive_claims(analysis, quoted, covered, cache.events if cache else None)
    claims["aikValidated"] = validated
    claims["aikPubHash"] = key_sha256_b64(ak.public_key)
    claims["tpmVersion"] = 2
    return TpmResult(claims, first, ak, validated, quoted, analysis, covered)


class TpmVerifier:
    """``verify_tpm`` with a trust configuration and a ``TpmCache`` it owns (per-event checks and JSON,
    verified AK certificate chains). Thread-safe: threads may share one (its caches are bounded dicts
    whose eviction tolerates concurrent use; at worst an entry is computed twice)."""

    def __init__(self, trust: TpmTrust, max_cache_entries: int = 16384) -> None:
        self.trust = trust
        self.cache = TpmCache(EventCache(max_cache_entries), ChainCache())

    def verify(self, evidence: TpmEvidence, nonce: bytes, now: datetime, **options: Any) -> TpmResult:
        """Same keyword options as ``verify_tpm``."""
        return verify_tpm(evidence, nonce, self.trust, now, cache=self.cache, **options)


def _check_log(analysis: LogAnalysis, quoted: PcrValues) -> frozenset[int]:
    bad = analysis.mismatches
    if bad:
        names = ", ".join(f"#{e.seq} ({e.type_name or hex(e.type)}, PCR{e.pcr})" for e in bad[:5])
        raise EventDataError(f"event data does not match its digest: {names}")
    covered: set[int] = set()
    compared_banks = 0
    for bank, values in quoted.items():
        replayed = analysis.replayed.get(bank)
        if replayed is None:
            continue
        compared_banks += 1
        for i, value in values.items():
            if i not in replayed:
                continue
            if replayed[i] != value:
                raise EventLogReplayError(f"the event log does not replay to the quoted PCR {bank}:{i}")
            covered.add(i)
    if compared_banks == 0:
        raise EventLogReplayError("no quoted PCR bank is present in the event log")
    return frozenset(covered)


__all__ = [
    "TpmCache",
    "TpmVerifier",
    "TpmEvidence",
    "TpmResult",
    "verify_tpm",
    "public_from_key",
    "TpmError",
    "DEFAULT_REQUIRED_PCR_MASK",
]
