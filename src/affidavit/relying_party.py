"""Relying-party side: verify an attestation token against the issuing service's published keys.

The relying party trusts nothing in the token until its signature checks out against a key fetched from the
issuer's own metadata (``/.well-known/openid-configuration`` -> ``jwks_uri``); ``jku`` and ``x5c`` in the
token header are ignored, since an attacker controls them. The pure core is :func:`verify_token`; the
:class:`TokenVerifier` adds fetching and caching of the metadata, with a rate-limited refetch when a token
names a key it has not seen (key rotation).

It verifies Affidavit's tokens and Microsoft Azure Attestation's alike: both are RS256 JWTs with a ``kid``
listed in a JWKS whose keys carry ``x5c`` (MAA) or ``n``/``e``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from affidavit import jose
from affidavit.errors import AffidavitError
from affidavit.ssl_verify import VerifyArg, ssl_verify

PublicKey = jose.PublicKey


class RelyingPartyError(AffidavitError):
    """The token cannot be trusted; ``code`` says why."""

    code = "token_invalid"


class ExpectationFailed(RelyingPartyError):
    """The token is authentic but a claim is not what the relying party requires."""

    code = "expectation_failed"

    def __init__(self, claim: str, expected: str, actual: Any) -> None:
        super().__init__(f"claim {claim!r} is {actual!r}, expected {expected}")
        self.claim = claim
        self.expected = expected
        self.actual = actual


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


def _check_signature(decoded: DecodedToken, key: PublicKey) -> bool:
    alg = decoded.header.get("alg")
    if not isinstance(alg, str) or alg not in jose.TOKEN_ALGS:
        raise RelyingPartyError(f"signature algorithm {alg!r} is not accepted", code="alg_not_allowed")
    jws = jose.CompactJws("", decoded.header, b"", decoded.signing_input, decoded.signature)
    try:
        jose.verify_signature(jws, key, jose.TOKEN_ALGS)
    except jose.JoseError as exc:
        if exc.code == "unsupported_alg":
            raise RelyingPartyError(exc.message, code="alg_not_allowed") from None
        return False
    return True


# -- expectations -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectations:
    """What the relying party requires of an authentic token, as data.

    Empty sets mean "no requirement". A claim the expectation needs but the token lacks fails it.
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

    def check(self, claims: Mapping[str, Any]) -> None:
        def need(name: str) -> Any:
            if name not in claims:
                raise ExpectationFailed(name, "to be present", None)
            return claims[name]

        if self.mrsigner:
            _one_of("x-ms-sgx-mrsigner", need("x-ms-sgx-mrsigner"), self.mrsigner, lower=True)
        if self.mrenclave:
            _one_of("x-ms-sgx-mrenclave", need("x-ms-sgx-mrenclave"), self.mrenclave, lower=True)
        if self.min_svn is not None:
            _at_least("x-ms-sgx-svn", need("x-ms-sgx-svn"), self.min_svn)
        if self.product_id is not None:
            _one_of("x-ms-sgx-product-id", need("x-ms-sgx-product-id"), frozenset({self.product_id}))
        if not self.allow_debug:
            for name in ("x-ms-sgx-is-debuggable", "is-debuggable"):
                if claims.get(name) is True:
                    raise ExpectationFailed(name, "false (debug enclaves are not trusted)", True)
            attrs = claims.get("tdx_td_attributes_debug")
            if attrs is True:
                raise ExpectationFailed("tdx_td_attributes_debug", "false (debug TDs are not trusted)", True)
        if self.tcb_statuses:
            _one_of("x-ms-sgx-tcb-status", need("x-ms-sgx-tcb-status"), self.tcb_statuses)
        if self.secure_boot is not None:
            _one_of("secureBootEnabled", need("secureBootEnabled"), frozenset({self.secure_boot}))
        for name, allowed in self.claims.items():
            _one_of(name, need(name), allowed)
        for name, minimum in self.minimums.items():
            _at_least(name, need(name), minimum)


def _one_of(name: str, actual: Any, allowed: Iterable[Any], *, lower: bool = False) -> None:
    allowed_list = list(allowed)
    probe = actual.lower() if lower and isinstance(actual, str) else actual
    candidates = [a.lower() if lower and isinstance(a, str) else a for a in allowed_list]
    # bool is an int in Python: compare type-strictly so True never satisfies 1.
    if not any(type(probe) is type(c) and probe == c for c in candidates):
        shown = " or ".join(repr(a) for a in allowed_list)
        raise ExpectationFailed(name, shown, actual)


def _at_least(name: str, actual: Any, minimum: float) -> None:
    if isinstance(actual, bool) or not isinstance(actual, int | float) or actual < minimum:
        raise ExpectationFailed(name, f">= {minimum:g}", actual)


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
) -> VerifiedToken:
    """Check signature, time window, issuer, nonce and expectations; return the claims or raise."""
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
        if not any(_check_signature(decoded, k) for k in candidates):
            raise RelyingPartyError("token signature does not verify", code="bad_signature")
    _check_times(claims, now, leeway)
    iss = claims.get("iss")
    if issuer is not None and (not isinstance(iss, str) or iss.rstrip("/") != issuer.rstrip("/")):
        raise RelyingPartyError(
            f"issuer is {claims.get('iss')!r}, expected {issuer.rstrip('/')!r}", code="wrong_issuer"
        )
    if nonce is not None and claims.get("nonce") != nonce:
        raise RelyingPartyError(
            f"nonce is {claims.get('nonce')!r}, expected {nonce!r}", code="nonce_mismatch"
        )
    if expectations is not None:
        expectations.check(claims)
    return VerifiedToken(header, claims, kid, unsecured)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RelyingPartyError(f"claim {name!r} is not a number", code="token_malformed")
    if "exp" not in claims:
        raise RelyingPartyError("token has no expiry (exp)", code="token_malformed")
    if now > claims["exp"] + leeway:
        raise RelyingPartyError("token has expired", code="expired")
    if "nbf" in claims and now + leeway < claims["nbf"]:
        raise RelyingPartyError("token is not valid yet (nbf in the future)", code="not_yet_valid")


# -- fetching the issuer's keys ---------------------------------------------------------------------------


class TokenVerifier:
    """Verifies tokens of one issuer, fetching its metadata and keys over HTTP(S) and caching them.

    An unknown ``kid`` triggers one refetch of the JWKS, at most once per ``min_refetch_interval`` seconds, so
    a key rotation is picked up at once while a flood of tokens with bogus kids cannot flood the issuer.
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
    ) -> None:
        self.issuer = issuer_url.rstrip("/")
        self.leeway = leeway
        self.allow_unsecured = allow_unsecured
        self.min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._http = httpx.Client(verify=ssl_verify(verify), timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._keys: dict[str, PublicKey] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None

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
            return response.json()
        except ValueError:
            raise RelyingPartyError(f"{url} did not return JSON", code="metadata_unavailable") from None

    def _refresh(self) -> None:
        if self._jwks_uri is None:
            meta = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            uri = meta.get("jwks_uri") if isinstance(meta, dict) else None
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise RelyingPartyError("OpenID metadata has no usable jwks_uri", code="metadata_unavailable")
            self._jwks_uri = uri
        self._keys = keys_from_jwks(self._get_json(self._jwks_uri))
        self._fetched_at = self._clock()

    def signing_keys(self) -> dict[str, PublicKey]:
        with self._lock:
            if self._fetched_at is None:
                self._refresh()
            return dict(self._keys)

    def verify(
        self, token: str, *, nonce: str | None = None, expectations: Expectations | None = None
    ) -> VerifiedToken:
        keys = self.signing_keys()
        kid = decode_unverified(token).header.get("kid")
        if isinstance(kid, str) and kid not in keys:
            with self._lock:
                assert self._fetched_at is not None
                if self._clock() - self._fetched_at >= self.min_refetch_interval:
                    self._refresh()
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
        )
