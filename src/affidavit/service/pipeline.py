"""The one attestation pipeline: every attestation type's token is issued here (maa-api §6.2).

``issue(state, entry, AttestationInput)``: choose and compile the policy, run the type's
``evidence.contract.EvidenceVerifier`` (parse, collateral, verify), check the runtime/init-time data
bindings, build the incoming claims, evaluate the policy, assemble the token claims with their lifetime,
and sign. What differs between types is data in their ``attestation_types.AttestationType`` entry; what
differs between wire protocols is the request shape that builds the ``AttestationInput``.

Nothing here blocks the event loop, and work that is known to be short does not pay a thread hand-off
(each costs CPU, and a thread holding the GIL stalls the loop as much as the loop's own work). Where each
step runs is decided by measured cost (:class:`Placement`):

- parsing (cheap by contract) and the collateral fetch run on the loop;
- *warm* attestations -- the stored policy already read and compiled, the key ring in hand, and the last
  verification of this type against this very collateral object measured under
  ``INLINE_VERIFY_SECONDS`` of CPU (for DCAP: the PCK chain, the collateral's signatures and the platform's
  TCB are cached, leaving two ECDSA checks) -- verify, evaluate and build the token on the loop; the
  signature runs in the signing thread unless the key's measured signing cost is under
  ``INLINE_SIGN_SECONDS`` (a software ES256 key; RSA-2048 costs over a millisecond, and releases the GIL
  while it signs, so the loop keeps serving meanwhile);
- everything else -- the first verifications of a collateral set, one measured slow, a type without
  collateral (TPM: its logs vary per machine), a draft policy (compiled per request), a policy or key ring
  still to be read from the store, a shape's ``on_verified`` bookkeeping -- runs in one worker-thread
  call, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from affidavit.attestation_types import AttestationType
from affidavit.bounded import BoundedDict
from affidavit.evidence.contract import EvidenceInput, EvidenceVerifier, VerifiedEvidence, VerifyOptions
from affidavit.jose import b64url
from affidavit.policy import custom_claim, evaluate, explain, policy_hash
from affidavit.service.decode import DataField
from affidavit.service.errors import INVALID_PARAMETER, POLICY_EVALUATION, ServiceError
from affidavit.tokens import SoftwareSigner
from affidavit.tokens.jwt import signing_input, with_signature

if TYPE_CHECKING:
    from affidavit.service.state import ServiceState

MAX_VALIDITY_MINUTES = 365 * 24 * 60


@dataclass(frozen=True)
class PolicyChoice:
    """The policy an attestation runs under: its text, and the signer certificate (DER) if it was signed."""

    text: str
    signer_jwk: Mapping[str, Any] | None = None
    draft: bool = False


@dataclass(frozen=True)
class AttestationInput:
    """One attestation as a request shape decoded it.

    - ``evidence``: for the verifier; ``runtime`` / ``inittime``: the data the evidence must bind;
    - ``draft_policy``: evaluated instead of the stored policy (the token is then unsecured);
    - ``nonce``: echoed as the ``nonce`` claim; ``request_claims``: the shape's own token claims
      (TPM: ``cnf``, ``x-ms-tpm-request-key``, ``rp_data``), written last;
    - ``on_verified``: called (in the worker thread) once the evidence verified, before the policy: a
      shape's single-use bookkeeping (TPM spends its challenge only after the quote checked).
    """

    evidence: EvidenceInput
    runtime: DataField | None = None
    inittime: DataField | None = None
    draft_policy: str | None = None
    nonce: str | int | None = None  # echoed as sent (a number only from confidential-sidecar clients)
    request_claims: Mapping[str, Any] = field(default_factory=dict)
    on_verified: Callable[[], None] | None = None


def check_binding(given: DataField | None, target: bytes | None, what: str, against: str) -> None:
    """``SHA-256(data) == target[:32]`` (constant time); data with nothing to bind to is refused."""
    if given is None or given.data is None:
        return
    if target is None:
        raise ServiceError(
            f"{what} given but the evidence has no {against} to bind it to", code=INVALID_PARAMETER
        )
    if not hmac.compare_digest(hashlib.sha256(given.data).digest(), target[:32]):
        raise ServiceError(
            f"SHA-256 of {what} does not match the first 32 bytes of the evidence's {against}",
            code=INVALID_PARAMETER,
        )


def check_bindings(entry: AttestationType, verified: VerifiedEvidence, submitted: AttestationInput) -> None:
    """runtimeData and initTimeData against the evidence fields the entry names."""
    check_binding(submitted.runtime, verified.runtime_target, "runtimeData", entry.runtime_target_name)
    check_binding(submitted.inittime, verified.inittime_target, "initTimeData", entry.inittime_target_name)


def evidence_token_claims(
    entry: AttestationType, verified: VerifiedEvidence, submitted: AttestationInput
) -> dict[str, Any]:
    """The service-emitted claims of a verified evidence, named as ``entry`` says (after the bindings)."""
    token: dict[str, Any] = {
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": entry.token_type,
        **verified.claims,
    }
    if entry.tcb_status_claim is not None and verified.tcb_status is not None:
        token[entry.tcb_status_claim] = verified.tcb_status
    if entry.advisory_ids_claim is not None and verified.tcb_status is not None:
        token[entry.advisory_ids_claim] = list(verified.advisory_ids)
    if entry.collateral_claims:
        collateral = dict(verified.collateral_hashes)
        for name in entry.collateral_claims:
            token[name] = collateral
    runtime, inittime = submitted.runtime, submitted.inittime
    if runtime is not None and runtime.data is not None:
        if runtime.data_type == "JSON":
            token["x-ms-runtime"] = runtime.json_value
        else:
            encoded = b64url(runtime.data)
            token.update(dict.fromkeys(entry.runtime_binary_claims, encoded))
    if inittime is not None and inittime.data is not None:
        if inittime.data_type == "JSON":
            token["x-ms-inittime"] = inittime.json_value
        else:
            token["x-ms-inittime-data"] = b64url(inittime.data)
    return token


def incoming_of(
    entry: AttestationType, verified: VerifiedEvidence, token: Mapping[str, Any]
) -> dict[str, Any]:
    """What the policy sees: the token claims, the policy-only documents and the type's aliases."""
    incoming = {**token, **verified.policy_claims}
    for alias, name in entry.incoming_aliases.items():
        if name in incoming:
            incoming[alias] = incoming[name]
    return incoming


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
    get = (cache or ClaimCache()).get
    claims: list[Any] = []
    for source in (incoming, extra):
        for name, value in source.items():
            claims.extend(_claims_of(name, value, get))
    claims.extend(custom_claim(name, value, vtype) for name, value, vtype in custom)
    return claims


def _claims_of(name: str, value: Any, get: Callable[[str, Any], Any]) -> list[Any]:
    """The incoming claims one service-established (name, value) becomes (``incoming_claim_list``)."""
    if type(value) in _SCALAR_TYPES:
        return [get(name, value)]
    if isinstance(value, list) and all(type(v) in _SCALAR_TYPES for v in value):
        return [get(name, v) for v in value]
    from affidavit.policy import claims_from_mapping

    return claims_from_mapping({name: value})


def _count_of(value: Any) -> int:
    """``len(_claims_of(name, value, ...))`` without building the claims."""
    if type(value) in _SCALAR_TYPES:
        return 1
    if isinstance(value, list) and all(type(v) in _SCALAR_TYPES for v in value):
        return len(value)
    return 0 if value is None else 1


class OutcomeCache:
    """Policy outcomes reused across attestations whose incoming claims the policy reads are identical.

    A policy reads claims only through its conditions; when every condition names its claim type
    (``type == "literal"``, which the SGX, TDX and SNP defaults do), the claims of those types, in order,
    with their values, value types and issuers, plus the number of incoming claims (the ``max_claims``
    limit counts them all), determine the outcome. Any condition that does not name a type reads every
    claim, and that policy's outcomes are never reused. Only permitting outcomes are kept (a denial is
    evaluated again and explained); draft policies never come here."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._outcomes: BoundedDict[tuple[Any, ...], Any] = BoundedDict(max_entries)
        self._read_types: BoundedDict[tuple[str, int], frozenset[str] | None] = BoundedDict(256)

    @staticmethod
    def claim_types_read(compiled: Any) -> frozenset[str] | None:
        """The claim types ``compiled`` can read, or None when a condition may read any claim."""
        types: set[str] = set()
        for _, rules in compiled.sections:
            for rule in rules:
                for cond in rule.conditions:
                    if cond.type_key is None:
                        return None
                    types.add(cond.type_key)
        return frozenset(types)

    def _reads(self, compiled: Any) -> frozenset[str] | None:
        which = (getattr(compiled, "hash", None) or "", id(compiled))
        if which in self._read_types:
            return self._read_types[which]
        reads = self.claim_types_read(compiled) if which[0] else None
        self._read_types.put(which, reads)
        return reads

    def key(
        self,
        compiled: Any,
        incoming: Mapping[str, Any],
        extra: Mapping[str, Any],
        custom: Sequence[tuple[str, Any, str]],
        cache: ClaimCache | None = None,
    ) -> tuple[Any, ...] | None:
        """The reuse key of an evaluation over ``incoming_claim_list(incoming, extra, cache, custom)``,
        built without that list: the claims of the read types (in list order) and the list's length."""
        reads = self._reads(compiled)
        if reads is None:
            return None
        get = (cache or ClaimCache()).get
        count = 0
        read: list[tuple[Any, ...]] = []
        scalar = _SCALAR_TYPES
        for source in (incoming, extra):
            for name, value in source.items():
                if type(value) in scalar:  # most claims: one claim each (_count_of, _claims_of inlined)
                    count += 1
                    if name in reads:
                        read.append(_fact(get(name, value)))
                    continue
                count += _count_of(value)
                if name in reads:
                    read.extend(_fact(c) for c in _claims_of(name, value, get))
        for name, value, vtype in custom:
            count += 1
            claim = custom_claim(name, value, vtype)
            if claim.type in reads:
                read.append(_fact(claim))
        return (compiled.hash, compiled.text, count, tuple(read))

    def get(self, key: tuple[Any, ...] | None) -> Any:
        return None if key is None else self._outcomes.get(key)

    def put(self, key: tuple[Any, ...] | None, outcome: Any) -> None:
        if key is not None and outcome.authorized:
            self._outcomes.put(key, outcome)


def _fact(claim: Any) -> tuple[Any, ...]:
    return (claim.type, type(claim.value), claim.value, claim.value_type, claim.issuer)


INLINE_VERIFY_SECONDS = 0.001  # CPU: a warm DCAP quote measures 0.1-0.4 ms, a cold one several ms
# CPU: ES256 measures ~0.06 ms (on the loop); RSA-2048 0.9-1.4 ms, which would hold the loop, and an
# event-loop iteration serves every ready request: RSA goes to the signing thread (OpenSSL releases the GIL)
INLINE_SIGN_SECONDS = 0.00025
PLACEMENT_ENTRIES = 256  # (attestation type, collateral set) costs remembered (Placement)


class Placement:
    """Measured costs that decide what runs on the event loop (module docstring): the CPU time of the
    last verification per (attestation type, collateral object) and of the last signature per key."""

    def __init__(self) -> None:
        # The collateral object itself is kept with its cost, so a recycled id() never matches. 256 sets
        # (DCAP: one per FMSPC and PCK CA, tens in a fleet); past that the oldest is measured again, its
        # next verification running in a thread: slower, never wrong.
        self._verify: BoundedDict[tuple[str, int], tuple[Any, float]] = BoundedDict(PLACEMENT_ENTRIES)
        self._sign: dict[str, float] = {}

    def verify_inline(self, type_name: str, collateral: Any) -> bool:
        if collateral is None:
            return False
        known = self._verify.get((type_name, id(collateral)))
        return known is not None and known[0] is collateral and known[1] < INLINE_VERIFY_SECONDS

    def verified(self, type_name: str, collateral: Any, seconds: float) -> None:
        if collateral is not None:
            self._verify.put((type_name, id(collateral)), (collateral, seconds))

    def sign_inline(self, key: Any) -> bool:
        cost = self._sign.get(key.kid)
        return cost is not None and cost < INLINE_SIGN_SECONDS and isinstance(key.signer, SoftwareSigner)

    def sign(self, key: Any, data: bytes) -> bytes:
        """``key.sign(data)``, its CPU time recorded (in whichever thread it runs)."""
        start = time.thread_time()
        signature: bytes = key.sign(data)
        cost = time.thread_time() - start
        if len(self._sign) >= 64:
            self._sign.clear()
        # a key's signing cost does not change: the least measured is the least disturbed by other load
        self._sign[key.kid] = min(cost, self._sign.get(key.kid, cost))
        return signature


class SigningThread:
    """One daemon thread that signs tokens handed over from the event loop: a queue and a wake-up of the
    loop per token, cheaper than the general thread pool. Signing (OpenSSL) releases the GIL, so the loop
    serves other requests meanwhile."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` in the thread; the future resolves on the calling loop."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="token-signer", daemon=True)
                    self._thread.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def close(self) -> None:
        """Let the thread end once the tokens already handed over are signed."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(())
                self._thread = None

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if not job:
                return
            loop, future, fn, args = job
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 -- handed to the waiting request
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:  # the loop has closed: nobody waits for this token
                pass


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def lifetime_seconds(properties: Mapping[str, Any], default_minutes: int, cap: int) -> int:
    """The type's default, or the policy's ``report_validity_in_minutes`` (1 minute .. 1 year); never more
    than ``cap`` (how long a retired signing key stays in ``/certs``), so that every token stays
    verifiable until it expires."""
    minutes = properties.get("report_validity_in_minutes")
    if isinstance(minutes, list):
        minutes = minutes[-1] if minutes else None
    seconds = default_minutes * 60
    if isinstance(minutes, int) and not isinstance(minutes, bool) and 0 < minutes <= MAX_VALIDITY_MINUTES:
        seconds = minutes * 60
    return min(seconds, cap)


def token_claims(
    entry: AttestationType,
    verified: VerifiedEvidence,
    submitted: AttestationInput,
    policy: PolicyChoice,
    compiled: Any,
    *,
    issuer: str,
    now: datetime,
    max_lifetime: int,
    claim_cache: ClaimCache | None = None,
    outcomes: OutcomeCache | None = None,
) -> dict[str, Any]:
    """Bindings, incoming claims, policy evaluation and the token's claims for one verified evidence
    (maa-api §6.2). A draft policy is explained rule by rule (``TRACE_CLAIM``); a denial is explained.
    ``outcomes``: reuse of outcomes (:class:`OutcomeCache`), never for a draft."""
    check_bindings(entry, verified, submitted)
    token = evidence_token_claims(entry, verified, submitted)
    phash = getattr(compiled, "hash", None) or policy_hash(policy.text)
    extra: dict[str, Any] = {"x-ms-policy-hash": phash}
    if policy.signer_jwk is not None:
        extra["x-ms-policy-signer"] = dict(policy.signer_jwk)
    seen, custom = incoming_of(entry, verified, token), custom_of(verified)
    trace = None
    key = None
    if outcomes is not None and not policy.draft:
        key = outcomes.key(compiled, seen, extra, custom, claim_cache)
    outcome = None if outcomes is None else outcomes.get(key)
    if outcome is None:
        incoming = incoming_claim_list(seen, extra, claim_cache, custom=custom)
        if policy.draft:  # the caller wrote this policy: trace every rule, literals included
            explanation = explain(compiled, incoming, reveal_policy=True)
            outcome, trace = explanation.outcome, explanation.to_dict()["rules"]
        else:
            outcome = evaluate(compiled, incoming)
            if outcomes is not None:
                outcomes.put(key, outcome)
        if not outcome.authorized:
            raise denial_error(compiled, incoming, draft=policy.draft)
    iat = int(now.timestamp())
    issued = dict(outcome.claims)
    # Service claims win over same-named policy claims.
    claims: dict[str, Any] = {**issued, **token} if entry.policy_claims_top_level else dict(token)
    claims.update(extra)
    claims.update(
        {
            "jti": os.urandom(32).hex(),  # what secrets.token_hex(32) returns, in one call
            "iss": issuer,
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime_seconds(outcome.properties, entry.token_minutes, max_lifetime),
        }
    )
    if issued or not entry.policy_claims_top_level:
        claims["x-ms-policy"] = issued
    if submitted.nonce is not None:
        claims["nonce"] = submitted.nonce
    claims.update(submitted.request_claims)
    if trace is not None:
        claims[TRACE_CLAIM] = trace
    return claims


TRACE_CLAIM = "affidavit-policy-trace"  # in draft-policy tokens only: every rule's trace (docs/service.md)


def custom_of(verified: VerifiedEvidence) -> list[tuple[str, Any, str]]:
    """The attester's own assertions as ``incoming_claim_list``'s ``custom`` (issuer CustomClaim, type
    prefixed with ``policy.CUSTOM_CLAIM_PREFIX``)."""
    return [(c.name, c.value, c.value_type) for c in verified.custom_claims]


def denial_error(compiled: Any, incoming: Any, *, draft: bool = False) -> ServiceError:
    """The 400 a denial gets: MAA's reason plus the rules that did not match and why (explain runs only
    here, on the refusal path). Only evidence values are shown unless the caller wrote the policy."""
    explanation = explain(compiled, incoming, reveal_policy=draft)
    message = f"the attestation policy did not authorize: {explanation.denial_message(reveal_policy=draft)}"
    details = {"trace": explanation.to_dict()["rules"]} if draft else None
    return ServiceError(message, code=POLICY_EVALUATION, details=details)


def _record_shadow(
    state: ServiceState, entry: AttestationType, verified: VerifiedEvidence, submitted: AttestationInput
) -> None:
    """A shadow sample of this attestation's incoming claims (``service.shadow``), bindings checked."""
    if state.shadow is None:
        return
    check_bindings(entry, verified, submitted)
    token = evidence_token_claims(entry, verified, submitted)
    incoming = incoming_claim_list(incoming_of(entry, verified, token), {}, state.claims, custom_of(verified))
    state.shadow.record(entry.name, state.clock(), incoming)


def _decide(
    state: ServiceState,
    entry: AttestationType,
    verifier: EvidenceVerifier[Any, Any],
    submitted: AttestationInput,
    parsed: Any,
    collateral: Any,
) -> str:
    """Everything after the collateral fetch, in one worker-thread call: the policy (store read, compile),
    verification, claims, evaluation (under the policy's limits) and the signature."""
    from affidavit.service.policies import stored_policy_choice

    if submitted.draft_policy is not None:
        policy = PolicyChoice(text=submitted.draft_policy, draft=True)
    else:
        policy = stored_policy_choice(state, entry.name)
    compiled = state.compiler.compile(policy.text, keep=not policy.draft)  # drafts are not cached
    verified = _verify(state, entry, verifier, parsed, collateral, compiled)
    if submitted.on_verified is not None:
        submitted.on_verified()
    ring = state.keyring()
    claims = _claims(state, entry, verified, submitted, policy, compiled, ring)
    if policy.draft:
        from affidavit.tokens import unsecured_jwt

        return str(unsecured_jwt(claims, jku=state.jku, kid=ring.current.kid))
    text = signing_input(claims, ring.current, jku=state.jku)
    return with_signature(text, state.placement.sign(ring.current, text.encode("ascii")))


def _verify(
    state: ServiceState, entry: AttestationType, verifier: EvidenceVerifier[Any, Any], parsed: Any,
    collateral: Any, compiled: Any,
) -> VerifiedEvidence:
    """``verifier.verify`` under the policy's properties, its CPU time recorded for :class:`Placement`."""
    options = VerifyOptions(
        properties=state.verify_properties(compiled), collateral_grace=state.config.collateral_grace
    )
    start = time.thread_time()
    verified = verifier.verify(parsed, collateral, state.evidence_clock(), options)
    state.placement.verified(entry.name, collateral, time.thread_time() - start)
    return verified


def _claims(
    state: ServiceState, entry: AttestationType, verified: VerifiedEvidence, submitted: AttestationInput,
    policy: PolicyChoice, compiled: Any, ring: Any,
) -> dict[str, Any]:
    if not policy.draft:
        _record_shadow(state, entry, verified, submitted)
    return token_claims(
        entry, verified, submitted, policy, compiled,
        issuer=state.issuer, now=state.clock(),
        max_lifetime=int(ring.max_token_lifetime.total_seconds()), claim_cache=state.claims,
        outcomes=None if policy.draft else state.outcomes,
    )


def _warm_policy(state: ServiceState, entry: AttestationType) -> tuple[PolicyChoice, Any] | None:
    """The stored policy and its compiled form when both are at hand without blocking, else None. Both
    are kept per type while the store view hands out the same policy object (it re-reads every
    ``state.POLICY_TTL``), so a warm attestation neither hashes the policy text nor converts its signer."""
    from affidavit.service.policies import policy_choice

    if not state.policy_ready(entry.name):
        return None
    stored = state.stored_policy(entry.name)
    known = state.warm_policies.get(entry.name)
    if known is not None and known[0] is stored:
        return known[1], known[2]
    policy = policy_choice(entry.name, stored)
    compiled = state.compiler.cached(policy.text)
    if compiled is None:
        return None
    state.warm_policies[entry.name] = (stored, policy, compiled)
    return policy, compiled


async def issue(state: ServiceState, entry: AttestationType, submitted: AttestationInput) -> str:
    """The signed (or, for a draft policy, unsecured) token for one attestation of type ``entry``.

    ``parse`` (cheap by contract) and the collateral fetch run on the event loop; a warm attestation
    continues there and hands only its signature to the signing thread; anything else is one worker-
    thread call (module docstring)."""
    verifier = state.evidence_verifier(entry.name)
    parsed = verifier.parse(submitted.evidence)
    collateral = await verifier.collateral(parsed)
    warm = None
    ring = None
    if (submitted.draft_policy is None and submitted.on_verified is None
            and state.placement.verify_inline(entry.name, collateral)):
        ring = state.keyring_if_ready()
        warm = _warm_policy(state, entry) if ring is not None else None
    if warm is None or ring is None:
        return await run_in_threadpool(_decide, state, entry, verifier, submitted, parsed, collateral)
    policy, compiled = warm
    verified = _verify(state, entry, verifier, parsed, collateral, compiled)
    claims = _claims(state, entry, verified, submitted, policy, compiled, ring)
    key = ring.current
    data = signing_input(claims, key, jku=state.jku).encode("ascii")
    if state.placement.sign_inline(key):
        signature = state.placement.sign(key, data)
    else:
        signature = await state.signer.run(state.placement.sign, key, data)
    return with_signature(data.decode("ascii"), signature)
