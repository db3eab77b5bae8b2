"""AMD certificates: loading (DER or PEM, serial 0 tolerated), strict outer-structure checks, the VCEK/VLEK
extensions (OID arc 1.3.6.1.4.1.3704.1, sev-snp.md §3.2) and the role of each certificate by its CN.

`cryptography` does not check the unsigned parts of a certificate: the outer signatureAlgorithm must
equal the one inside the TBS (RFC 5280 §4.1.1.2) and the signature BIT STRING must have no unused bits.
A flipped byte there would otherwise leave a VCEK "valid"; the vectors' mutants include such bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from affidavit import x509load  # noqa: F401 -- installs the certificate-warning filter
from affidavit.evidence import EvidenceError, der
from affidavit.evidence.der import span  # the strict TLV header reader, by offsets
from affidavit.evidence.snp.errors import CERTIFICATE_MALFORMED, SnpError
from affidavit.evidence.snp.report import PRODUCTS

AMD_ARC = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = AMD_ARC + ".1"
OID_PRODUCT_NAME = AMD_ARC + ".2"
OID_BL_SPL = AMD_ARC + ".3.1"
OID_TEE_SPL = AMD_ARC + ".3.2"
OID_SNP_SPL = AMD_ARC + ".3.3"
OID_UCODE_SPL = AMD_ARC + ".3.8"
OID_FMC_SPL = AMD_ARC + ".3.9"
OID_HWID = AMD_ARC + ".4"
OID_CSP_ID = AMD_ARC + ".5"
SPL_OIDS = {OID_BL_SPL: "blSPL", OID_TEE_SPL: "teeSPL", OID_SNP_SPL: "snpSPL", OID_UCODE_SPL: "ucodeSPL",
            OID_FMC_SPL: "fmcSPL"}

MAX_CERTIFICATE_BYTES = 16 * 1024
"""A single AMD certificate is 1.3-2.1 KB; anything larger is refused before parsing."""
MAX_BUNDLE_CERTIFICATES = 16
"""A VcekCertChain holds 3; the shipped trust 12 (ARK twice per product, ASK, ASVK)."""

VCEK_CN, VLEK_CN = "SEV-VCEK", "SEV-VLEK"

CertInput = bytes | str | x509.Certificate


def _fail(message: str) -> SnpError:
    return SnpError(message, code=CERTIFICATE_MALFORMED)


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def cn_of_name(name: x509.Name) -> str:
    """The name's last CN, as the strict DER walk (``_names_of``) reads it: the chain and CRL look-ups
    use one reader, the product and role checks the other, and they must not disagree."""
    try:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(attrs[-1].value) if attrs else ""


def cn(cert: x509.Certificate) -> str:
    """The subject CN, "" when absent or malformed (cryptography parses names lazily)."""
    try:
        return cn_of_name(cert.subject)
    except ValueError:
        return ""


def issuer_cn(cert: x509.Certificate) -> str:
    try:
        return cn_of_name(cert.issuer)
    except ValueError:
        return ""


_CN_OID = b"\x55\x04\x03"
_STRING_TAGS = (0x0C, 0x13, 0x16, 0x14, 0x1E)


def _walk(data: bytes, limit: int | None = 7) -> tuple[int, int, int, list[tuple[int, int, int, int]]]:
    """Walk ``Certificate ::= SEQUENCE {tbs, algorithm, signature}`` by offsets (no slicing of the big
    parts): (start of the TBS TLV, end of the TBS, end of the certificate body, the TBS's first ``limit``
    elements as (tag, header start, value start, value end)); the signed bytes are
    ``data[start:end of the TBS]``."""
    end = len(data)
    tag, start, stop = span(data, 0, end)
    if tag != der.TAG_SEQUENCE or stop != end:
        raise _fail("certificate is not one DER SEQUENCE")
    tag, tbs_start, tbs_stop = span(data, start, stop)
    if tag != der.TAG_SEQUENCE:
        raise _fail("certificate TBS is not a SEQUENCE")
    fields: list[tuple[int, int, int, int]] = []
    pos = tbs_start
    while pos < tbs_stop and (limit is None or len(fields) < limit):
        t, v0, v1 = span(data, pos, tbs_stop)
        fields.append((t, pos, v0, v1))
        pos = v1
    return start, tbs_stop, stop, fields


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What chain building reads from a certificate, cut from its DER in the one strict walk that
    loading does (`load_certificate`): no `x509.Name` objects (~50 us each), no re-serialization."""

    cn: str  # subject CN ("" when absent)
    subject: bytes  # subject Name DER
    issuer: bytes  # issuer Name DER
    der: bytes
    tbs: bytes  # the signed TBSCertificate (header included)
    algorithm: bytes  # signatureAlgorithm DER (byte-equal to the TBS's one: `_strict_outer`)
    signature: bytes  # the signature BIT STRING's bits (zero unused bits)
    extensions: tuple[tuple[int, int], ...]  # value spans of the TBS's [3] Extensions in ``der``


def _strict_outer(data: bytes) -> CertFacts:
    """Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }: one TLV, outer
    algorithm byte-equal to the TBS's (RFC 5280 4.1.1.2), signature with zero unused bits."""
    try:
        start, tbs_stop, stop, fields = _walk(data, None)
        tag, a0, a1 = span(data, tbs_stop, stop)
        if tag != der.TAG_SEQUENCE:
            raise _fail("certificate signatureAlgorithm is not a SEQUENCE")
        tag, b0, b1 = span(data, a1, stop)
        if tag != 0x03 or b1 != stop or b0 == b1 or data[b0] != 0:
            raise _fail("certificate signature is not a final BIT STRING with zero unused bits")
        idx = 1 if fields and fields[0][0] == 0xA0 else 0  # [0] version is optional
        if len(fields) < idx + 5:
            raise _fail("certificate TBS is too short")
        _, h, _, v1 = fields[idx + 1]
        if data[h:v1] != data[tbs_stop:a1]:
            raise _fail("certificate signatureAlgorithm differs from the TBS one (RFC 5280 4.1.1.2)")
        common, subject, issuer = _names_of(data, fields)
        exts = tuple((v0, v1) for tag, _, v0, v1 in fields[idx + 6 :] if tag == 0xA3)
        return CertFacts(common, subject, issuer, data, data[start:tbs_stop], data[tbs_stop:a1],
                         data[b0 + 1 : b1], exts)
    except SnpError:
        raise
    except EvidenceError as exc:
        # the DER reader is shared with SGX and names the PCK extension in its messages
        raise _fail(f"certificate DER: {exc.message}") from None


Known = dict[bytes, x509.Certificate] | None
"""DER -> certificate already loaded and checked (the trust's own certificates), to skip re-parsing."""


Facts = dict[int, CertFacts] | None
"""id(certificate) -> its `CertFacts`, filled by the loaders for chain building."""


def cert_facts(cert: x509.Certificate) -> CertFacts:
    """`CertFacts` of a certificate loaded elsewhere (the trust's own, read once)."""
    return _strict_outer(cert.public_bytes(Encoding.DER))


def der_names(cert: x509.Certificate) -> tuple[str, bytes, bytes]:
    """(subject CN, subject DER, issuer DER) read from the certificate's DER with the strict reader."""
    facts = cert_facts(cert)
    return facts.cn, facts.subject, facts.issuer


def _names_of(data: bytes, fields: list[tuple[int, int, int, int]]) -> tuple[str, bytes, bytes]:
    """(subject CN, subject DER, issuer DER): Name ::= SEQUENCE OF SET OF {OID, string}, walked by
    offsets; the last CN wins (as `cn` reads it)."""
    try:
        idx = 1 if fields and fields[0][0] == 0xA0 else 0
        _, ih, _, iv1 = fields[idx + 2]
        stag, sh, pos, sv1 = fields[idx + 4]
        if stag != der.TAG_SEQUENCE:
            raise IndexError
        common = ""
        while pos < sv1:
            tag, a, rdn_end = span(data, pos, sv1)
            if tag != 0x31:
                raise IndexError
            while a < rdn_end:
                tag, v0, atv_end = span(data, a, rdn_end)
                if tag != der.TAG_SEQUENCE:
                    raise IndexError
                t0, o0, o1 = span(data, v0, atv_end)
                if o1 < atv_end:
                    t1, x0, x1 = span(data, o1, atv_end)
                    if t0 == der.TAG_OID and x1 == atv_end and data[o0:o1] == _CN_OID and t1 in _STRING_TAGS:
                        common = data[x0:x1].decode("utf-16-be" if t1 == 0x1E else "utf-8")
                a = atv_end
            pos = rdn_end
    except (EvidenceError, IndexError, UnicodeDecodeError):
        raise _fail("certificate names are malformed") from None
    return common, data[sh:sv1], data[ih:iv1]


def load_certificate(data: CertInput, known: Known = None, names: Facts = None) -> x509.Certificate:
    """One certificate from DER, PEM or a `cryptography` object (checked the same way). ``names``, when
    given, receives ``id(cert) -> CertFacts``, read during the same strict walk."""
    # bytes first: isinstance against cryptography's abstract classes is slow for other types
    if isinstance(data, bytes | bytearray | str):
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if b"-----BEGIN" in raw:
            certs = load_certificates(raw, known, names)
            if len(certs) != 1:
                raise _fail(f"expected one PEM certificate, found {len(certs)}")
            return certs[0]
    elif isinstance(data, x509.Certificate):
        raw = data.public_bytes(Encoding.DER)
    else:
        raise _fail("certificate must be DER or PEM bytes")
    if known is not None:
        hit = known.get(raw)
        if hit is not None:
            return hit
    if len(raw) > MAX_CERTIFICATE_BYTES:
        raise _fail(f"certificate larger than {MAX_CERTIFICATE_BYTES} bytes")
    facts = _strict_outer(raw)
    try:
        # VCEKs and VLEKs have serial number 0 (sev-snp.md §3.1): cryptography's warning about it is
        # silenced for this package (x509load.ignore_certificate_warnings); the checks here decide.
        cert = x509.load_der_x509_certificate(raw)
        # `cryptography` parses lazily: touch everything used later so a bad field fails here.
        cert.serial_number  # noqa: B018
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
        cert.public_key()
        cert.signature_algorithm_oid  # noqa: B018
    except Exception as exc:  # noqa: BLE001 - cryptography raises ValueError, InvalidVersion,
        # DuplicateExtension, UnsupportedAlgorithm ... for hostile DER; all of them mean "malformed".
        raise _fail(f"not a usable DER certificate: {exc}") from None
    if names is not None:
        names[id(cert)] = facts
    return cert


def _pem_bodies(data: bytes) -> list[bytes]:
    """The bodies of the PEM certificates in ``data``: the text between the BEGIN and END lines, as it
    is (`_from_pem_body` removes the whitespace unless the text is one the trust knows)."""
    bodies: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while True:
        start = data.find(begin, pos)
        if start < 0:
            break
        stop = data.find(end, start)
        if stop < 0:
            raise _fail("PEM certificate without END line")
        bodies.append(data[start + len(begin) : stop])
        pos = stop + len(end)
        if len(bodies) > MAX_BUNDLE_CERTIFICATES:
            raise _fail(f"more than {MAX_BUNDLE_CERTIFICATES} certificates in a bundle")
    return bodies


def _from_pem_body(text: bytes, known: Known, names: Facts) -> x509.Certificate:
    if known is not None:
        hit = known.get(text)  # the trust's certificates are indexed by their PEM text too
        if hit is not None:
            return hit
    body = text.translate(None, b" \t\r\n")
    if known is not None:
        hit = known.get(body)  # ... and by their base64 without whitespace
        if hit is not None:
            return hit
    try:
        der_bytes = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("PEM certificate body is not base64") from None
    return load_certificate(der_bytes, known, names)


def load_certificates(
    data: CertInput | Iterable[CertInput] | None, known: Known = None, names: Facts = None
) -> list[x509.Certificate]:
    """Certificates from a PEM bundle, one DER certificate, a certificate, or a sequence of those."""
    if data is None:
        return []
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
        if b"-----BEGIN" in raw:
            bodies = _pem_bodies(raw)
            if not bodies:
                raise _fail("no PEM certificate found")
            return [_from_pem_body(b, known, names) for b in bodies]
        return [load_certificate(raw, known, names)] if raw else []
    if isinstance(data, x509.Certificate):
        return [load_certificate(data, known, names)]
    out: list[x509.Certificate] = []
    for item in data:
        out.extend(load_certificates(item, known, names))
        if len(out) > MAX_BUNDLE_CERTIFICATES:
            raise _fail(f"more than {MAX_BUNDLE_CERTIFICATES} certificates given")
    return out


def product_of_name(name: str) -> str | None:
    """``ARK-Milan`` / ``SEV-Milan`` / ``SEV-VLEK-Milan`` / ``Milan-B0`` -> ``Milan``."""
    for prefix in ("ARK-", "SEV-VLEK-", "SEV-"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    base = name.split("-", 1)[0]
    return base if base in PRODUCTS else None


@dataclass(frozen=True)
class VekExtensions:
    """The AMD extensions of a VCEK or VLEK. SPL values are decoded DER INTEGERs (never "the third
    byte"); ``hw_id`` is the raw id (the OCTET STRING wrapper removed when present)."""

    struct_version: int | None
    product_name: str | None
    spls: dict[str, int]
    hw_id: bytes | None
    csp_id: str | None


def _integer(value: bytes, what: str) -> int:
    # Fast path for the one- and two-byte INTEGERs every real VEK carries (02 01 xx, 02 02 00 xx).
    if len(value) == 3 and value[0] == der.TAG_INTEGER and value[1] == 1 and value[2] < 0x80:
        return value[2]
    if len(value) == 4 and value[:3] == b"\x02\x02\x00" and value[3] >= 0x80:
        return value[3]
    try:
        tlv = der.read_one(value, der.TAG_INTEGER)
        number = der.decode_integer(tlv[1], what)
    except EvidenceError as exc:
        raise _fail(f"VEK extension {what}: {exc.message}") from None
    if number < 0 or number > 255:
        raise _fail(f"VEK extension {what} = {number} is not an SPL (0..255)")
    return number


def _ia5(value: bytes, what: str) -> str:
    try:
        tlv = der.read_one(value, 0x16)
    except EvidenceError as exc:
        raise _fail(f"VEK extension {what}: {exc.message}") from None
    try:
        return tlv[1].decode("ascii")
    except UnicodeDecodeError:
        raise _fail(f"VEK extension {what} is not ASCII") from None


def _hw_id(value: bytes) -> bytes:
    """Raw in every real VCEK; accept the DER OCTET STRING form too (go-sev-guest, Trustee do)."""
    if len(value) in (66, 10) and value[0] == der.TAG_OCTET_STRING and value[1] == len(value) - 2:
        return value[2:]
    return value


_AMD_OID_PREFIX = b"\x2b\x06\x01\x04\x01\x9c\x78\x01"  # 1.3.6.1.4.1.3704.1
_AMD_OIDS = {
    b"\x01": OID_STRUCT_VERSION, b"\x02": OID_PRODUCT_NAME, b"\x03\x01": OID_BL_SPL, b"\x03\x02": OID_TEE_SPL,
    b"\x03\x03": OID_SNP_SPL, b"\x03\x08": OID_UCODE_SPL, b"\x03\x09": OID_FMC_SPL, b"\x04": OID_HWID,
    b"\x05": OID_CSP_ID,
}


def _amd_extensions(facts: CertFacts) -> dict[str, bytes]:
    """The AMD-arc extensions' values, read by offsets from the certificate DER's ``[3] Extensions``
    (found by the loading walk): ``Extension ::= SEQUENCE {OID, critical BOOLEAN DEFAULT FALSE, OCTET
    STRING}``, nothing else. A duplicated extension is malformed (RFC 5280). Short-form lengths (all of
    a VEK's) are read inline; this runs once per new VEK."""
    data = facts.der
    out: dict[str, bytes] = {}
    seen: set[bytes] = set()
    prefix, plen = _AMD_OID_PREFIX, len(_AMD_OID_PREFIX)
    shape = "certificate extension is not SEQUENCE {OID, [critical], OCTET STRING}"
    try:
        for v0, v1 in facts.extensions:
            tag, pos, end = span(data, v0, v1)
            if tag != der.TAG_SEQUENCE or end != v1:
                raise _fail("certificate extensions are not one SEQUENCE")
            while pos < end:
                if data[pos] != der.TAG_SEQUENCE:
                    raise _fail(shape)
                n = data[pos + 1]
                if n < 0x80:
                    e0, e1 = pos + 2, pos + 2 + n
                    if e1 > end:
                        raise _fail(shape)
                else:
                    _, e0, e1 = span(data, pos, end)
                n = data[e0 + 1]
                o0, o1 = e0 + 2, e0 + 2 + n
                if data[e0] != der.TAG_OID or n >= 0x80 or o1 > e1:
                    raise _fail(shape)
                x = o1
                if x + 3 <= e1 and data[x] == der.TAG_BOOLEAN:  # critical
                    if data[x + 1] != 1:
                        raise _fail(shape)
                    x += 3
                if x + 2 > e1 or data[x] != der.TAG_OCTET_STRING:
                    raise _fail(shape)
                n = data[x + 1]
                if n < 0x80:
                    x0, x1 = x + 2, x + 2 + n
                else:
                    _, x0, x1 = span(data, x, e1)
                if x1 != e1:
                    raise _fail(shape)
                oid = data[o0:o1]
                if oid in seen:
                    raise _fail("certificate extension appears twice")
                seen.add(oid)
                if oid.startswith(prefix):
                    name = _AMD_OIDS.get(oid[plen:])
                    if name is not None:
                        out[name] = data[x0:x1]
                pos = e1
        return out
    except IndexError:
        raise _fail(shape) from None
    except EvidenceError as exc:
        if isinstance(exc, SnpError):
            raise
        raise _fail(f"certificate extensions: {exc.message}") from None


def vek_extensions(cert: x509.Certificate, facts: CertFacts | None = None) -> VekExtensions:
    """The AMD extensions of a VCEK or VLEK, decoded from the DER (strictly; no X.509 library view).
    ``facts``: the certificate's `CertFacts` when the loader already has them."""
    struct_version = product_name = csp_id = None
    hw_id: bytes | None = None
    spls: dict[str, int] = {}
    for oid, raw in _amd_extensions(facts or cert_facts(cert)).items():
        if oid == OID_STRUCT_VERSION:
            struct_version = _integer(raw, "structVersion")
        elif oid == OID_PRODUCT_NAME:
            product_name = _ia5(raw, "productName")
        elif oid in SPL_OIDS:
            spls[SPL_OIDS[oid]] = _integer(raw, SPL_OIDS[oid])
        elif oid == OID_HWID:
            hw_id = _hw_id(raw)
        elif oid == OID_CSP_ID:
            csp_id = _ia5(raw, "cspId")
    return VekExtensions(struct_version, product_name, spls, hw_id, csp_id)


def is_vek(cert: x509.Certificate) -> bool:
    return cn(cert) in (VCEK_CN, VLEK_CN)


def is_p384(cert: x509.Certificate) -> bool:
    key = cert.public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)


def is_rsa(cert: x509.Certificate) -> bool:
    return isinstance(cert.public_key(), rsa.RSAPublicKey)


def split_chain(
    certs: Sequence[x509.Certificate], cn_of: Callable[[x509.Certificate], str] | None = None
) -> tuple[list[x509.Certificate], list[x509.Certificate], list[x509.Certificate]]:
    """(VEKs, intermediates (ASK/ASVK), ARKs), identified by CN, not by position (sev-snp.md §5.2)."""
    veks, inters, arks = [], [], []
    for c in certs:
        name = (cn_of or cn)(c)
        if name in (VCEK_CN, VLEK_CN):
            veks.append(c)
        elif name.startswith("ARK-"):
            arks.append(c)
        elif name.startswith("SEV-"):
            inters.append(c)
    return veks, inters, arks
