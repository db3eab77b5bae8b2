"""A minimal DER encoder: just enough ASN.1 to write Intel's SGX PCK certificate extension.

``cryptography`` has no public ASN.1 encoder, and the extension is a small, fixed tree of SEQUENCE, OID,
INTEGER, OCTET STRING, ENUMERATED and BOOLEAN values.
"""

from __future__ import annotations

import functools


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


@functools.lru_cache(maxsize=256)
def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"invalid OID {dotted!r}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def _signed_int(value: int) -> bytes:
    # Two's complement, minimal length: one extra byte when the top bit would flip the sign.
    length = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return value.to_bytes(length, "big", signed=True)


def integer(value: int) -> bytes:
    return tlv(0x02, _signed_int(value))


def enumerated(value: int) -> bytes:
    return tlv(0x0A, _signed_int(value))


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def boolean(value: bool) -> bytes:
    return tlv(0x01, b"\xff" if value else b"\x00")
