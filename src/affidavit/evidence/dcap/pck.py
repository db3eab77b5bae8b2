"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1).

Its TCB component SVNs and PCESVN are what TCB levels are matched against (not the report's CPUSVN),
and its FMSPC / PCE-ID select the TCB Info.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from affidavit.evidence import EvidenceError, der

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_P = SGX_EXTENSION_OID

SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}


@dataclass(frozen=True, slots=True)
class PckExtension:
    ppid: bytes
    tcb_components: tuple[int, ...]  # SGX TCB Comp01..16 SVN
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ppid": self.ppid.hex(),
            "tcb_components": list(self.tcb_components),
            "pcesvn": self.pcesvn,
            "cpusvn": self.cpusvn.hex(),
            "pce_id": self.pce_id.hex(),
            "fmspc": self.fmspc.hex().upper(),
            "sgx_type": self.sgx_type,
            "platform_instance_id": None
            if self.platform_instance_id is None
            else self.platform_instance_id.hex(),
            "dynamic_platform": self.dynamic_platform,
            "cached_keys": self.cached_keys,
            "smt_enabled": self.smt_enabled,
        }


def _fail(message: str) -> EvidenceError:
    return EvidenceError(f"PCK SGX extension: {message}", code="pck_extension_invalid")


def encode_oid(dotted: str) -> bytes:
    """DER content bytes of an OBJECT IDENTIFIER (to compare raw OIDs without decoding each one)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_SUFFIXES = [".1", ".2", ".3", ".4", ".5", ".6", ".7", ".7.1", ".7.2", ".7.3"] + [
    f".2.{i}" for i in range(1, 19)
]
_OID = {suffix: encode_oid(_P + suffix) for suffix in _SUFFIXES}
_COMPONENTS = [(_OID[f".2.{i}"], f"SGX TCB Comp{i:02d} SVN") for i in range(1, 17)]


def _entries(data: bytes, what: str) -> dict[bytes, der.Tlv]:
    """A SEQUENCE OF SEQUENCE {OID, value}, keyed by the raw OID bytes; duplicates are rejected.

    Walked by offsets with the short-form lengths (all a PCK extension uses) read inline: a new platform
    reads ~30 entries, and a call per TLV was a tenth of an uncached verification."""
    out: dict[bytes, der.Tlv] = {}
    pos, end = 0, len(data)
    span = der.span
    while pos < end:
        tag, start, stop = span(data, pos, end)
        if tag != der.TAG_SEQUENCE:
            raise _fail(f"{what}: expected tag 0x{der.TAG_SEQUENCE:02x}, found 0x{tag:02x}")
        if stop - start >= 2 and data[start] == der.TAG_OID and data[start + 1] < 0x80:
            o0, o1 = start + 2, start + 2 + data[start + 1]
            if o1 > stop:
                raise _fail(f"{what}: entry is not an (OID, value) pair")
        else:
            otag, o0, o1 = span(data, start, stop) if stop > start else (0, start, start)
            if otag != der.TAG_OID:
                raise _fail(f"{what}: entry is not an (OID, value) pair")
        if o1 >= stop:
            raise _fail(f"{what}: entry is not an (OID, value) pair")
        vtag, v0, v1 = span(data, o1, stop)
        if v1 != stop:
            raise _fail(f"{what}: entry is not an (OID, value) pair")
        oid = data[o0:o1]
        if not oid or oid[-1] & 0x80:
            raise _fail(f"{what}: malformed OBJECT IDENTIFIER")
        if oid in out:
            raise _fail(f"{what}: duplicate entry {oid.hex()}")
        out[oid] = (vtag, data[v0:v1])
        pos = stop
    return out


def _octets(tlv: der.Tlv | None, what: str, size: int) -> bytes:
    if tlv is None:
        raise _fail(f"missing {what}")
    value = der.expect(tlv, der.TAG_OCTET_STRING, what)
    if len(value) != size:
        raise _fail(f"{what} must be {size} bytes, found {len(value)}")
    return value


def _svn(tlv: der.Tlv | None, what: str, limit: int) -> int:
    if tlv is None:
        raise _fail(f"missing {what}")
    if tlv[0] == der.TAG_INTEGER and len(tlv[1]) == 1 and tlv[1][0] < 0x80:
        return tlv[1][0]  # the common case, 0..127: minimal and in range
    v = der.decode_integer(der.expect(tlv, der.TAG_INTEGER, what), what)
    if not 0 <= v <= limit:
        raise _fail(f"{what} out of range: {v}")
    return v


def _entry(suffix: str, value: bytes, size: int) -> bytes:
    """The pattern of one (OID, value) entry with a one-byte length: the value pattern matches ``size``
    bytes, so the entry's SEQUENCE length is fixed."""
    oid = der.encode(der.TAG_OID, _OID[suffix])
    return re.escape(bytes((der.TAG_SEQUENCE, len(oid) + size)) + oid) + value


def _either(*patterns: bytes) -> bytes:
    return b"(?:" + b"|".join(patterns) + b")"


# INTEGER contents in their minimal encoding: 0..127, 128..255, 256..0x7FFF, 0x8000..0xFFFF.
_BYTE = rb"\x02\x01([\x00-\x7f])"
_BYTE_HIGH = rb"\x02\x02\x00([\x80-\xff])"
_U16_LOW = rb"\x02\x02([\x01-\x7f][\x00-\xff]|\x00[\x80-\xff])"
_U16_HIGH = rb"\x02\x03\x00([\x80-\xff][\x00-\xff])"


def _octets_of(size: int) -> bytes:
    return re.escape(bytes((der.TAG_OCTET_STRING, size))) + b"(.{%d})" % size


def _fast_pattern() -> re.Pattern[bytes]:
    """The SGX extension as Intel encodes it: every field in the order of Intel's ASN.1, short values,
    PlatformInstanceID and Configuration (with its three flags) present together or not at all."""
    comps = [_either(_entry(f".2.{i}", _BYTE, 3), _entry(f".2.{i}", _BYTE_HIGH, 4)) for i in range(1, 17)]
    tcb = b"".join(comps)
    tcb += _either(_entry(".2.17", _BYTE, 3), _entry(".2.17", _U16_LOW, 4), _entry(".2.17", _U16_HIGH, 5))
    tcb += _entry(".2.18", _octets_of(16), 18)
    flags = b"".join(_entry(f".7.{i}", rb"\x01\x01([\x00\xff])", 3) for i in (1, 2, 3))
    flags_size = 3 * (2 + len(der.encode(der.TAG_OID, _OID[".7.1"])) + 3)
    configuration = _entry(".7", re.escape(bytes((der.TAG_SEQUENCE, flags_size))) + flags, 2 + flags_size)
    tcb_oid = re.escape(der.encode(der.TAG_OID, _OID[".2"]))
    return re.compile(
        rb"\x30\x82(..)"  # the extension's SEQUENCE (a two-byte length, checked after the match)
        + _entry(".1", _octets_of(16), 18)
        + rb"\x30\x82(..)" + tcb_oid + rb"\x30\x82(..)(" + tcb + b")"  # the TCB entry and its SEQUENCE
        + _entry(".3", _octets_of(2), 4)
        + _entry(".4", _octets_of(6), 8)
        + _entry(".5", rb"\x0a\x01([\x00-\x02])", 3)
        + b"(?:" + _entry(".6", _octets_of(16), 18) + configuration + b")?",
        re.DOTALL,
    )


def _fast_parse(value: bytes) -> PckExtension | None:
    """`_parse` of an extension in Intel's encoding (`_fast_pattern`) in one regular-expression match,
    or None for anything else, which `_parse` decides. A match is exactly what `_parse` accepts, with
    the same result: fixed OIDs in order, minimal short values and every length checked."""
    m = _FAST.fullmatch(value)
    if m is None:
        return None
    g = m.groups()
    top, ppid, tcb_entry, tcb_seq, tcb = g[0], g[1], g[2], g[3], g[4]
    if not (top[0] and tcb_entry[0] and tcb_seq[0]):
        return None  # a two-byte length below 256 is not minimal: `_parse` refuses it
    tcb_len = int.from_bytes(tcb_seq, "big")
    oid_len = len(der.encode(der.TAG_OID, _OID[".2"]))
    if (
        int.from_bytes(top, "big") != len(value) - 4
        or tcb_len != len(tcb)
        or int.from_bytes(tcb_entry, "big") != oid_len + 4 + tcb_len
    ):
        return None
    svns = g[5:37]
    comps = tuple((a or b)[0] for a, b in zip(svns[0::2], svns[1::2], strict=True))
    pcesvn_raw = g[37] or g[38] or g[39]
    pce_id, fmspc, sgx_type, platform_instance_id = g[41], g[42], g[43][0], g[44]
    flags = [None if f is None else f == b"\xff" for f in g[45:48]]
    return PckExtension(
        ppid=ppid,
        tcb_components=comps,
        pcesvn=int.from_bytes(pcesvn_raw, "big"),
        cpusvn=g[40],
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type,
        platform_instance_id=platform_instance_id,
        dynamic_platform=flags[0],
        cached_keys=flags[1],
        smt_enabled=flags[2],
    )


_FAST = _fast_pattern()


def parse_pck_extension(value: bytes) -> PckExtension:
    """Decode the extension's DER value (the bytes inside the extnValue OCTET STRING).

    Intel's own encoding takes one regular-expression match (`_fast_parse`: a new platform paid ~0.1 ms
    for the general walk); anything else goes through `_parse`."""
    fast = _fast_parse(value)
    if fast is not None:
        return fast
    try:
        return _parse(value)
    except der.DerError as exc:
        raise _fail(exc.message) from None


def _parse(value: bytes) -> PckExtension:
    top = der.read_one(value, der.TAG_SEQUENCE)
    e = _entries(top[1], "extension")
    tcb_tlv = e.get(_OID[".2"])
    if tcb_tlv is None:
        raise _fail("missing TCB")
    tcb = _entries(der.expect(tcb_tlv, der.TAG_SEQUENCE, "TCB"), "TCB")
    comps = tuple(_svn(tcb.get(oid), what, 255) for oid, what in _COMPONENTS)
    pcesvn = _svn(tcb.get(_OID[".2.17"]), "PCESVN", 0xFFFF)
    cpusvn = _octets(tcb.get(_OID[".2.18"]), "CPUSVN", 16)
    sgx_type_tlv = e.get(_OID[".5"])
    if sgx_type_tlv is None:
        raise _fail("missing SGX Type")
    sgx_type = der.decode_integer(der.expect(sgx_type_tlv, der.TAG_ENUMERATED, "SGX Type"), "SGX Type")
    if sgx_type not in SGX_TYPES:
        raise _fail(f"unknown SGX Type {sgx_type}")
    pi = e.get(_OID[".6"])
    platform_instance_id = None if pi is None else _octets(pi, "PlatformInstanceID", 16)
    dynamic = cached = smt = None
    cfg_tlv = e.get(_OID[".7"])
    if cfg_tlv is not None:
        cfg = _entries(der.expect(cfg_tlv, der.TAG_SEQUENCE, "Configuration"), "Configuration")

        def flag(n: int, what: str) -> bool | None:
            t = cfg.get(_OID[f".7.{n}"])
            return None if t is None else der.decode_boolean(der.expect(t, der.TAG_BOOLEAN, what), what)

        dynamic = flag(1, "dynamicPlatform")
        cached = flag(2, "cachedKeys")
        smt = flag(3, "SMTEnabled")
    return PckExtension(
        ppid=_octets(e.get(_OID[".1"]), "PPID", 16),
        tcb_components=comps,
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pce_id=_octets(e.get(_OID[".3"]), "PCE-ID", 2),
        fmspc=_octets(e.get(_OID[".4"]), "FMSPC", 6),
        sgx_type=sgx_type,
        platform_instance_id=platform_instance_id,
        dynamic_platform=dynamic,
        cached_keys=cached,
        smt_enabled=smt,
    )


_SGX_OID_DER = encode_oid(SGX_EXTENSION_OID)


def pck_extension_in(extensions: bytes) -> PckExtension:
    """The SGX extension from a TBSCertificate's ``[3] Extensions`` content (`names.Names.extensions`):
    read from the signed DER, without building ``cryptography``'s extension objects. Extensions appearing
    twice are refused, as ``cryptography`` refuses them."""
    if not extensions:
        raise _fail("the PCK certificate has no SGX extension")
    found: bytes | None = None
    seen: set[bytes] = set()
    try:
        for tag, ext in der.read_tlvs(der.read_one(extensions, der.TAG_SEQUENCE)[1]):
            parts = der.read_tlvs(ext) if tag == der.TAG_SEQUENCE else []
            if len(parts) not in (2, 3) or parts[0][0] != der.TAG_OID or parts[-1][0] != der.TAG_OCTET_STRING:
                raise _fail("the PCK certificate's extensions do not decode")
            # DER: ``critical`` is TRUE or absent (FALSE is the default, never encoded)
            if len(parts) == 3 and (parts[1][0] != der.TAG_BOOLEAN or parts[1][1] != b"\xff"):
                raise _fail("the PCK certificate's extensions do not decode")
            oid = parts[0][1]
            if oid in seen:
                raise _fail(f"the PCK certificate's extensions do not decode: duplicate {oid.hex()}")
            seen.add(oid)
            if oid == _SGX_OID_DER:
                found = parts[-1][1]
    except der.DerError as exc:
        raise _fail(f"the PCK certificate's extensions do not decode: {exc.message}") from None
    if found is None:
        raise _fail("the PCK certificate has no SGX extension")
    return parse_pck_extension(found)


def pck_extension_of(cert: x509.Certificate) -> PckExtension:
    """The SGX extension of a PCK certificate, or ``pck_extension_invalid``."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise _fail("the PCK certificate has no SGX extension") from None
    except ValueError as exc:  # duplicate or undecodable extensions
        raise _fail(f"the PCK certificate's extensions do not decode: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise _fail("unexpected decoded form")
    return parse_pck_extension(value.value)
