"""The attestation pipeline: evidence → DCAP verification → incoming claims → policy → token claims.

Pure apart from the collateral lookup: the caller passes the state's verifier, provider, clocks and the
policy to apply, so the same function serves the HTTP routes, tests and the benchmark.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from affidavit.jose import b64url
from affidavit.service.decode import AttestRequest, DataField
from affidavit.service.errors import INVALID_PARAMETER, POLICY_EVALUATION, ServiceError

ATTESTATION_TOKEN_SECONDS = 8 * 3600
MAX_VALIDITY_MINUTES = 365 * 24 * 60

# MAA's deprecated incoming names (maa-policy §6.1), still supplied to policies.
_SGX_ALIASES = {
    "$is-debuggable": "x-ms-sgx-is-debuggable",
    "$sgx-mrsigner": "x-ms-sgx-mrsigner",
    "$sgx-mrenclave": "x-ms-sgx-mrenclave",
    "$product-id": "x-ms-sgx-product-id",
    "$svn": "x-ms-sgx-svn",
    "$tee": "x-ms-attestation-type",
}


@dataclass(frozen=True)
class EvidenceKind:
    """What one attest endpoint accepts and how its token is labelled."""

    policy_type: str  # SgxEnclave | OpenEnclave | TdxVm
    tee: str  # the quote's TEE: sgx | tdx
    attestation_type: str  # x-ms-attestation-type: sgx | tdxvm
    tcb_status_claim: str
    advisory_ids_claim: str


SGX_ENCLAVE = EvidenceKind("SgxEnclave", "sgx", "sgx", "x-ms-sgx-tcb-status", "x-ms-sgx-advisory-ids")
OPEN_ENCLAVE = EvidenceKind("OpenEnclave", "sgx", "sgx", "x-ms-sgx-tcb-status", "x-ms-sgx-advisory-ids")
TDX_VM = EvidenceKind("TdxVm", "tdx", "tdxvm", "attester_tcb_status", "attester_advisory_ids")


@dataclass(frozen=True)
class PolicyChoice:
    """The policy an attestation runs under: its text, and the signer certificate (DER) if it was signed."""

    text: str
    signer_jwk: Mapping[str, Any] | None = None
    draft: bool = False


@dataclass(frozen=True)
class Verified:
    """What evidence verification established, before the policy runs."""

    incoming: dict[str, Any]  # claim type -> value; lists become one claim per element
    token_claims: dict[str, Any]  # service-emitted token claims (everything but iss/iat/jti/policy)


def _check_binding(field: DataField | None, target: bytes | None, what: str, against: str) -> None:
    if field is None or field.data is None:
        return
    if target is None:
        raise ServiceError(
            f"{what} given but the evidence has no {against} to bind it to", code=INVALID_PARAMETER
        )
    if not hmac.compare_digest(hashlib.sha256(field.data).digest(), target[:32]):
        raise ServiceError(
            f"SHA-256 of {what} does not match the first 32 bytes of the evidence's {against}",
            code=INVALID_PARAMETER,
        )


def _config_id(result: Any) -> bytes | None:
    """The enclave's CONFIGID (SGX) or the TD's MRCONFIGID: what initTimeData binds to; None when zero."""
    body = result.quote.body
    raw = bytes(getattr(body, "mr_config_id", None) or getattr(body, "config_id", b""))
    return raw if any(raw) else None


def verified_claims(
    kind: EvidenceKind, result: Any, submitted: bytes, request: AttestRequest
) -> Verified:
    """Check the runtime/init-time bindings and derive incoming and token claims from a ``DcapResult``."""
    evidence_claims: dict[str, Any] = dict(result.claims)
    _check_binding(request.runtime, bytes(result.report_data), "runtimeData", "report data")
    _check_binding(request.inittime, _config_id(result), "initTimeData", "config id")

    collateral = dict(result.collateral_hashes)
    collateral["quotehash"] = hashlib.sha256(submitted).hexdigest()
    advisories = list(result.advisory_ids)
    token: dict[str, Any] = {
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": kind.attestation_type,
        **evidence_claims,
        kind.tcb_status_claim: result.tcb_status,
        kind.advisory_ids_claim: advisories,
    }
    if kind.tee == "sgx":
        token["x-ms-sgx-collateral"] = collateral
        token["maa-attestationcollateral"] = collateral
    else:
        token["x-ms-collateral"] = collateral
    if request.runtime is not None and request.runtime.data is not None:
        if request.runtime.data_type == "JSON":
            token["x-ms-runtime"] = request.runtime.json_value
        elif kind.tee == "sgx":
            ehd = b64url(request.runtime.data)
            token.update({"x-ms-sgx-ehd": ehd, "aas-ehd": ehd, "maa-ehd": ehd})
        else:
            token["x-ms-runtime-data"] = b64url(request.runtime.data)
    if request.inittime is not None and request.inittime.data is not None:
        if request.inittime.data_type == "JSON":
            token["x-ms-inittime"] = request.inittime.json_value
        else:
            token["x-ms-inittime-data"] = b64url(request.inittime.data)

    incoming = dict(token)
    if kind.tee == "sgx":
        for alias, name in _SGX_ALIASES.items():
            if name in incoming:
                incoming[alias] = incoming[name]
    return Verified(incoming=incoming, token_claims=token)


_SCALAR_TYPES = {bool: "Boolean", int: "Integer", str: "String"}


class ClaimCache:
    """Interned incoming ``Claim`` objects: they are immutable and a fleet's evidence repeats most values
    (measurements, TCB status, collateral), so reuse beats building ~30 frozen dataclasses per request."""

    def __init__(self, max_entries: int = 65536) -> None:
        self._max = max_entries
        self._claims: dict[tuple[str, type, Any], Any] = {}

    def get(self, name: str, value: Any) -> Any:
        key = (name, type(value), value)
        claim = self._claims.get(key)
        if claim is None:
            from affidavit.policy import Claim

            claim = Claim(name, value, _SCALAR_TYPES[type(value)])
            if len(self._claims) >= self._max:
                self._claims.clear()
            self._claims[key] = claim
        return claim


def incoming_claim_list(
    incoming: Mapping[str, Any],
    extra: Mapping[str, Any],
    cache: ClaimCache | None = None,
    custom: Sequence[tuple[str, Any, str]] = (),
) -> list[Any]:
    """The policy's incoming claims, the one place they are assembled for every attestation type.

    ``incoming`` and ``extra`` are what the service established (issuer ``AttestationService``): scalars
    as typed claims, JSON objects as compact JSON text, lists of scalars as one claim per element (so a
    policy can match a single advisory ID). ``custom`` is what the client merely asserted, as
    ``(name, value, value_type)``: those claims get issuer ``CustomClaim`` and a type behind
    ``policy.CUSTOM_CLAIM_PREFIX``, so they never match a rule written for a service claim."""
    from affidavit.policy import claims_from_mapping, custom_claim

    get = (cache or ClaimCache()).get
    claims: list[Any] = []
    for source in (incoming, extra):
        for name, value in source.items():
            if type(value) in _SCALAR_TYPES:
                claims.append(get(name, value))
            elif isinstance(value, list) and all(type(v) in _SCALAR_TYPES for v in value):
                claims.extend(get(name, v) for v in value)
            else:
                claims.extend(claims_from_mapping({name: value}))
    claims.extend(custom_claim(name, value, vtype) for name, value, vtype in custom)
    return claims


def _lifetime_seconds(properties: Mapping[str, Any], cap: int) -> int:
    """8 hours, or the policy's ``report_validity_in_minutes``; never more than ``cap`` (how long a
    retired signing key stays in ``/certs``), so that every token stays verifiable until it expires."""
    minutes = properties.get("report_validity_in_minutes")
    if isinstance(minutes, list):
        minutes = minutes[-1] if minutes else None
    seconds = ATTESTATION_TOKEN_SECONDS
    if isinstance(minutes, int) and not isinstance(minutes, bool) and 0 < minutes <= MAX_VALIDITY_MINUTES:
        seconds = minutes * 60
    return min(seconds, cap)


def token_claims(
    verified: Verified,
    policy: PolicyChoice,
    compiled: Any,
    *,
    issuer: str,
    now: datetime,
    nonce: str | None,
    max_lifetime: int = ATTESTATION_TOKEN_SECONDS,
    claim_cache: ClaimCache | None = None,
) -> dict[str, Any]:
    """Run the policy over the incoming claims and assemble the token's claims (maa-api §6.2)."""
    from affidavit.policy import evaluate, explain, policy_hash

    phash = getattr(compiled, "hash", None) or policy_hash(policy.text)
    extra: dict[str, Any] = {"x-ms-policy-hash": phash}
    if policy.signer_jwk is not None:
        extra["x-ms-policy-signer"] = dict(policy.signer_jwk)
    incoming = incoming_claim_list(verified.incoming, extra, claim_cache)
    trace = None
    if policy.draft:  # the caller wrote this policy: trace every rule, literals included
        explanation = explain(compiled, incoming, reveal_policy=True)
        outcome, trace = explanation.outcome, explanation.to_dict()["rules"]
    else:
        outcome = evaluate(compiled, incoming)
    if not outcome.authorized:
        raise denial_error(compiled, incoming, draft=policy.draft)
    iat = int(now.timestamp())
    issued = dict(outcome.claims)
    claims: dict[str, Any] = dict(issued)  # service claims below win over same-named policy claims
    claims.update(verified.token_claims)
    claims.update(extra)
    claims.update(
        {
            "jti": secrets.token_hex(32),
            "iss": issuer,
            "iat": iat,
            "nbf": iat,
            "exp": iat + _lifetime_seconds(outcome.properties, max_lifetime),
        }
    )
    if issued:
        claims["x-ms-policy"] = issued
    if nonce is not None:
        claims["nonce"] = nonce
    if trace is not None:
        claims[TRACE_CLAIM] = trace
    return claims


TRACE_CLAIM = "affidavit-policy-trace"  # in draft-policy tokens only: every rule's trace (docs/service.md)


def denial_error(compiled: Any, incoming: Any, *, draft: bool = False) -> ServiceError:
    """The 400 a denial gets: MAA's reason plus the rules that did not match and why (explain runs only
    here, on the refusal path). Only evidence values are shown unless the caller wrote the policy."""
    from affidavit.policy import explain

    explanation = explain(compiled, incoming, reveal_policy=draft)
    message = f"the attestation policy did not authorize: {explanation.denial_message(reveal_policy=draft)}"
    details = {"trace": explanation.to_dict()["rules"]} if draft else None
    return ServiceError(message, code=POLICY_EVALUATION, details=details)
