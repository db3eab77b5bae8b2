"""AMD certificates: loading (DER or PEM, serial 0 tolerated), strict outer-structure checks, the VCEK/VLEK
extensions (OID arc 1.3.6.1.4.1.3704.1, sev-snp.md §3.2) and the role of each certificate by its CN.

`cryptography` does not check the unsigned parts of a certificate: the outer signatureAlgorithm must
equal the one inside the TBS (RFC 5280 §4.1.1.2) and the signature BIT STRING must have no unused bits.
A flipped byte there would otherwise leave a VCEK "valid"; the vectors' mutants include such bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

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
    try:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(attrs[0].value) if attrs else ""


def cn(cert: x509.Certificate) -> str:
    """The subject CN, "" when absent or malformed (cryptography parses names lazily, and warns about
    odd attribute lengths: hostile input is not worth a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cn_of_name(cert.subject)
        except ValueError:
            return ""


def issuer_cn(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cn_of_name(cert.issuer)
        except ValueError:
            return ""


_CN_OID = b"\x55\x04\x03"
_STRING_TAGS = (0x0C, 0x13, 0x16, 0x14, 0x1E)


def _tbs_fields(data: bytes, limit: int | None = 7) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Walk ``Certificate ::= SEQUENCE {tbs, algorithm, signature}`` by offsets (no slicing of the big
    parts): (end of the TBS, end of the certificate body, the TBS's first seven elements as (tag, header
    start, value start, value end))."""
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
    return tbs_stop, stop, fields


def _strict_outer(data: bytes) -> list[tuple[int, int, int, int]]:
    """Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }: one TLV, outer
    algorithm byte-equal to the TBS's (RFC 5280 4.1.1.2), signature with zero unused bits."""
    try:
        tbs_stop, stop, fields = _tbs_fields(data)
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
        return fields
    except SnpError:
        raise
    except EvidenceError as exc:
        raise _fail(f"certificate DER: {exc.message}") from None


Known = dict[bytes, x509.Certificate] | None
"""DER -> certificate already loaded and checked (the trust's own certificates), to skip re-parsing."""


Names = dict[int, tuple[str, bytes, bytes]] | None
"""id(certificate) -> (subject CN, subject DER, issuer DER), filled by the loaders for chain building."""


def der_names(cert: x509.Certificate) -> tuple[str, bytes, bytes]:
    """(subject CN, subject DER, issuer DER) read from the certificate's DER with the strict reader:
    what chain building compares, without building `x509.Name` objects (~50 us each)."""
    data = cert.public_bytes(Encoding.DER)
    try:
        fields = _tbs_fields(data)[2]
    except EvidenceError:
        raise _fail("certificate names are malformed") from None
    return _names_of(data, fields)


def _names_of(data: bytes, fields: list[tuple[int, int, int, int]]) -> tuple[str, bytes, bytes]:
    try:
        idx = 1 if fields and fields[0][0] == 0xA0 else 0
        _, ih, _, iv1 = fields[idx + 2]
        _, sh, sv0, sv1 = fields[idx + 4]
        common = ""
        for _tag, rdn in der.read_tlvs(data[sv0:sv1]):
            for _, atv in der.read_tlvs(rdn):
                parts = der.read_tlvs(atv)
                if len(parts) == 2 and parts[0] == (der.TAG_OID, _CN_OID) and parts[1][0] in _STRING_TAGS:
                    common = parts[1][1].decode("utf-16-be" if parts[1][0] == 0x1E else "utf-8")
    except (EvidenceError, IndexError, UnicodeDecodeError):
        raise _fail("certificate names are malformed") from None
    return common, data[sh:sv1], data[ih:iv1]


def load_certificate(data: CertInput, known: Known = None, names: Names = None) -> x509.Certificate:
    """One certificate from DER, PEM or a `cryptography` object (checked the same way). ``names``, when
    given, receives ``id(cert) -> der_names(cert)``, read during the same strict walk."""
    if isinstance(data, x509.Certificate):
        raw = data.public_bytes(Encoding.DER)
    else:
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes | bytearray):
            raise _fail("certificate must be DER or PEM bytes")
        raw = bytes(data)
        if b"-----BEGIN" in raw:
            certs = load_certificates(raw, known, names)
            if len(certs) != 1:
                raise _fail(f"expected one PEM certificate, found {len(certs)}")
            return certs[0]
    if known is not None:
        hit = known.get(raw)
        if hit is not None:
            return hit
    if len(raw) > MAX_CERTIFICATE_BYTES:
        raise _fail(f"certificate larger than {MAX_CERTIFICATE_BYTES} bytes")
    fields = _strict_outer(raw)
    try:
        with warnings.catch_warnings():
            # VCEKs and VLEKs have serial number 0 (sev-snp.md §3.1); cryptography warns about it (and
            # about odd attribute lengths in hostile input): the checks here are what decides.
            warnings.simplefilter("ignore")
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
        names[id(cert)] = _names_of(raw, fields)
    return cert


def _pem_bodies(data: bytes) -> list[bytes]:
    """The base64 bodies (whitespace removed) of the PEM certificates in ``data``."""
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
        bodies.append(data[start + len(begin) : stop].translate(None, b" \t\r\n"))
        pos = stop + len(end)
        if len(bodies) > MAX_BUNDLE_CERTIFICATES:
            raise _fail(f"more than {MAX_BUNDLE_CERTIFICATES} certificates in a bundle")
    return bodies


def _from_pem_body(body: bytes, known: Known, names: Names) -> x509.Certificate:
    import base64
    import binascii

    if known is not None:
        hit = known.get(body)  # the trust's certificates are also indexed by their base64 text
        if hit is not None:
            return hit
    try:
        der_bytes = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("PEM certificate body is not base64") from None
    return load_certificate(der_bytes, known, names)


def load_certificates(
    data: CertInput | Iterable[CertInput] | None, known: Known = None, names: Names = None
) -> list[x509.Certificate]:
    """Certificates from a PEM bundle, one DER certificate, a certificate, or a sequence of those."""
    if data is None:
        return []
    if isinstance(data, x509.Certificate):
        return [load_certificate(data, known, names)]
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


def _amd_extensions(data: bytes) -> dict[str, bytes]:
    """The AMD-arc extensions' values, read from the certificate DER: TBS ``[3] Extensions`` after the
    SubjectPublicKeyInfo (and the optional unique ids). A duplicated extension is malformed (RFC 5280)."""
    try:
        _, _, fields = _tbs_fields(data, limit=None)
        idx = 1 if fields and fields[0][0] == 0xA0 else 0
        out: dict[str, bytes] = {}
        seen: set[bytes] = set()
        for tag, _, v0, v1 in fields[idx + 6 :]:
            if tag != 0xA3:
                continue
            exts = der.read_one(data[v0:v1], der.TAG_SEQUENCE)[1]
            for _, ext in der.read_tlvs(exts):
                parts = der.read_tlvs(ext)
                shape_ok = len(parts) in (2, 3) and parts[0][0] == der.TAG_OID
                if not shape_ok or parts[-1][0] != der.TAG_OCTET_STRING:
                    raise _fail("certificate extension is not SEQUENCE {OID, [critical], OCTET STRING}")
                oid = parts[0][1]
                if oid in seen:
                    raise _fail("certificate extension appears twice")
                seen.add(oid)
                if oid.startswith(_AMD_OID_PREFIX):
                    name = _AMD_OIDS.get(oid[len(_AMD_OID_PREFIX) :])
                    if name is not None:
                        out[name] = parts[-1][1]
        return out
    except EvidenceError as exc:
        if isinstance(exc, SnpError):
            raise
        raise _fail(f"certificate extensions: {exc.message}") from None


def vek_extensions(cert: x509.Certificate) -> VekExtensions:
    """The AMD extensions of a VCEK or VLEK, decoded from the DER (strictly; no X.509 library view)."""
    struct_version = product_name = csp_id = None
    hw_id: bytes | None = None
    spls: dict[str, int] = {}
    for oid, raw in _amd_extensions(cert.public_bytes(Encoding.DER)).items():
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
