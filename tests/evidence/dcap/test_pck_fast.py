"""The SGX extension's one-match reading (`pck._fast_parse`, Intel's own encoding) decides exactly as the
general DER walk (`pck._parse`): same result on every real extension, and on every single-byte change of
them either the same result or the walk's verdict (the fast reading declines, never decides otherwise)."""

from __future__ import annotations

from cryptography import x509

from affidavit.evidence import EvidenceError, der
from affidavit.evidence.dcap import parse_quote, pck
from affidavit.evidence.dcap.names import cert_names
from tests.evidence.dcap.conftest import vector_cases


def _sgx_extensions() -> list[bytes]:
    found: dict[bytes, None] = {}
    for case in vector_cases():
        leaf = x509.load_pem_x509_certificates(parse_quote(case.quote()).pck_chain_pem)[0]
        ext = cert_names(leaf, "pck_chain_malformed", "PCK certificate").extensions
        for _, entry in der.read_tlvs(der.read_one(ext, der.TAG_SEQUENCE)[1]):
            parts = der.read_tlvs(entry)
            if parts[0][1] == pck.encode_oid(pck.SGX_EXTENSION_OID):
                found[parts[-1][1]] = None
    return list(found)


def _walk(value: bytes) -> pck.PckExtension | str:
    try:
        return pck._parse(value)
    except EvidenceError as exc:
        return exc.code


def test_real_extensions_take_the_one_match_reading() -> None:
    values = _sgx_extensions()
    assert len(values) > 5
    layouts = set()
    for value in values:
        fast = pck._fast_parse(value)
        assert fast is not None and fast == pck._parse(value)
        layouts.add(fast.platform_instance_id is None)
    assert layouts == {True, False}  # with and without PlatformInstanceID / Configuration


def test_every_byte_change_decides_as_the_walk() -> None:
    for value in _sgx_extensions()[:4]:
        for i in range(len(value)):
            for bit in (0x01, 0x80, 0xFF):
                changed = bytearray(value)
                changed[i] ^= bit
                fast = pck._fast_parse(bytes(changed))
                if fast is not None:
                    assert fast == _walk(bytes(changed)), (i, bit)


def test_values_beyond_one_byte_decide_as_the_walk() -> None:
    """SVNs of 128..255 take the longer INTEGER form; both readings agree on them."""
    value = _sgx_extensions()[0]
    walked = pck._parse(value)
    comp1 = der.encode(der.TAG_OID, pck.encode_oid(pck.SGX_EXTENSION_OID + ".2.1"))
    at = value.index(comp1) + len(comp1)  # Comp01's INTEGER
    assert value[at : at + 2] == b"\x02\x01"
    # Two-byte lengths that enclose Comp01: the extension, the TCB entry, the TCB SEQUENCE.
    tcb_entry = 4 + 2 + value[5]
    lengths = (2, tcb_entry + 2, tcb_entry + 4 + len(der.encode(der.TAG_OID, b"\0" * 10)) + 2)
    assert all(value[offset - 2 : offset] in (b"\x30\x82",) for offset in lengths)
    for svn in (0x7F, 0x80, 0xFF):
        integer = bytes([2, 1, svn]) if svn < 0x80 else bytes([2, 2, 0, svn])
        grown = len(integer) - 3
        entry = bytes([der.TAG_SEQUENCE, len(comp1) + len(integer)]) + comp1 + integer
        patched = bytearray(value[: at - len(comp1) - 2] + entry + value[at + 3 :])
        for offset in lengths:
            n = int.from_bytes(patched[offset : offset + 2], "big") + grown
            patched[offset : offset + 2] = n.to_bytes(2, "big")
        fast = pck._fast_parse(bytes(patched))
        assert fast is not None and fast == pck._parse(bytes(patched))
        assert fast.tcb_components == (svn, *walked.tcb_components[1:])
