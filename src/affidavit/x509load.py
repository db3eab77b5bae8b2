"""The one way to load X.509 certificates from untrusted bytes.

``cryptography`` reports a bad certificate with several unrelated exception types: ``ValueError`` for
most DER errors, ``cryptography.x509.InvalidVersion`` (not a ``ValueError``) for a bad version byte,
``UnsupportedAlgorithm`` for an unknown key type, and some fields are only parsed when first read. Every
loader here parses the certificate and touches the fields the verifiers read (names, validity, extensions,
public key), and turns *any* failure into the caller's typed error via ``fail(message)``, so that a
malformed certificate in a quote, a TPM request or a management JWS is a 400, never a 500.
"""

from __future__ import annotations

import binascii
import warnings
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

Fail = Callable[[str], Exception]
MAX_CERTIFICATES = 64  # per PEM bundle from untrusted input


def ignore_certificate_warnings() -> None:
    """Silence cryptography's warnings about certificates that RFC 5280 disallows but real hardware
    issues: serial number 0 in every VCEK and VLEK (sev-snp.md §3.1), over-long name attributes in GCE's
    AK certificates, odd ones in hostile input. The verifiers decide on such certificates by their own
    checks; under ``-W error`` the warning would refuse a valid one.

    One filter for the process, scoped to this package's modules (a warning names the module whose code
    touched the certificate) and installed at import, instead of ``warnings.catch_warnings()`` around
    each load: that swaps the process-wide filter list, so concurrent verifications restored each other's
    copies (a VCEK refused in one thread, the filters left changed)."""
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"affidavit\.")
    warnings.filterwarnings("ignore", r"Attribute's length must be", UserWarning, r"affidavit\.")


ignore_certificate_warnings()


def _checked(cert: x509.Certificate) -> x509.Certificate:
    """Force the lazily parsed fields, so that their errors surface here and not in a verifier."""
    cert.subject, cert.issuer, cert.extensions  # noqa: B018
    cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
    cert.public_key()
    return cert


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def load_der_certificate(data: bytes, fail: Fail, what: str = "certificate") -> x509.Certificate:
    """One DER certificate; ``fail(message)`` is raised for anything that is not one."""
    try:
        return _checked(x509.load_der_x509_certificate(bytes(data)))
    except Exception as exc:  # noqa: BLE001 -- every parser failure, whatever its type, is the caller's error
        raise fail(f"{what} is not a valid DER certificate: {_reason(exc)}") from None


def load_pem_certificates(
    data: bytes, fail: Fail, what: str = "certificates", *, limit: int = MAX_CERTIFICATES, touch: bool = True
) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one, at most ``limit``).

    ``touch=False`` skips forcing the lazy fields (building ``x509.Name`` objects and the extensions costs
    ~0.15 ms a certificate): only for a caller that reads names and extensions from the DER itself and
    types the errors of every field it reads (`evidence.dcap.pki`'s PCK chain)."""
    raw = bytes(data)
    if raw.count(b"-----BEGIN") > limit:
        raise fail(f"{what}: more than {limit} certificates")
    try:
        certs = x509.load_pem_x509_certificates(raw)
        if touch:
            certs = [_checked(c) for c in certs]
    except Exception as exc:  # noqa: BLE001 -- as above
        raise fail(f"{what} is not valid PEM certificates: {_reason(exc)}") from None
    if not certs:
        raise fail(f"{what}: no certificate")
    return certs


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----\n"
_PEM_END = b"-----END CERTIFICATE-----\n"


def _canonical_pem_ders(raw: bytes) -> list[bytes] | None:
    """The DER of each certificate when ``raw`` is nothing but canonical PEM blocks, else None.

    Canonical: each block's base64 is exactly what encoding its DER gives, in 64-character lines. The
    decoder may be lenient because the re-encoding must equal the text byte for byte."""
    if not raw.endswith(b"\n"):
        raw += b"\n"
    blocks = raw.split(_PEM_END)
    if blocks[-1] or len(blocks) < 2:
        return None
    ders = []
    for block in blocks[:-1]:
        if not block.startswith(_PEM_BEGIN):
            return None
        body = block[len(_PEM_BEGIN) :]
        b64 = body.replace(b"\n", b"")
        try:
            der = binascii.a2b_base64(b64)
        except binascii.Error:
            return None
        # 64 characters a line: a newline at every 65th place and at the end, and nowhere else.
        breaks = body[64::65]
        lines = len(breaks) + (len(body) % 65 != 0)
        if (
            binascii.b2a_base64(der, newline=False) != b64
            or body[-1:] != b"\n"
            or breaks.count(b"\n") != len(breaks)
            or len(body) - len(b64) != lines
        ):
            return None
        ders.append(der)
    return ders


def load_pem_certificates_der(
    data: bytes, fail: Fail, what: str = "certificates", *, limit: int = MAX_CERTIFICATES, touch: bool = True
) -> list[tuple[x509.Certificate, bytes]]:
    """`load_pem_certificates`, each certificate with its DER (``public_bytes`` re-encodes: ~15 µs each).

    Canonical PEM (what Intel's PCK chains are) is decoded here and each DER parsed by ``cryptography``,
    the bytes it parsed kept; any other layout goes to ``cryptography``'s PEM reader, which decides as
    before, and the DER is re-encoded from its result."""
    raw = bytes(data)
    if raw.count(b"-----BEGIN") > limit:
        raise fail(f"{what}: more than {limit} certificates")
    ders = _canonical_pem_ders(raw)
    if ders is None:
        certs = load_pem_certificates(raw, fail, what, limit=limit, touch=touch)
        return [(c, c.public_bytes(Encoding.DER)) for c in certs]
    try:
        out = []
        for der in ders:
            cert = x509.load_der_x509_certificate(der)
            out.append((_checked(cert) if touch else cert, der))
    except Exception as exc:  # noqa: BLE001 -- as in load_pem_certificates
        raise fail(f"{what} is not valid PEM certificates: {_reason(exc)}") from None
    return out


def load_certificates(data: bytes, fail: Fail, what: str = "certificates") -> list[x509.Certificate]:
    """A PEM bundle, or one DER certificate."""
    if bytes(data).lstrip().startswith(b"-----BEGIN"):
        return load_pem_certificates(data, fail, what)
    return [load_der_certificate(data, fail, what)]


def load_certificate(data: bytes, fail: Fail, what: str = "certificate") -> x509.Certificate:
    """Exactly one certificate, PEM or DER."""
    certs = load_certificates(data, fail, what)
    if len(certs) != 1:
        raise fail(f"{what}: expected one certificate, got {len(certs)}")
    return certs[0]
