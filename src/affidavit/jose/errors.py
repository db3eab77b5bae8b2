"""The JOSE layer's one error type."""

from __future__ import annotations

from affidavit.errors import AffidavitError


class JoseError(AffidavitError):
    """A JOSE object is malformed, uses an algorithm or key this use does not allow, or does not verify.

    Stable codes: ``malformed_jws`` (not three ASCII segments, no ``alg``), ``bad_base64``, ``bad_json``
    (not UTF-8 JSON, not an object, a duplicate member, ``NaN``/``Infinity``), ``unsupported_alg`` (not on
    this use's allow-list, or ``crit``), ``bad_key`` (a JWK that does not decode, RSA under 2048 bits, an
    unsupported curve or key type), ``bad_signature``. Each user re-raises it as its own layer's error
    with the same code (``tokens.TokenError``, ``relying_party.RelyingPartyError``, the TPM protocol's).
    """

    code = "jose_error"
