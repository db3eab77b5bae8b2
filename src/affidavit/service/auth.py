"""Management authentication in aad mode: a static bearer token, or JWTs from an OIDC issuer.

The OIDC form stands in for Azure AD: the caller presents an RS256 (or ES256) JWT that the configured
issuer signed. Its keys come from the issuer's discovery document (``jwks_uri``) and are cached; an
unknown ``kid`` refetches them, at most once per ``REFETCH_INTERVAL``, so a key rotation at the issuer is
followed without letting a stream of forged kids hammer it. Checks: signature, ``iss``, ``aud`` (when an
audience is configured), ``exp`` and ``nbf`` with ``LEEWAY``. Every failure is a 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from affidavit.service.errors import UNAUTHORIZED, ServiceError

LEEWAY = 60  # seconds of clock skew tolerated on exp/nbf
REFETCH_INTERVAL = 60.0
FETCH_TIMEOUT = 10.0
_CURVES = {"P-256": ec.SECP256R1()}


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(message, code=UNAUTHORIZED, status=401)


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _unauthorized("malformed bearer token") from None


def _int(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("JWK number must be a string")
    return int.from_bytes(_b64url(text), "big")


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    """An RSA or P-256 public key from a JWK (``n``/``e`` or ``crv``/``x``/``y``); None if unusable."""
    try:
        if jwk.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        if jwk.get("kty") == "EC" and jwk.get("crv") in _CURVES:
            curve = _CURVES[jwk["crv"]]
            return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
    except (KeyError, ValueError, TypeError, ServiceError):
        return None
    return None


class OidcVerifier:
    """Verifies management bearer JWTs against an OIDC issuer's published keys."""

    def __init__(
        self, issuer: str, audience: str | None = None, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._client = client
        self._keys: dict[str, Any] = {}
        self._fetched_at = -REFETCH_INTERVAL
        self._lock = asyncio.Lock()

    async def _fetch_keys(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        try:
            discovery = (await client.get(self.issuer + "/.well-known/openid-configuration")).json()
            jwks = (await client.get(str(discovery["jwks_uri"]))).json()
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            raise _unauthorized("the token issuer's keys are unavailable") from None
        finally:
            if self._client is None:
                await client.aclose()
        keys = {}
        for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                key = public_key_from_jwk(jwk)
                if key is not None:
                    keys[jwk["kid"]] = key
        self._keys = keys

    async def _key(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is None:
            async with self._lock:
                key = self._keys.get(kid)
                if key is None and time.monotonic() - self._fetched_at >= REFETCH_INTERVAL:
                    self._fetched_at = time.monotonic()
                    await self._fetch_keys()
                    key = self._keys.get(kid)
        if key is None:
            raise _unauthorized("bearer token signed by an unknown key")
        return key

    async def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims if it is valid; raises a 401 :class:`ServiceError` otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise _unauthorized("malformed bearer token")
        try:
            header = json.loads(_b64url(parts[0]))
            claims = json.loads(_b64url(parts[1]))
        except (ValueError, UnicodeDecodeError):
            raise _unauthorized("malformed bearer token") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _unauthorized("malformed bearer token")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ("RS256", "ES256") or not isinstance(kid, str):
            raise _unauthorized("bearer token must be RS256 or ES256 with a kid")
        key = await self._key(kid)
        self._check_signature(alg, key, f"{parts[0]}.{parts[1]}".encode(), _b64url(parts[2]))
        self._check_claims(claims, time.time() if now is None else now)
        return claims

    @staticmethod
    def _check_signature(alg: str, key: Any, signed: bytes, signature: bytes) -> None:
        try:
            if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
                return
            if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                der = encode_dss_signature(r, s)
                key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
                return
        except InvalidSignature:
            pass
        raise _unauthorized("bearer token signature does not verify")

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        if claims.get("iss") != self.issuer and claims.get("iss") != self.issuer + "/":
            raise _unauthorized("bearer token from another issuer")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or now > exp + LEEWAY:
            raise _unauthorized("bearer token expired or without exp")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - LEEWAY):
            raise _unauthorized("bearer token not yet valid")
        if self.audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if not any(isinstance(a, str) and hmac.compare_digest(a, self.audience) for a in auds):
                raise _unauthorized("bearer token for another audience")
