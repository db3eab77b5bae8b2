"""Claim sets of the policy-management result tokens (maa-api §7.3, §8) and their hashes.

Each builder returns the body-specific claims; :func:`timed_claims` adds ``iss``/``iat``/``nbf``/``exp``.
The service signs the union with :func:`affidavit.tokens.encode_jwt`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.tokens.b64 import b64std_encode, b64url_encode
from affidavit.tokens.metadata import issuer_url

POLICY_RESULT_LIFETIME = timedelta(seconds=3600)
ATTESTATION_TOKEN_LIFETIME = timedelta(hours=8)


def timed_claims(issuer: str, now: datetime, lifetime: timedelta) -> dict[str, Any]:
    """``iss``, ``iat``, ``nbf`` = ``iat`` (as MAA does) and ``exp`` = ``iat + lifetime``, whole seconds."""
    iat = int(now.timestamp())
    return {"exp": iat + int(lifetime.total_seconds()), "iat": iat, "iss": issuer_url(issuer), "nbf": iat}


def policy_token_hash(jws_text: str) -> str:
    """``x-ms-policy-token-hash``: base64url(SHA-256(the compact JWS exactly as received))."""
    return b64url_encode(hashlib.sha256(jws_text.encode("utf-8")).digest())


def _der(cert: x509.Certificate | bytes) -> bytes:
    return cert if isinstance(cert, bytes) else cert.public_bytes(Encoding.DER)


def certificate_thumbprint(cert: x509.Certificate | bytes) -> str:
    """``x-ms-certificate-thumbprint``: upper-case hex SHA-1 of the DER."""
    return hashlib.sha1(_der(cert)).hexdigest().upper()


def certificate_jwk(cert: x509.Certificate | bytes) -> dict[str, Any]:
    """The JWK form MAA uses for ``x-ms-policy-signer`` and ``x-ms-policy-certificates`` entries."""
    c = cert if isinstance(cert, x509.Certificate) else x509.load_der_x509_certificate(cert)
    try:
        is_ec = isinstance(c.public_key(), ec.EllipticCurvePublicKey)
    except (ValueError, UnsupportedAlgorithm):  # an exotic key still gets the RSA-shaped entry the SDK reads
        is_ec = False
    alg, kty = ("ES256", "EC") if is_ec else ("RS256", "RSA")
    return {"alg": alg, "kty": kty, "use": "sig", "x5c": [b64std_encode(_der(c))]}


def unsigned_policy_jws(text: str) -> str:
    """The unsigned JWS the SDK sends for ``text`` (maa-api §7.1), byte for byte.

    GET of a policy that was never set returns the default policy in this form.
    """
    body = json.dumps({"AttestationPolicy": b64url_encode(text.encode("utf-8"))})
    return "eyJhbGciOiJub25lIn0." + b64url_encode(body.encode("utf-8")) + "."


def policy_get_claims(policy_jws: str) -> dict[str, Any]:
    """GET /policies/{t}: ``x-ms-policy`` holds the stored JWS verbatim."""
    return {"x-ms-policy": policy_jws}


def policy_set_claims(jws_text: str, signer: x509.Certificate | None) -> dict[str, Any]:
    """PUT /policies/{t}: ``Updated``, the token hash, and the signer when the JWS was signed."""
    claims: dict[str, Any] = {
        "x-ms-policy-result": "Updated",
        "x-ms-policy-token-hash": policy_token_hash(jws_text),
    }
    if signer is not None:
        claims["x-ms-policy-signer"] = certificate_jwk(signer)
    return claims


def policy_reset_claims() -> dict[str, Any]:
    """POST /policies/{t}:reset: ``Removed`` and nothing else."""
    return {"x-ms-policy-result": "Removed"}


def policy_certificates_claims(certs: Iterable[x509.Certificate | bytes]) -> dict[str, Any]:
    """GET /certificates: every registered certificate as a JWK (``{"keys": []}`` when none)."""
    return {"x-ms-policy-certificates": {"keys": [certificate_jwk(c) for c in certs]}}


def certificates_modification_claims(cert: x509.Certificate | bytes, *, present: bool) -> dict[str, Any]:
    """POST /certificates:add (``IsPresent``) and :remove (``IsAbsent``)."""
    return {
        "x-ms-certificate-thumbprint": certificate_thumbprint(cert),
        "x-ms-policycertificates-result": "IsPresent" if present else "IsAbsent",
    }
