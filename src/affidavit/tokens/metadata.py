"""The public metadata documents: JWKS (``/certs``) and OpenID configuration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from affidavit.tokens.keys import SigningKey

# The claims live MAA advertises (maa-api §5.1); nothing reads the list, but clients may display it.
CLAIMS_SUPPORTED = (
    "cnf", "nonce", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash", "x-ms-policy-signer",
    "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-svn", "x-ms-sgx-ehd",
    "x-ms-sgx-collateral", "is-debuggable", "sgx-mrsigner", "sgx-mrenclave", "product-id", "svn", "tee",
)


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, Any]]]:
    """``{"keys": [...]}``; every key carries ``x5c`` (the SDK fails without it) and ``kid``."""
    return {"keys": [dict(k.jwk) for k in keys]}


def issuer_url(issuer: str) -> str:
    """The issuer as tokens carry it: the base URL without a trailing slash (maa-api §1)."""
    return issuer.rstrip("/")


def jwks_uri(issuer: str) -> str:
    return issuer_url(issuer) + "/certs"


def openid_configuration(issuer: str, algorithms: Iterable[str] = ("RS256",)) -> dict[str, Any]:
    """The ``/.well-known/openid-configuration`` document (maa-api §5.1); ``algorithms``: those of the
    published keys (RS256, and ES256 in a deployment that uses it).

    MAA also lists a ``revocation_endpoint``; Affidavit serves none, so it does not advertise one.
    """
    base = issuer_url(issuer)
    return {
        "claims_supported": list(CLAIMS_SUPPORTED),
        "id_token_signing_alg_values_supported": sorted(set(algorithms), reverse=True),
        "issuer": base,
        "jwks_uri": base + "/certs",
        "response_types_supported": ["token", "none"],
    }
