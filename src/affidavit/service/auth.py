"""Management authentication in aad mode: a static bearer token, or JWTs from an OIDC issuer.

The OIDC form stands in for Azure AD: the caller presents an RS256 (or ES256) JWT that the configured
issuer signed. Its keys come from the issuer's discovery document (``jwks_uri``) and are cached; an
unknown ``kid`` refetches them, at most once per ``REFETCH_INTERVAL``, so a key rotation at the issuer is
followed without letting a stream of forged kids hammer it. Checks: signature, ``iss``, ``aud`` (when an
audience is configured), ``exp`` and ``nbf`` with ``LEEWAY``. Every failure is a 401.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import httpx

from affidavit.relying_party import (
    PublicKey,
    RelyingPartyError,
    decode_unverified,
    keys_from_jwks,
    verify_token,
)
from affidavit.service.errors import UNAUTHORIZED, ServiceError

LEEWAY = 60  # seconds of clock skew tolerated on exp/nbf
REFETCH_INTERVAL = 60.0
FETCH_TIMEOUT = 10.0
ALGORITHMS = ("RS256", "ES256")


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(message, code=UNAUTHORIZED, status=401)


class OidcVerifier:
    """Verifies management bearer JWTs against an OIDC issuer's published keys.

    The token checks are the relying party's (:func:`affidavit.relying_party.verify_token`); this class adds
    asynchronous fetching of the issuer's keys and the audience check.
    """

    def __init__(
        self, issuer: str, audience: str | None = None, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._client = client
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = -REFETCH_INTERVAL
        self._lock = asyncio.Lock()

    async def _fetch_keys(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        try:
            discovery = (await client.get(self.issuer + "/.well-known/openid-configuration")).json()
            self._keys = keys_from_jwks((await client.get(str(discovery["jwks_uri"]))).json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, RelyingPartyError):
            raise _unauthorized("the token issuer's keys are unavailable") from None
        finally:
            if self._client is None:
                await client.aclose()

    async def _ensure_key(self, kid: str) -> None:
        if kid in self._keys:
            return
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= REFETCH_INTERVAL:
                self._fetched_at = time.monotonic()
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
        try:
            claims = verify_token(
                token, self._keys, issuer=self.issuer, now=time.time() if now is None else now, leeway=LEEWAY
            ).claims
        except RelyingPartyError as exc:
            raise _unauthorized(f"bearer token rejected: {exc.message}") from None
        if self.audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if not any(isinstance(a, str) and hmac.compare_digest(a, self.audience) for a in auds):
                raise _unauthorized("bearer token for another audience")
        return claims
