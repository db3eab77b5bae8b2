"""Relying-party side: verify an attestation token against the issuing service's published keys.

The relying party trusts nothing in the token until its signature checks out against a key fetched from the
issuer's own metadata (``/.well-known/openid-configuration`` -> ``jwks_uri``); ``jku`` and ``x5c`` in the
token header are ignored, since an attacker controls them. The pure core is :func:`verify_token`; the
:class:`TokenVerifier` adds fetching and caching of the metadata, with a rate-limited refetch when a token
names a key it has not seen (key rotation).

It verifies Affidavit's tokens and Microsoft Azure Attestation's alike: JWTs with a ``kid`` listed in a JWKS
whose keys carry ``x5c`` (MAA) or ``n``/``e``, signed RS256 (MAA, Affidavit's default) or ES256 (Affidavit
with ES256 keys). Other algorithms are refused unless the caller passes ``algorithms``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from affidavit import jose, strict_json
from affidavit.errors import AffidavitError
from affidavit.ssl_verify import VerifyArg, ssl_verify

PublicKey = jose.PublicKey


class RelyingPartyError(AffidavitError):
    """The token cannot be trusted; ``code`` says why."""

    code = "token_invalid"


class ExpectationFailed(RelyingPartyError):
    """The token is authentic but a claim is not what the relying party requires. ``failures`` lists every
    unmet expectation (this one first), so a caller can report them all at once."""

    code = "expectation_failed"

    def __init__(self, claim: str, expected: str, actual: Any) -> None:
        super().__init__(f"claim {claim!r} is {_shown(actual)}, expected {expected}")
        self.claim = claim
        self.expected = expected
        self.actual = actual
        self.failures: list[ExpectationFailed] = [self]

    @classmethod
    def combined(cls, failures: list[ExpectationFailed]) -> ExpectationFailed:
        first = failures[0]
        if len(failures) > 1:
            first.message = f"{len(failures)} expectations failed: " + "; ".join(f.message for f in failures)
            first.args = (first.message,)
        first.failures = list(failures)
        return first


def _shown(value: Any, limit: int = 200) -> str:
    """A claim value as JSON (``null``, ``true``), never as a Python spelling, cut at ``limit``."""
    if value is None:
        return "absent"
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the JOSE package, failing as RelyingPartyError --------------------------------------------------------


def b64url_decode(text: str) -> bytes:
    try:
        return jose.b64url_decode(text, what="token segment")
    except jose.JoseError as exc:
        raise RelyingPartyError(exc.message, code="token_malformed") from None


@dataclass(frozen=True)
class DecodedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode_unverified(token: str) -> DecodedToken:
    """Split and decode a compact JWT without checking anything but its shape (the JOSE package's one
    parser: duplicate members refused)."""
    try:
        jws = jose.parse_compact(token, "token")
        claims = jws.payload_object("token payload") or {}
    except jose.JoseError as exc:
        raise RelyingPartyError(exc.message, code="token_malformed") from None
    return DecodedToken(jws.header, claims, jws.signing_input, jws.signature)


# -- keys -------------------------------------------------------------------------------------------------


def keys_from_jwks(jwks: Any) -> dict[str, PublicKey]:
    """Map kid -> public key. Keys without kid or with unusable material (including RSA under 2048 bits)
    are skipped, not trusted."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise RelyingPartyError("JWKS document has no 'keys' list", code="jwks_invalid")
    out: dict[str, PublicKey] = {}
    for entry in jwks["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            out[entry["kid"]] = jose.public_key_from_jwk(entry, "JWKS key", use_x5c=True)
        except jose.JoseError:
            continue
    return out


def _check_signature(decoded: DecodedToken, key: PublicKey, algorithms: frozenset[str]) -> bool:
    """Does ``key`` sign the token under one of ``algorithms``? The alg and key rules are the JOSE
    package's; an alg not on the list is an error, not a mismatch."""
    jws = jose.CompactJws("", decoded.header, b"", decoded.signing_input, decoded.signature)
    try:
        jose.verify_signature(jws, key, algorithms)
    except jose.JoseError as exc:
        if exc.code == "unsupported_alg":
            raise RelyingPartyError(exc.message, code="alg_not_allowed") from None
        return False
    return True


# -- expectations -----------------------------------------------------------------------------------------


EXPECT_OPERATORS = ("=", "<", "<=", ">", ">=", "contains", "in")
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class ClaimTest:
    """One relying-party requirement on a claim: ``claim op value``. ``value`` is text, read according to
    the claim's type (Integer, Boolean, String); hex strings compare case-insensitively. ``contains``
    tests a list claim for an element (or a String for a substring); ``in`` takes the allowed values."""

    claim: str
    op: str
    value: str | tuple[str, ...]

    def failure(self, claims: Mapping[str, Any]) -> ExpectationFailed | None:
        found, actual = claim_at(claims, self.claim)
        if not found:
            return ExpectationFailed(self.claim, "to be present", None)
        if self.op in ("<", "<=", ">", ">="):
            limit = _number(self.value)
            ok = limit is not None and not isinstance(actual, bool) and isinstance(actual, int | float) and {
                "<": actual < limit, "<=": actual <= limit, ">": actual > limit, ">=": actual >= limit
            }[self.op]
            return None if ok else ExpectationFailed(self.claim, f"{self.op} {self.value}", actual)
        if self.op == "contains":
            if isinstance(actual, list):
                ok = any(claim_equals(a, str(self.value)) for a in actual)
            else:
                ok = isinstance(actual, str) and str(self.value).lower() in actual.lower()
            return None if ok else ExpectationFailed(self.claim, f"to contain {self.value!s}", actual)
        allowed = self.value if isinstance(self.value, tuple) else (self.value,)
        if any(claim_equals(actual, v) for v in allowed):
            return None
        return ExpectationFailed(self.claim, " or ".join(allowed) if allowed else "(nothing)", actual)


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def claim_equals(actual: Any, expected: str) -> bool:
    """Does the claim value equal the text ``expected``, read as the claim's own type? Booleans take
    true/false, numbers their decimal form, strings compare exactly, or case-insensitively when both
    are hex (measurements are printed in either case)."""
    if isinstance(actual, bool):
        return expected.strip().lower() == ("true" if actual else "false")
    if isinstance(actual, int | float):
        number = _number(expected)
        return number is not None and actual == number
    if isinstance(actual, str):
        if actual == expected:
            return True
        both_hex = bool(actual) and set(actual) <= _HEX and set(expected) <= _HEX
        return both_hex and actual.lower() == expected.lower()
    try:
        return bool(actual == strict_json.loads(expected))
    except ValueError:
        return False


@dataclass(frozen=True)
class Expectations:
    """What the relying party requires of an authentic token, as data.

    Empty sets mean "no requirement". A claim the expectation needs but the token lacks fails it. Every
    requirement is checked; :meth:`check` reports all that fail.
    """

    mrsigner: frozenset[str] = frozenset()
    mrenclave: frozenset[str] = frozenset()
    min_svn: int | None = None
    product_id: int | None = None
    allow_debug: bool = False
    tcb_statuses: frozenset[str] = frozenset()
    secure_boot: bool | None = None
    claims: Mapping[str, frozenset[Any]] = field(default_factory=dict)
    minimums: Mapping[str, float] = field(default_factory=dict)
    tests: tuple[ClaimTest, ...] = ()

    def failures(self, claims: Mapping[str, Any]) -> list[ExpectationFailed]:
        out: list[ExpectationFailed] = []

        def attempt(name: str, check: Callable[[Any], None]) -> None:
            found, value = claim_at(claims, name)
            if not found:
                out.append(ExpectationFailed(name, "to be present", None))
                return
            try:
                check(value)
            except ExpectationFailed as exc:
                out.append(exc)

        if self.mrsigner:
            attempt("x-ms-sgx-mrsigner", lambda v: _one_of("x-ms-sgx-mrsigner", v, self.mrsigner, lower=True))
        if self.mrenclave:
            attempt("x-ms-sgx-mrenclave",
                    lambda v: _one_of("x-ms-sgx-mrenclave", v, self.mrenclave, lower=True))
        if self.min_svn is not None:
            min_svn = self.min_svn
            attempt("x-ms-sgx-svn", lambda v: _at_least("x-ms-sgx-svn", v, min_svn))
        if self.product_id is not None:
            pid = frozenset({self.product_id})
            attempt("x-ms-sgx-product-id", lambda v: _one_of("x-ms-sgx-product-id", v, pid))
        if not self.allow_debug:
            for name in ("x-ms-sgx-is-debuggable", "is-debuggable", "x-ms-sevsnpvm-is-debuggable"):
                if claims.get(name) is True:
                    out.append(ExpectationFailed(name, "false (debug enclaves are not trusted)", True))
            if claims.get("tdx_td_attributes_debug") is True:
                out.append(
                    ExpectationFailed("tdx_td_attributes_debug", "false (debug TDs are not trusted)", True)
                )
            for path in ("x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable",
                         "x-ms-isolation-tee.tdx_td_attributes_debug"):
                if claim_at(claims, path) == (True, True):
                    out.append(ExpectationFailed(path, "false (debug CVMs are not trusted)", True))
        if self.tcb_statuses:
            attempt("x-ms-sgx-tcb-status",
                    lambda v: _one_of("x-ms-sgx-tcb-status", v, self.tcb_statuses))
        if self.secure_boot is not None:
            sb = frozenset({self.secure_boot})
            attempt("secureBootEnabled", lambda v: _one_of("secureBootEnabled", v, sb))
        for name, allowed in self.claims.items():
            attempt(name, lambda v, n=name, a=allowed: _one_of(n, v, a))  # type: ignore[misc]
        for name, minimum in self.minimums.items():
            attempt(name, lambda v, n=name, m=minimum: _at_least(n, v, m))  # type: ignore[misc]
        for test in self.tests:
            failed = test.failure(claims)
            if failed is not None:
                out.append(failed)
        return out

    def check(self, claims: Mapping[str, Any]) -> None:
        failed = self.failures(claims)
        if failed:
            raise ExpectationFailed.combined(failed)


def claim_at(claims: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """A claim by name, or a nested one by dotted path (``x-ms-isolation-tee.x-ms-sevsnpvm-vmpl``: the
    AzureGuest hardware claims are an object). An exact top-level name wins over a path."""
    if name in claims:
        return True, claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _one_of(name: str, actual: Any, allowed: Iterable[Any], *, lower: bool = False) -> None:
    allowed_list = list(allowed)
    probe = actual.lower() if lower and isinstance(actual, str) else actual
    candidates = [a.lower() if lower and isinstance(a, str) else a for a in allowed_list]
    # bool is an int in Python: compare type-strictly so True never satisfies 1.
    if not any(type(probe) is type(c) and probe == c for c in candidates):
        shown = " or ".join(_shown(a) for a in allowed_list)
        raise ExpectationFailed(name, shown, actual)


def _at_least(name: str, actual: Any, minimum: float) -> None:
    if isinstance(actual, bool) or not isinstance(actual, int | float) or actual < minimum:
        raise ExpectationFailed(name, f">= {minimum:g}", actual)


def nonce_matches(claim: Any, nonce: str) -> bool:
    """The token's ``nonce`` as the service emits it: the text itself (the SGX/TDX ``nonce`` field), or its
    base64url form (the TPM protocol's ``rp_data`` bytes, which the service echoes base64url-encoded)."""
    if not isinstance(claim, str):
        return False
    from affidavit.jose import b64url

    return claim in (nonce, b64url(nonce.encode("utf-8")))


# -- the pure verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    kid: str | None
    unsecured: bool


def verify_token(
    token: str,
    keys: Mapping[str, PublicKey],
    *,
    issuer: str | None,
    now: float,
    leeway: float = 30.0,
    nonce: str | None = None,
    allow_unsecured: bool = False,
    expectations: Expectations | None = None,
    algorithms: frozenset[str] = jose.TOKEN_ALGS,
) -> VerifiedToken:
    """Check signature, time window, issuer, nonce and expectations; return the claims or raise.

    ``algorithms`` defaults to what Affidavit and MAA sign (RS256, ES256); a caller whose issuer signs
    otherwise names its algorithms (any of ``jose.ALGORITHMS``; each ES alg only on its own curve)."""
    decoded = decode_unverified(token)
    header, claims = decoded.header, decoded.claims
    alg = header.get("alg")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    unsecured = alg == "none"
    if unsecured:
        if not allow_unsecured:
            raise RelyingPartyError(
                "unsecured token (alg none, a draft-policy result) refused", code="alg_not_allowed"
            )
        if decoded.signature:
            raise RelyingPartyError("unsecured token carries a signature", code="token_malformed")
    else:
        if kid is not None:
            if kid not in keys:
                raise RelyingPartyError(f"no published signing key has kid {kid!r}", code="unknown_kid")
            candidates = [keys[kid]]
        else:
            candidates = list(keys.values())
        if not any(_check_signature(decoded, k, algorithms) for k in candidates):
            raise RelyingPartyError("token signature does not verify", code="bad_signature")
    _check_times(claims, now, leeway)
    iss = claims.get("iss")
    if issuer is not None and (not isinstance(iss, str) or iss.rstrip("/") != issuer.rstrip("/")):
        raise RelyingPartyError(
            f"issuer is {claims.get('iss')!r}, expected {issuer.rstrip('/')!r}", code="wrong_issuer"
        )
    if nonce is not None and not nonce_matches(claims.get("nonce"), nonce):
        raise RelyingPartyError(
            f"nonce is {_shown(claims.get('nonce'))}, expected {_shown(nonce)}", code="nonce_mismatch"
        )
    if expectations is not None:
        expectations.check(claims)
    return VerifiedToken(header, claims, kid, unsecured)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise RelyingPartyError(f"claim {name!r} is not a finite number", code="token_malformed")
    if "exp" not in claims:
        raise RelyingPartyError("token has no expiry (exp)", code="token_malformed")
    if now > claims["exp"] + leeway:
        raise RelyingPartyError("token has expired", code="expired")
    if "nbf" in claims and now + leeway < claims["nbf"]:
        raise RelyingPartyError("token is not valid yet (nbf in the future)", code="not_yet_valid")
    if "iat" in claims and now + leeway < claims["iat"]:
        raise RelyingPartyError("token was issued in the future (iat)", code="not_yet_valid")


# -- fetching the issuer's keys ---------------------------------------------------------------------------


class TokenVerifier:
    """Verifies tokens of one issuer, fetching its metadata and keys over HTTP(S) and caching them.

    An unknown ``kid`` triggers one refetch of the JWKS, at most once per ``min_refetch_interval`` seconds
    whether the last attempt succeeded or failed, so a key rotation is picked up at once while a flood of
    tokens with bogus kids cannot flood the issuer (nor an issuer outage turn into one fetch per token).
    Fetches are single-flight and never hold up a token whose ``kid`` is already known: the keys are
    replaced as a whole once a fetch completes, and only callers that need the fetch wait for it.
    """

    def __init__(
        self,
        issuer_url: str,
        *,
        verify: VerifyArg = True,
        timeout: float = 10.0,
        leeway: float = 30.0,
        allow_unsecured: bool = False,
        min_refetch_interval: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        algorithms: frozenset[str] = jose.TOKEN_ALGS,
    ) -> None:
        self.issuer = issuer_url.rstrip("/")
        self.algorithms = algorithms
        self.leeway = leeway
        self.allow_unsecured = allow_unsecured
        self.min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._http = httpx.Client(verify=ssl_verify(verify), timeout=timeout, transport=transport)
        self._fetch_lock = threading.Lock()  # one fetch at a time; readers of the keys never take it
        self._keys: dict[str, PublicKey] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._error: RelyingPartyError | None = None  # why the last fetch failed

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TokenVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_json(self, url: str) -> Any:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise RelyingPartyError(f"cannot fetch {url}: {exc}", code="metadata_unavailable") from None
        if response.status_code != 200:
            raise RelyingPartyError(
                f"{url} answered HTTP {response.status_code}", code="metadata_unavailable"
            )
        try:
            return strict_json.loads(response.content)
        except ValueError:
            raise RelyingPartyError(f"{url} did not return JSON", code="metadata_unavailable") from None

    def _refresh(self) -> None:
        if self._jwks_uri is None:
            meta = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            uri = meta.get("jwks_uri") if isinstance(meta, dict) else None
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise RelyingPartyError("OpenID metadata has no usable jwks_uri", code="metadata_unavailable")
            self._jwks_uri = uri
        self._keys = keys_from_jwks(self._get_json(self._jwks_uri))  # replaced whole: readers need no lock
        self._fetched_at = self._clock()

    def _fetch(self, seen: float | None) -> None:
        """Fetch the keys unless another caller did since this one looked (``seen`` = the attempt time it
        saw) or the last attempt is younger than ``min_refetch_interval``. Records a failure, never
        raises it (callers decide whether having no keys is an error)."""
        with self._fetch_lock:
            if self._attempted_at != seen:
                return  # a fetch ran while this caller waited: use its outcome
            now = self._clock()
            if seen is not None and now - seen < self.min_refetch_interval:
                return
            self._attempted_at = now
            try:
                self._refresh()
                self._error = None
            except RelyingPartyError as exc:
                self._error = exc

    def signing_keys(self) -> dict[str, PublicKey]:
        if self._fetched_at is None:
            self._fetch(self._attempted_at)
            if self._fetched_at is None:
                raise self._error or RelyingPartyError("no keys fetched yet", code="metadata_unavailable")
        return dict(self._keys)

    def verify(
        self, token: str, *, nonce: str | None = None, expectations: Expectations | None = None
    ) -> VerifiedToken:
        keys = self.signing_keys()
        kid = decode_unverified(token).header.get("kid")
        if isinstance(kid, str) and kid not in keys:
            self._fetch(self._attempted_at)
            keys = dict(self._keys)
        return verify_token(
            token,
            keys,
            issuer=self.issuer,
            now=self._clock(),
            leeway=self.leeway,
            nonce=nonce,
            allow_unsecured=self.allow_unsecured,
            expectations=expectations,
            algorithms=self.algorithms,
        )
