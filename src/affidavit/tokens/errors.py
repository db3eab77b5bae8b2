"""The token layer's single error type."""

from __future__ import annotations

from affidavit.errors import AffidavitError

# Codes whose cause is the signer's certificate or signature rather than the envelope's shape. MAA answers
# those with ``InvalidParameter`` ("bad certificate chain") and everything else with ``InvalidOperation``.
_SIGNER_CODES = frozenset(
    {"bad_signature", "bad_certificate", "signer_expired", "signer_not_yet_valid", "untrusted_signer"}
)


class TokenError(AffidavitError):
    """A JWT/JWS could not be built, parsed or verified.

    Stable codes: ``malformed_jws`` (not three segments, not ASCII), ``bad_base64``, ``bad_json``
    (including duplicate member names and non-object headers/payloads), ``unsupported_alg``,
    ``missing_signer`` (no ``x5c``/``jwk.x5c``), ``bad_certificate``, ``bad_signature``,
    ``signer_expired``, ``signer_not_yet_valid``, ``untrusted_signer``, ``missing_claim``,
    ``bad_claim``, ``bad_key``, ``unserializable_claims``.
    """

    code = "token_error"

    @property
    def maa_code(self) -> str:
        """The MAA error code the service should answer with (both on HTTP 400)."""
        return "InvalidParameter" if self.code in _SIGNER_CODES else "InvalidOperation"
