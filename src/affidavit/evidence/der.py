"""The one strict DER reader of the evidence layer: Intel's PCK SGX extension, names and signed parts
cut from certificates and CRLs, AMD's certificates.

``cryptography`` hands vendor extensions over as opaque bytes (``UnrecognizedExtension``) and re-encodes
a certificate's parts on every access; this reader walks DER without a general ASN.1 library. It accepts
only definite, minimal lengths and single-byte tags, which is all DER allows for the types read here.
Every failure is a `DerError` (an `EvidenceError`); callers re-raise it under their own code.
"""

from __future__ import annotations

from affidavit.evidence import EvidenceError

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30

TAG_BIT_STRING = 0x03

Tlv = tuple[int, bytes]
"""(tag, value): plain tuples, since a PCK extension has ~85 of them and this runs per new platform."""


class DerError(EvidenceError):
    """Bytes that are not the strict DER expected."""

    code = "der_malformed"


def _fail(message: str) -> DerError:
    return DerError(message)


def span(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the TLV at ``pos``, which must end by ``end``."""
    if end - pos < 2:
        raise _fail("truncated TLV header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _fail("multi-byte tags are not used here")
    length = data[pos + 1]
    pos += 2
    if length >= 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise _fail("indefinite or oversized length")
        if end - pos < n:
            raise _fail("truncated length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if data[pos] == 0 or length < 0x80:
            raise _fail("non-minimal length encoding")
        pos += n
    if pos + length > end:
        raise _fail("value runs past its container")
    return tag, pos, pos + length


def read_tlvs(data: bytes) -> list[Tlv]:
    """Split ``data`` into consecutive TLVs; every byte must belong to one."""
    out: list[Tlv] = []
    pos, end = 0, len(data)
    while pos < end:
        # `span` inlined for the common short form: an uncached quote reads ~180 TLVs.
        if end - pos >= 2 and data[pos + 1] < 0x80 and data[pos] & 0x1F != 0x1F:
            tag, start, stop = data[pos], pos + 2, pos + 2 + data[pos + 1]
            if stop > end:
                raise _fail("value runs past its container")
        else:
            tag, start, stop = span(data, pos, end)
        out.append((tag, data[start:stop]))
        pos = stop
    return out


def encode(tag: int, value: bytes) -> bytes:
    """The DER TLV of ``value`` (minimal length): a TLV read back whole, e.g. a SubjectPublicKeyInfo."""
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def first_element(data: bytes, tag: int) -> bytes:
    """The complete encoding (header and value) of the first TLV in ``data``, which must have ``tag``:
    e.g. the signed TBS part of a certificate or CRL, cut from its DER without re-encoding it."""
    found, _, stop = span(data, 0, len(data))
    if found != tag:
        raise _fail(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
    return data[:stop]


def read_one(data: bytes, tag: int) -> Tlv:
    """Exactly one TLV of the given tag."""
    tlvs = read_tlvs(data)
    if len(tlvs) != 1:
        raise _fail(f"expected one element, found {len(tlvs)}")
    if tlvs[0][0] != tag:
        raise _fail(f"expected tag 0x{tag:02x}, found 0x{tlvs[0][0]:02x}")
    return tlvs[0]


def expect(tlv: Tlv, tag: int, what: str) -> bytes:
    if tlv[0] != tag:
        raise _fail(f"{what}: expected tag 0x{tag:02x}, found 0x{tlv[0]:02x}")
    return tlv[1]


def decode_integer(value: bytes, what: str) -> int:
    if not value:
        raise _fail(f"{what}: empty INTEGER")
    if len(value) > 1 and ((value[0] == 0 and not value[1] & 0x80) or (value[0] == 0xFF and value[1] & 0x80)):
        raise _fail(f"{what}: non-minimal INTEGER")
    if len(value) > 8:
        raise _fail(f"{what}: INTEGER too large")
    return int.from_bytes(value, "big", signed=True)


def decode_boolean(value: bytes, what: str) -> bool:
    if value == b"\xff":
        return True
    if value == b"\x00":
        return False
    raise _fail(f"{what}: malformed BOOLEAN")
