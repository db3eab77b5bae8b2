"""The public metadata documents: JWKS (``/certs``) and OpenID configuration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from affidavit.tokens.keys import SigningKey


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, Any]]]:
    """``{"keys": [...]}``; every key carries ``x5c`` (the SDK fails without it) and ``kid``."""
    return {"keys": [dict(k.jwk) for k in keys]}


def issuer_url(issuer: str) -> str:
    """The issuer as tokens carry it: the base URL without a trailing slash (maa-api §1)."""
    return issuer.rstrip("/")


def jwks_uri(issuer: str) -> str:
    return issuer_url(issuer) + "/certs"


def openid_configuration(
    issuer: str, claims_supported: Iterable[str] = (), algorithms: Iterable[str] = ("RS256",)
) -> dict[str, Any]:
    """The ``/.well-known/openid-configuration`` document (maa-api §5.1); the service passes the
    registry's ``attestation_types.claims_supported()`` (nothing reads the list; clients may show it) and
    ``algorithms``: those of the published keys (RS256, and ES256 in a deployment that uses it).

    MAA also lists a ``revocation_endpoint``; Affidavit serves none, so it does not advertise one.
    """
    base = issuer_url(issuer)
    return {
        "claims_supported": list(claims_supported),
        "id_token_signing_alg_values_supported": sorted(set(algorithms), reverse=True),
        "issuer": base,
        "jwks_uri": base + "/certs",
        "response_types_supported": ["token", "none"],
    }
