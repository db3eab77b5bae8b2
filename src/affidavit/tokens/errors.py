"""The token layer's single error type."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from affidavit.errors import AffidavitError
from affidavit.jose import JoseError


class TokenError(AffidavitError):
    """A JWT/JWS could not be built, parsed or verified.

    Stable codes: ``malformed_jws`` (not three segments, not ASCII), ``bad_base64``, ``bad_json``
    (including duplicate member names and non-object headers/payloads), ``unsupported_alg``,
    ``missing_signer`` (no ``x5c``/``jwk.x5c``), ``bad_certificate``, ``bad_signature``,
    ``signer_expired``, ``signer_not_yet_valid``, ``untrusted_signer``, ``missing_claim``,
    ``bad_claim``, ``bad_key``, ``unserializable_claims``.
    """

    code = "token_error"
    # The HTTP status and MAA code each code answers with: ``affidavit.service.errors`` (the error table).


@contextmanager
def from_jose(**codes: str) -> Iterator[None]:
    """Re-raise a ``JoseError`` as a ``TokenError`` with the same code (or ``codes[jose_code]``)."""
    try:
        yield
    except JoseError as exc:
        raise TokenError(exc.message, code=codes.get(exc.code, exc.code)) from None
