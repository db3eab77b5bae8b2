"""The evidence verifier contract: the one door every TEE's evidence enters through.

An attestation type (``affidavit.attestation_types``) names a factory that builds an
:class:`EvidenceVerifier` once per worker. The service's pipeline (``affidavit.service.pipeline``) then,
for every request:

1. ``parse(EvidenceInput)`` -- untrusted bytes to the verifier's own parsed form (pure; raises an
   ``EvidenceError`` subclass with a stable code). It runs on the event loop, so it must stay cheap
   (decoding only; signature and chain checks belong in ``verify``);
2. ``await collateral(parsed)`` -- the only step that may do I/O (Intel PCS, AMD KDS, a directory); a type
   that needs none returns ``None``;
3. ``verify(parsed, collateral, now, options)`` -- pure and CPU-bound; the pipeline runs it in a worker
   thread, or on the event loop once one of the same type against the same collateral object measured
   under a millisecond (``service.pipeline.Placement``). The verifier holds its trust anchors and
   caches; ``now`` is the evidence-time clock. The result is a :class:`VerifiedEvidence`.

Everything after that is the pipeline's, identical for every type: the runtime/init-time data bindings
(``SHA-256(data) == target[:32]``), the policy's incoming claims, the policy, the token claims, the
lifetime and the signature. A verifier never builds a token and never sees the request's runtime data.

Concurrency: ``verify`` may be called from several threads at once. A verifier whose caches are not
thread-safe serialises itself (a lock inside ``verify``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "CustomClaim",
    "EvidenceInput",
    "EvidenceVerifier",
    "VerifiedEvidence",
    "VerifierHost",
    "VerifyOptions",
]


@dataclass(frozen=True)
class EvidenceInput:
    """What the request shape hands the verifier; all of it untrusted.

    - ``evidence``: the evidence bytes as submitted (after the request's base64), e.g. an SGX quote, an
      Open Enclave report, the SEV-SNP ``report`` JSON bytes.
    - ``document``: a shape that decodes a JSON structure itself passes it here (the TPM protocol's
      ``att_data``); ``None`` for the MAA JSON shape.
    - ``nonce``: freshness the evidence must carry, chosen by the service (the TPM quote's qualifying
      data); ``None`` when the shape has no challenge.
    """

    evidence: bytes
    document: Mapping[str, Any] | None = None
    nonce: bytes | None = None


@dataclass(frozen=True)
class VerifyOptions:
    """What steers one verification besides the evidence.

    - ``properties``: the policy's configuration-rule properties over ``policy.PROPERTY_DEFAULTS``
      (``require_valid_aik_cert``, ``required_pcr_mask``, ``x-ms-sgx-tcbidentifier``, ...); a verifier
      reads the ones it knows and ignores the rest.
    - ``collateral_grace``: how long past ``nextUpdate`` collateral may still be used (operator flag).
    """

    properties: Mapping[str, Any] = field(default_factory=dict)
    collateral_grace: timedelta = timedelta(0)


@dataclass(frozen=True)
class CustomClaim:
    """A claim the attester asserts about itself (issuer ``CustomClaim`` for the policy; TPM's
    ``custom_claims``). Never a token claim unless the policy issues it."""

    name: str
    value: str | int | bool
    value_type: str = "String"  # String | Integer | Boolean


@dataclass(frozen=True)
class VerifiedEvidence:
    """What verification established, in MAA's claim names, before any policy runs.

    - ``claims``: incoming claims that are also token claims (``x-ms-sgx-mrenclave``, ``tdx_mrtd``,
      ``aikValidated``, ``x-ms-sevsnpvm-launchmeasurement``, ...). Scalars, lists of scalars, or JSON
      objects. Must not use the names the pipeline writes (``x-ms-ver``, ``x-ms-attestation-type``,
      the type's TCB/advisory/collateral claims, runtime/init-time claims, ``iss``/``iat``/...).
    - ``policy_claims``: incoming claims the policy sees but the token does not carry (TPM's ``events``,
      ``bootEvents``, ``pcrs`` documents).
    - ``custom_claims``: the attester's own assertions (issuer ``CustomClaim``).
    - ``runtime_target`` / ``inittime_target``: what ``runtimeData`` / ``initTimeData`` bind to: the
      pipeline requires ``SHA-256(data) == target[:32]`` (SGX/TDX report data and CONFIGID/MRCONFIGID,
      SEV-SNP REPORT_DATA and HOST_DATA). ``None``: the evidence has nothing to bind to, so data supplied
      anyway is refused.
    - ``collateral_hashes``: lower-case hex SHA-256 of the evidence and each collateral item, emitted
      under the type's collateral claim(s) (``x-ms-sgx-collateral``, ``x-ms-collateral``).
    - ``tcb_status`` / ``advisory_ids``: the vendor's verdict on the platform's TCB, emitted under the
      type's TCB-status and advisory claims. ``None``: the type has no TCB status (TPM).
    """

    claims: Mapping[str, Any]
    policy_claims: Mapping[str, Any] = field(default_factory=dict)
    custom_claims: tuple[CustomClaim, ...] = ()
    runtime_target: bytes | None = None
    inittime_target: bytes | None = None
    collateral_hashes: Mapping[str, str] = field(default_factory=dict)
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()


P = TypeVar("P")
C = TypeVar("C")


@runtime_checkable
class EvidenceVerifier(Protocol[P, C]):
    """One attestation type's verifier (see the module docstring for the order of calls)."""

    def parse(self, submitted: EvidenceInput) -> P:
        """Decode untrusted evidence; an ``EvidenceError`` (stable ``code``) for anything malformed."""
        ...

    async def collateral(self, parsed: P) -> C:
        """The collateral ``parsed`` needs (the only I/O); ``CollateralError`` when unavailable."""
        ...

    def verify(self, parsed: P, collateral: C, now: datetime, options: VerifyOptions) -> VerifiedEvidence:
        """Pure: check signatures, chains, validity at ``now`` and the vendor's baseline."""
        ...


class VerifierHost(Protocol):
    """What a verifier factory (``AttestationType.verifier``) may use when it builds the verifier, once
    per worker: the service's configuration (``ServiceConfig``: ``trust_roots``, ``extra``,
    ``data_dir``, ...) and the evidence-time clock (for collateral providers)."""

    @property
    def config(self) -> Any: ...

    def evidence_clock(self) -> datetime: ...
