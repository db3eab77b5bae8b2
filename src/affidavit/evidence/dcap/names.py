"""Issuer and subject names of certificates and CRLs as DER bytes, and their common names.

``cryptography`` turns each name into Python `x509.Name` objects on first access and compares them
attribute by attribute; the chain checks of one uncached verification touch a dozen names, about a tenth
of its time. Names here are cut from the signed TBS bytes and compared byte for byte. That is stricter
than RFC 5280's name matching (an issuer must repeat its CA's subject encoding exactly, as Intel's
certificates do), so a difference fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from affidavit.evidence import EvidenceError, der

# Intel's PCK CAs by their exact common names (sgx-dcap.md): the one place that says which CA is which.
PCK_CA_KINDS: dict[str, str] = {
    "Intel SGX PCK Processor CA": "processor",
    "Intel SGX PCK Platform CA": "platform",
}
PCK_CA_NAMES: dict[str, str] = {kind: name for name, kind in PCK_CA_KINDS.items()}


def pck_ca_kind(common_name: str) -> str | None:
    """``"processor"`` or ``"platform"`` for an Intel PCK CA's common name (exact match), else None."""
    return PCK_CA_KINDS.get(common_name)


_CN_ATTRIBUTE = b"\x06\x03\x55\x04\x03"  # OBJECT IDENTIFIER 2.5.4.3 (commonName)
_TAG_SET = 0x31
_TAG_VERSION = 0xA0  # [0] EXPLICIT Version in a TBSCertificate
_TAG_EXTENSIONS = 0xA3  # [3] EXPLICIT Extensions
_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


@dataclass(frozen=True, slots=True)
class Names:
    """A certificate's issuer and subject (the content bytes of the two Name SEQUENCEs), with the TBS
    they were cut from (``cryptography`` re-encodes it on every access; signature checks reuse it)."""

    issuer: bytes
    subject: bytes
    tbs: bytes
    spki: bytes  # the DER SubjectPublicKeyInfo, as trust anchors are keyed
    extensions: bytes  # the content of the [3] Extensions field (b"" if absent)
    cn: str  # the subject's common name (`common_name`), read once: role checks look at it repeatedly


def _fields(tbs: bytes, code: str, what: str) -> list[der.Tlv]:
    try:
        return der.read_tlvs(der.read_one(tbs, der.TAG_SEQUENCE)[1])
    except EvidenceError as exc:
        raise EvidenceError(f"{what}: the signed part does not decode ({exc.message})", code=code) from None


def _name(fields: list[der.Tlv], index: int, code: str, what: str) -> bytes:
    if index >= len(fields) or fields[index][0] != der.TAG_SEQUENCE:
        raise EvidenceError(f"{what}: no name where one belongs", code=code)
    return fields[index][1]


def _spans(tbs: bytes, code: str, what: str) -> list[tuple[int, int, int, int]]:
    """The TBS's elements as (tag, header start, value start, value end), by offsets (no copies)."""
    try:
        tag, pos, end = der.span(tbs, 0, len(tbs))
        if tag != der.TAG_SEQUENCE or end != len(tbs):
            raise der.DerError("expected exactly one SEQUENCE")
        out = []
        span = der.span
        while pos < end:
            # `der.span` inlined for the short form (all but the extensions): ~10 fields a certificate
            if end - pos >= 2 and tbs[pos + 1] < 0x80 and tbs[pos] & 0x1F != 0x1F:
                tag, start, stop = tbs[pos], pos + 2, pos + 2 + tbs[pos + 1]
                if stop > end:
                    raise der.DerError("value runs past its container")
            else:
                tag, start, stop = span(tbs, pos, end)
            out.append((tag, pos, start, stop))
            pos = stop
        return out
    except EvidenceError as exc:
        raise EvidenceError(f"{what}: the signed part does not decode ({exc.message})", code=code) from None


def tbs_of(cert_der: bytes, code: str, what: str) -> bytes:
    """The signed TBSCertificate cut from a certificate's DER (``tbs_certificate_bytes`` re-encodes it:
    ~15 µs a certificate)."""
    try:
        tag, start, end = der.span(cert_der, 0, len(cert_der))
        if tag != der.TAG_SEQUENCE or end != len(cert_der):
            raise der.DerError("expected exactly one SEQUENCE")
        tag, _, stop = der.span(cert_der, start, end)
        if tag != der.TAG_SEQUENCE:
            raise der.DerError(f"expected tag 0x{der.TAG_SEQUENCE:02x}, found 0x{tag:02x}")
        return cert_der[start:stop]
    except EvidenceError as exc:
        raise EvidenceError(f"{what}: the certificate does not decode ({exc.message})", code=code) from None


def cert_names(cert: x509.Certificate, code: str, what: str, cert_der: bytes | None = None) -> Names:
    """Issuer, subject, SPKI and extensions of ``cert``; an undecodable TBS is an error with ``code``.

    ``cert_der``: the DER ``cert`` was parsed from, when the caller has it (the TBS is cut from it)."""
    tbs = cert.tbs_certificate_bytes if cert_der is None else tbs_of(cert_der, code, what)
    fields = _spans(tbs, code, what)
    # TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, subject,
    # subjectPublicKeyInfo, [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions (all optional)
    first = 1 if fields and fields[0][0] == _TAG_VERSION else 0
    if len(fields) < first + 6 or any(fields[first + i][0] != der.TAG_SEQUENCE for i in (2, 4, 5)):
        raise EvidenceError(f"{what}: no name where one belongs", code=code)
    issuer, subject, key = fields[first + 2], fields[first + 4], fields[first + 5]
    extensions = b""
    for tag, _, start, stop in fields[first + 6 :]:
        if tag == _TAG_EXTENSIONS:
            extensions = tbs[start:stop]
    subject_name = tbs[subject[2] : subject[3]]
    return Names(
        tbs[issuer[2] : issuer[3]],
        subject_name,
        tbs,
        tbs[key[1] : key[3]],
        extensions,
        common_name(subject_name),
    )


def crl_issuer(tbs: bytes, code: str, what: str) -> bytes:
    """The issuer of a CRL, from its ``tbs_certlist_bytes``."""
    fields = _fields(tbs, code, what)
    # TBSCertList: version (optional INTEGER), signature, issuer, thisUpdate, ...
    first = 1 if fields and fields[0][0] == der.TAG_INTEGER else 0
    return _name(fields, first + 1, code, what)


def common_name(name: bytes) -> str:
    """The first commonName in a name's content bytes ("" if none or undecodable): for checks that
    a certificate has the expected role, and for messages."""
    try:
        for set_tag, rdn in der.read_tlvs(name):
            if set_tag != _TAG_SET:
                return ""
            for seq_tag, attribute in der.read_tlvs(rdn):
                if seq_tag == der.TAG_SEQUENCE and attribute.startswith(_CN_ATTRIBUTE):
                    tag, value = der.read_tlvs(attribute[len(_CN_ATTRIBUTE) :])[0]
                    codec = _STRING_CODECS.get(tag)
                    return "" if codec is None else value.decode(codec, errors="replace")
    except (EvidenceError, IndexError):
        return ""
    return ""
