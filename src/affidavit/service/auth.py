"""Management authentication: a static bearer token, or JWTs from an OIDC issuer; who the caller is.

Every management call (``/policies``, ``/certificates``) needs an authenticated caller, in both modes
(isolated mode checks the JWS signer in addition). :func:`affidavit.service.common.require_admin` returns
a :class:`Caller` whose ``id`` the handlers record in the history next to the signer.

The OIDC form stands in for Azure AD: the caller presents an RS256 (or ES256) JWT that the configured
issuer signed. Its keys come from the issuer's discovery document (``jwks_uri``) and are cached; an
unknown ``kid`` refetches them, at most once per ``REFETCH_INTERVAL``, so a key rotation at the issuer is
followed without letting a stream of forged kids hammer it. A failed fetch is retried at once
(``FETCH_ATTEMPTS``, ``RETRY_DELAY`` doubling), and after a failure the next request may try again after
a backoff that starts at ``FAILURE_BACKOFF`` and doubles up to ``MAX_FAILURE_BACKOFF``: an issuer's
hiccup does not lock every administrator out for a minute. Checks: signature, ``iss``, ``aud`` (required:
with a shared identity provider every other application's tokens would otherwise be admin tokens),
``exp`` (required, at most ``MAX_LIFETIME`` ahead), ``nbf`` and ``iat`` (not in the future), each with
``LEEWAY`` of clock skew, and a ``sub``. Every failure is a 401.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from typing import Any

import httpx

from affidavit import strict_json
from affidavit.relying_party import (
    PublicKey,
    RelyingPartyError,
    decode_unverified,
    keys_from_jwks,
    verify_token,
)
from affidavit.service.errors import UNAUTHORIZED, ServiceError

LEEWAY = 60  # seconds of clock skew tolerated on exp/nbf/iat
MAX_LIFETIME = 24 * 3600  # an admin JWT expiring later than this from now is refused
REFETCH_INTERVAL = 60.0
FETCH_TIMEOUT = 10.0
FETCH_ATTEMPTS = 3  # per request that needs the keys
RETRY_DELAY = 0.2  # seconds before the second attempt; doubles
FAILURE_BACKOFF = 1.0  # after a failed fetch, the next request may retry after this; doubles per failure
MAX_FAILURE_BACKOFF = 30.0
ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a management request.

    ``id`` is stable and printable, for the history and logs: ``admin-token`` (the static bearer token)
    or ``oidc:<iss>#<sub>``. ``address`` is the client's network address, for logs only (unauthenticated).
    """

    id: str
    kind: str  # "admin-token" | "oidc"
    address: str | None = None


ADMIN_TOKEN_CALLER = "admin-token"


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(message, code=UNAUTHORIZED, status=401)


class OidcVerifier:
    """Verifies management bearer JWTs against an OIDC issuer's published keys.

    The token checks are the relying party's (:func:`affidavit.relying_party.verify_token`); this class adds
    fetching of the issuer's keys (with retries and backoff), the audience, lifetime and subject checks.
    """

    def __init__(self, issuer: str, audience: str, *, client: httpx.AsyncClient | None = None) -> None:
        if not audience:
            raise ValueError("an OIDC audience is required")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._client = client
        self._keys: dict[str, PublicKey] = {}
        self._next_fetch = 0.0  # monotonic time before which no fetch is tried
        self._failures = 0
        self._lock = asyncio.Lock()

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> Any:
        response = await client.get(url)
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        return strict_json.loads(response.content)

    async def _fetch_once(self) -> dict[str, PublicKey]:
        client = self._client or httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        try:
            discovery = await self._get_json(client, self.issuer + "/.well-known/openid-configuration")
            return keys_from_jwks(await self._get_json(client, str(discovery["jwks_uri"])))
        finally:
            if self._client is None:
                await client.aclose()

    async def _fetch_keys(self) -> None:
        delay = RETRY_DELAY
        for attempt in range(FETCH_ATTEMPTS):
            try:
                self._keys = await self._fetch_once()
            except (httpx.HTTPError, ValueError, KeyError, TypeError, RelyingPartyError):
                if attempt + 1 < FETCH_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            self._failures = 0
            self._next_fetch = time.monotonic() + REFETCH_INTERVAL
            return
        self._failures += 1
        backoff = min(FAILURE_BACKOFF * 2 ** (self._failures - 1), MAX_FAILURE_BACKOFF)
        self._next_fetch = time.monotonic() + backoff
        raise _unauthorized("the token issuer's keys are unavailable")

    async def _ensure_key(self, kid: str) -> None:
        if kid in self._keys:
            return
        async with self._lock:
            if kid not in self._keys and time.monotonic() >= self._next_fetch:
                await self._fetch_keys()
        if kid not in self._keys:
            raise _unauthorized("bearer token signed by an unknown key")

    async def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims if it is valid; raises a 401 :class:`ServiceError` otherwise."""
        try:
            header = decode_unverified(token).header
        except RelyingPartyError:
            raise _unauthorized("malformed bearer token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise _unauthorized("bearer token must be RS256 or ES256 with a kid")
        await self._ensure_key(kid)
        at = time.time() if now is None else now
        try:
            claims = verify_token(token, self._keys, issuer=self.issuer, now=at, leeway=LEEWAY).claims
        except RelyingPartyError as exc:
            raise _unauthorized(f"bearer token rejected: {exc.message}") from None
        if claims["exp"] > at + MAX_LIFETIME + LEEWAY:
            raise _unauthorized(f"bearer token lives longer than {MAX_LIFETIME // 3600} hours")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and hmac.compare_digest(a, self.audience) for a in auds):
            raise _unauthorized("bearer token for another audience")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise _unauthorized("bearer token has no subject (sub)")
        return claims

    def caller(self, claims: dict[str, Any], address: str | None = None) -> Caller:
        return Caller(f"oidc:{self.issuer}#{claims['sub']}", "oidc", address)
