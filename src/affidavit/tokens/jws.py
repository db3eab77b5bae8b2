"""Parsing and checking the JWS envelopes of policy management (maa-api §7.1, §8).

Clients send compact JWS: unsigned (``alg: none``, empty signature) or signed with RS256. The Azure SDK
writes the non-standard ``"alg": "RSA256"`` and puts the signer certificate under ``jwk.x5c`` rather than
a top-level ``x5c``; both spellings are accepted. Everything here is strict and fails closed: a malformed
envelope, an unknown algorithm, a bad signature or a signer outside its validity period is a
:class:`TokenError`, never a pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit.jose import POLICY_ALGS, CompactJws, parse_compact, verify_signature
from affidavit.tokens.b64 import b64std_decode, b64url_decode
from affidavit.tokens.errors import TokenError, from_jose

RSA_ALGS = frozenset({"RS256", "RSA256"})  # MAA's SDK writes RSA256; both are checked as RS256
# Names MAA documents for the certificate in a certificates:add/remove payload (maa-api §8).
POLICY_CERTIFICATE_CLAIMS = (
    "policyCertificate", "maa-policyCertificate", "x-ms-policyCertificate", "aas-policyCertificate",
)
_MAX_CHAIN_DEPTH = 8
# Certificates an ``x5c`` may list (signer first), counted before any is decoded: a real signer chain
# has 1-4; unbounded, a 1 MiB body lists ~2,000 that are each parsed and tried as the signer's issuer.
MAX_X5C = 10


@dataclass(frozen=True)
class Jws:
    """A parsed compact JWS. ``payload`` is None when the payload segment is empty (a reset)."""

    text: str
    header: dict[str, Any]
    payload: dict[str, Any] | None
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def signed(self) -> bool:
        return self.alg != "none"


def parse_jws(text: str | bytes) -> Jws:
    """Split and decode a compact JWS (surrounding whitespace ignored); no signature check yet. The JOSE
    package's one parser (duplicate members refused), failing as ``TokenError``."""
    with from_jose():
        compact = parse_compact(text)
        payload = compact.payload_object()
    return Jws(compact.text, compact.header, payload, compact.signing_input, compact.signature)


def _x5c_list(value: Any, where: str, code: str = "bad_certificate") -> list[str]:
    """``value`` as an ``x5c``: 1 to ``MAX_X5C`` strings, checked before any is decoded."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise TokenError(f"{where} must be a non-empty list of base64 strings", code=code)
    if len(value) > MAX_X5C:
        raise TokenError(f"{where} lists {len(value)} certificates, at most {MAX_X5C}", code=code)
    return value


def load_certificate(der_b64: str, what: str = "x5c certificate") -> x509.Certificate:
    """Parse one ``x5c`` entry (standard base64 of DER)."""
    from affidavit import x509load

    der = b64std_decode(der_b64, what=what)
    return x509load.load_der_certificate(der, lambda m: TokenError(m, code="bad_certificate"), what)


def signer_chain(jws: Jws) -> list[x509.Certificate]:
    """The certificates the header carries, signer first, from ``x5c`` or the SDK's ``jwk.x5c``."""
    entries: list[str] | None = None
    if "x5c" in jws.header:
        entries = _x5c_list(jws.header["x5c"], "header x5c")
    jwk = jws.header.get("jwk")
    if jwk is not None:
        if not isinstance(jwk, dict):
            raise TokenError("header jwk must be an object", code="bad_certificate")
        if "x5c" in jwk:
            inner = _x5c_list(jwk["x5c"], "header jwk.x5c")
            if entries is not None and inner != entries:
                raise TokenError("header x5c and jwk.x5c disagree", code="bad_certificate")
            entries = inner
    if entries is None:
        raise TokenError("signed JWS carries no certificate (x5c or jwk.x5c)", code="missing_signer")
    return [load_certificate(e) for e in entries]


def check_validity(cert: x509.Certificate, now: datetime, what: str = "signer certificate") -> None:
    if now < cert.not_valid_before_utc:
        raise TokenError(
            f"{what} is not valid before {cert.not_valid_before_utc}", code="signer_not_yet_valid"
        )
    if now > cert.not_valid_after_utc:
        raise TokenError(f"{what} expired at {cert.not_valid_after_utc}", code="signer_expired")


def verify_jws(jws: Jws, *, now: datetime) -> x509.Certificate | None:
    """Check the signature; return the signer certificate, or None for an unsigned (``alg: none``) JWS.

    Whether the signer is *trusted* is the caller's decision (see :func:`check_signer_trusted`).
    """
    if "crit" in jws.header:
        raise TokenError("JWS critical header parameters are not supported", code="unsupported_alg")
    if jws.alg == "none":
        if jws.signature:
            raise TokenError("unsigned JWS must have an empty signature", code="bad_signature")
        return None
    if jws.alg not in RSA_ALGS:
        raise TokenError(f"JWS alg {jws.alg!r} is not supported (RS256 only)", code="unsupported_alg")
    signer = signer_chain(jws)[0]
    try:
        key = signer.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise TokenError("signer certificate has an unreadable public key", code="bad_certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise TokenError(f"alg {jws.alg} needs an RSA signer certificate", code="bad_certificate")
    compact = CompactJws(jws.text, jws.header, b"", jws.signing_input, jws.signature)
    with from_jose(bad_key="bad_certificate"):  # MAA's edge: its "RSA256" is RS256
        verify_signature(compact, key, POLICY_ALGS, alg="RS256")
    check_validity(signer, now)
    return signer


MANAGEMENT_SKEW = timedelta(minutes=5)


def check_jws_times(jws: Jws, *, now: datetime, skew: timedelta = MANAGEMENT_SKEW) -> None:
    """Enforce ``exp``, ``nbf`` and ``iat`` where a management JWS carries them (with ``skew`` of clock
    difference): the Azure SDK's signed policies carry none, so their absence is no error; freshness of
    those rests on the authenticated caller (docs/service.md, "Security model")."""
    payload = jws.payload or {}
    at = now.timestamp()
    margin = skew.total_seconds()
    for name in ("exp", "nbf", "iat"):
        if name not in payload:
            continue
        value = payload[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TokenError(f"JWS claim {name!r} must be a number of seconds", code="bad_claim")
        if name == "exp" and at > value + margin:
            raise TokenError("the JWS has expired (exp)", code="jws_expired")
        if name in ("nbf", "iat") and at + margin < value:
            raise TokenError(f"the JWS is not valid yet ({name} in the future)", code="jws_not_yet_valid")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    if not _is_ca(issuer) or not (issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def check_signer_trusted(
    signer: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    *,
    chain: Sequence[x509.Certificate] = (),
    now: datetime,
) -> None:
    """Isolated mode: ``signer`` must be one of ``trusted`` or chain to one of them through ``chain``.

    An issuing certificate must be a CA (BasicConstraints ca=true) and valid at ``now``.
    """
    trusted_ders = {t.tbs_certificate_bytes + t.signature for t in trusted}
    cert = signer
    for _ in range(_MAX_CHAIN_DEPTH):
        if cert.tbs_certificate_bytes + cert.signature in trusted_ders:
            return
        if any(_issued_by(cert, t, now) for t in trusted):
            return
        parent = next((c for c in chain if c is not cert and _issued_by(cert, c, now)), None)
        if parent is None:
            break
        cert = parent
    raise TokenError("JWS signer is not a registered policy management certificate", code="untrusted_signer")


def policy_text_from_jws(jws: Jws) -> str | None:
    """The policy carried in ``AttestationPolicy`` (base64url of UTF-8 text).

    None means the JWS has no payload at all: that is the reset form (maa-api §7.1), and for a PUT the
    caller rejects it. A payload without ``AttestationPolicy`` is a ``missing_claim`` error; an empty
    ``AttestationPolicy`` decodes to ``""``, which the policy compiler then rejects.
    """
    if jws.payload is None:
        return None
    value = jws.payload.get("AttestationPolicy")
    if value is None:
        raise TokenError("JWS payload has no AttestationPolicy claim", code="missing_claim")
    if not isinstance(value, str):
        raise TokenError("AttestationPolicy must be a base64url string", code="bad_claim")
    raw = b64url_decode(value, what="AttestationPolicy")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("AttestationPolicy is not UTF-8 text", code="bad_claim") from None


def certificate_from_jws(jws: Jws) -> x509.Certificate:
    """The certificate a certificates:add/remove JWS names (``policyCertificate`` JWK, first ``x5c``)."""
    if jws.payload is None:
        raise TokenError("JWS has no payload", code="missing_claim")
    found = [jws.payload[n] for n in POLICY_CERTIFICATE_CLAIMS if n in jws.payload]
    if not found:
        raise TokenError("JWS payload has no policyCertificate claim", code="missing_claim")
    if any(f != found[0] for f in found):
        raise TokenError("JWS payload names two different certificates", code="bad_claim")
    jwk = found[0]
    if not isinstance(jwk, dict) or "x5c" not in jwk:
        raise TokenError("policyCertificate must be a JWK with x5c", code="bad_claim")
    entries = _x5c_list(jwk["x5c"], "policyCertificate x5c", code="bad_claim")
    return load_certificate(entries[0], "policyCertificate")


def sign_jws(
    payload: dict[str, Any] | None, key: rsa.RSAPrivateKey, chain: Sequence[x509.Certificate]
) -> str:
    """A compact RS256 JWS of ``payload`` (None: the empty payload of a reset) with the signer certificate
    chain in ``x5c``, as a policy management client sends it; :func:`verify_jws` accepts it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import Encoding

    from affidavit.tokens.b64 import b64url_encode

    if not chain:
        raise TokenError("a signed JWS needs the signer certificate", code="missing_signer")
    if chain[0].public_key() != key.public_key():
        raise TokenError("the private key does not belong to the signer certificate", code="bad_certificate")
    import base64

    header = {"alg": "RS256", "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]}
    compact = (",", ":")
    body = b64url_encode(json.dumps(payload, separators=compact).encode()) if payload is not None else ""
    signing_input = b64url_encode(json.dumps(header, separators=compact).encode()) + "." + body
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url_encode(signature)
