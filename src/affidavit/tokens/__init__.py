"""Tokens: signing keys, JWT issuance, JWKS/OpenID metadata, and the JWS envelopes of policy management.

Pure: no I/O and no clock; callers pass ``now`` where time matters. Every failure is a :class:`TokenError`.
"""

from affidavit.tokens.b64 import b64std_decode, b64std_encode, b64url_decode, b64url_encode
from affidavit.tokens.errors import TokenError
from affidavit.tokens.jws import (
    MANAGEMENT_SKEW,
    POLICY_CERTIFICATE_CLAIMS,
    Jws,
    certificate_from_jws,
    check_jws_times,
    check_signer_trusted,
    check_validity,
    parse_jws,
    policy_text_from_jws,
    signer_chain,
    verify_jws,
)
from affidavit.tokens.jwt import encode_jwt, unsecured_jwt
from affidavit.tokens.keys import (
    DEFAULT_MAX_TOKEN_LIFETIME,
    KeyRing,
    RetiredKey,
    SigningKey,
    kid_for,
)
from affidavit.tokens.metadata import issuer_url, jwks, jwks_uri, openid_configuration
from affidavit.tokens.results import (
    ATTESTATION_TOKEN_LIFETIME,
    POLICY_RESULT_LIFETIME,
    certificate_jwk,
    certificate_thumbprint,
    certificates_modification_claims,
    policy_certificates_claims,
    policy_get_claims,
    policy_reset_claims,
    policy_set_claims,
    policy_token_hash,
    timed_claims,
    unsigned_policy_jws,
)

__all__ = [
    "ATTESTATION_TOKEN_LIFETIME",
    "DEFAULT_MAX_TOKEN_LIFETIME",
    "POLICY_CERTIFICATE_CLAIMS",
    "POLICY_RESULT_LIFETIME",
    "Jws",
    "KeyRing",
    "RetiredKey",
    "SigningKey",
    "TokenError",
    "b64std_decode",
    "b64std_encode",
    "b64url_decode",
    "b64url_encode",
    "MANAGEMENT_SKEW",
    "certificate_from_jws",
    "check_jws_times",
    "certificate_jwk",
    "certificate_thumbprint",
    "certificates_modification_claims",
    "check_signer_trusted",
    "check_validity",
    "encode_jwt",
    "issuer_url",
    "jwks",
    "jwks_uri",
    "kid_for",
    "openid_configuration",
    "parse_jws",
    "policy_certificates_claims",
    "policy_get_claims",
    "policy_reset_claims",
    "policy_set_claims",
    "policy_text_from_jws",
    "policy_token_hash",
    "signer_chain",
    "timed_claims",
    "unsecured_jwt",
    "unsigned_policy_jws",
    "verify_jws",
]
