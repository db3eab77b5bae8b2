"""Byte layouts written by the simulator, checked against sgx-dcap.md and with independent crypto."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from affidavit.simulate import SimulatedPlatform, TdReportBody, der
from affidavit.simulate.pck_extension import SGX_EXTENSION_OID
from affidavit.simulate.quote import INTEL_QE_VENDOR_ID
from tests.simulated_platforms import NOW


def _verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    der_sig = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public_key.verify(der_sig, data, ec.ECDSA(hashes.SHA256()))


def _raw_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (der.integer(0), "020100"),
        (der.integer(127), "02017f"),
        (der.integer(128), "02020080"),
        (der.integer(255), "020200ff"),
        (der.integer(-129), "0202ff7f"),
        (der.enumerated(1), "0a0101"),
        (der.boolean(True), "0101ff"),
        (der.oid("1.2.840.113741.1.13.1"), "06092a864886f84d010d01"),
        (der.octet_string(bytes(200))[:3], "0481c8"),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else v,
)
def test_der_primitives(encoded: bytes, expected: str) -> None:
    assert encoded.hex() == expected


def _walk(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level (tag, content) pairs of a DER string; only what this test needs (lengths < 64 KiB)."""
    out, i = [], 0
    while i < len(data):
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            size = n & 0x7F
            n = int.from_bytes(data[i : i + size], "big")
            i += size
        out.append((tag, data[i : i + n]))
        i += n
    return out


def _oid_suffix(content: bytes) -> str:
    prefix = der.oid(SGX_EXTENSION_OID)[2:]
    assert content.startswith(prefix)
    return ".".join(str(b) for b in content[len(prefix) :])


@pytest.mark.parametrize("ca", ["processor", "platform"])
def test_pck_extension_fields(ca: str) -> None:
    platform = SimulatedPlatform.create(seed=b"ext", now=NOW, ca=ca, fmspc="00A067110000", pce_id="0000")
    ext = platform.pck.cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    fields = {}
    ((outer_tag, outer),) = _walk(ext.value.value)
    assert outer_tag == 0x30
    for tag, pair in _walk(outer):
        assert tag == 0x30
        (_, name), (vtag, value) = _walk(pair)
        fields[_oid_suffix(name)] = (vtag, value)
    assert fields["1"] == (0x04, platform.extension.ppid)
    tcb = {}
    for _, pair in _walk(fields["2"][1]):
        (_, name), (vtag, value) = _walk(pair)
        tcb[_oid_suffix(name)] = (vtag, value)
    svns = [int.from_bytes(tcb[f"2.{i}"][1], "big") for i in range(1, 17)]
    assert svns == list(platform.tcb.sgx_svns)
    assert int.from_bytes(tcb["2.17"][1], "big") == platform.tcb.pcesvn
    assert tcb["2.18"] == (0x04, bytes(platform.tcb.sgx_svns))
    assert fields["3"] == (0x04, b"\0\0")
    assert fields["4"] == (0x04, bytes.fromhex("00A067110000"))
    assert fields["5"] == (0x0A, b"\x01" if ca == "platform" else b"\x00")
    assert ("6" in fields, "7" in fields) == ((True, True) if ca == "platform" else (False, False))


def test_pck_extension_read_by_dcap_qvl() -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    platform = SimulatedPlatform.create(seed=b"ext", now=NOW, ca="platform", fmspc="B0C06F000000")
    ext = dcap_qvl.parse_pck_extension_from_pem(platform.pck.pem)
    assert bytes(ext.fmspc).hex().upper() == "B0C06F000000"
    assert bytes(ext.ppid) == platform.extension.ppid
    assert ext.pce_svn == platform.tcb.pcesvn
    assert bytes(ext.cpu_svn) == bytes(platform.tcb.sgx_svns)
    assert bytes(ext.platform_instance_id) == platform.extension.platform_instance_id


def _check_signatures(platform: SimulatedPlatform, quote: bytes, signed_len: int, qe_report_at: int) -> None:
    sig_at = signed_len + 4
    assert struct.unpack_from("<I", quote, signed_len)[0] == len(quote) - sig_at
    attestation_key = quote[sig_at + 64 : sig_at + 128]
    _verify_raw(_raw_key(attestation_key), quote[sig_at : sig_at + 64], quote[:signed_len])
    qe_report = quote[qe_report_at : qe_report_at + 384]
    _verify_raw(platform.pck.cert.public_key(), quote[qe_report_at + 384 : qe_report_at + 448], qe_report)
    auth_len = struct.unpack_from("<H", quote, qe_report_at + 448)[0]
    auth = quote[qe_report_at + 450 : qe_report_at + 450 + auth_len]
    assert qe_report[320:352] == hashlib.sha256(attestation_key + auth).digest()
    assert qe_report[352:384] == bytes(32)
    chain_type_at = qe_report_at + 450 + auth_len
    kind, size = struct.unpack_from("<HI", quote, chain_type_at)
    assert kind == 5
    chain = quote[chain_type_at + 6 : chain_type_at + 6 + size]
    assert chain.endswith(b"\0")
    certs = x509.load_pem_x509_certificates(chain.rstrip(b"\0"))
    assert [c.subject for c in certs] == [platform.pck.cert.subject, *(c.subject for c in certs[1:])]
    assert certs[2].subject == certs[2].issuer == platform.pki.root.cert.subject


def test_sgx_v3_layout(sgx_platform: SimulatedPlatform) -> None:
    quote = sgx_platform.sgx_quote(
        mrenclave=b"\xaa" * 32, mrsigner=b"\xbb" * 32, isv_prod_id=7, isv_svn=3, debug=True, report_data=b"rd"
    )
    version, key_type, reserved, qe_svn, pce_svn = struct.unpack_from("<HHIHH", quote)
    assert (version, key_type, reserved, qe_svn, pce_svn) == (
        3,
        2,
        0,
        sgx_platform.qe_svn,
        sgx_platform.tcb.pcesvn,
    )
    assert quote[12:28] == INTEL_QE_VENDOR_ID
    body = quote[48:432]
    assert body[64:96] == b"\xaa" * 32 and body[128:160] == b"\xbb" * 32
    assert struct.unpack_from("<HH", body, 256) == (7, 3)
    assert body[48] & 0x02  # DEBUG flag
    assert body[320:384] == b"rd" + bytes(62)
    _check_signatures(sgx_platform, quote, 432, 564)
    qe = quote[564 : 564 + 384]
    assert struct.unpack_from("<HH", qe, 256) == (1, sgx_platform.qe_svn)


def test_tdx_v4_layout_matches_measured_offsets(tdx_platform: SimulatedPlatform) -> None:
    rtmrs = [bytes([i]) * 48 for i in range(1, 5)]
    quote = tdx_platform.tdx_quote(mrtd=b"\x42" * 48, rtmrs=rtmrs, report_data=b"\x99" * 64)
    assert struct.unpack_from("<HHI", quote) == (4, 2, 0x81)
    body = quote[48:632]
    assert body[136:184] == b"\x42" * 48
    assert [body[328 + 48 * i : 376 + 48 * i] for i in range(4)] == rtmrs
    assert body[520:584] == b"\x99" * 64
    assert body[0:16] == bytes(tdx_platform.tcb.tdx_svns)
    # Offsets measured on real v4 TDX quotes (sgx-dcap.md §2.3).
    assert struct.unpack_from("<H", quote, 764)[0] == 6
    assert struct.unpack_from("<H", quote, 1252)[0] == 5
    _check_signatures(tdx_platform, quote, 632, 770)
    assert struct.unpack_from("<H", quote, 770 + 256)[0] == 2  # TD QE product id


def test_tdx_v5_td15_layout(tdx_platform: SimulatedPlatform) -> None:
    quote = tdx_platform.tdx_quote(mrtd=b"\x42" * 48, version=5, mr_service_td=b"\x07" * 48)
    assert struct.unpack_from("<HHI", quote) == (5, 2, 0x81)
    assert struct.unpack_from("<HI", quote, 48) == (3, 648)
    assert quote[54 + 600 : 54 + 648] == b"\x07" * 48
    _check_signatures(tdx_platform, quote, 702, 840)
    td10 = tdx_platform.tdx_quote(version=5, td15=False)
    assert struct.unpack_from("<HI", td10, 48) == (2, 584)
    _check_signatures(tdx_platform, td10, 638, 776)


@pytest.mark.parametrize(("version", "signed_len", "qe_at"), [(4, 432, 570), (5, 438, 576)])
def test_sgx_v4_v5_layout(sgx_platform: SimulatedPlatform, version: int, signed_len: int, qe_at: int) -> None:
    quote = sgx_platform.sgx_quote(version=version, trailing=10)
    assert struct.unpack_from("<HHI", quote) == (version, 2, 0)
    sig_len = struct.unpack_from("<I", quote, signed_len)[0]
    assert len(quote) == signed_len + 4 + sig_len + 10
    _check_signatures(sgx_platform, quote[:-10], signed_len, qe_at)


def test_invalid_requests_raise_value_error(sgx_platform: SimulatedPlatform) -> None:
    with pytest.raises(ValueError):
        sgx_platform.sgx_quote(mrenclave=bytes(33))
    with pytest.raises(ValueError):
        sgx_platform.tdx_quote(version=3)
    with pytest.raises(ValueError):
        sgx_platform.tdx_quote(version=4, td15=True)
    with pytest.raises(ValueError):
        TdReportBody(tee_tcb_svn2=b"\1").encode()
    with pytest.raises(ValueError):
        SimulatedPlatform.create(fmspc="00906E", now=NOW)
    with pytest.raises(ValueError):
        sgx_platform.collateral(tcb_levels=[sgx_platform.tcb.level("Fine")])


def test_seed_makes_everything_reproducible() -> None:
    def build(seed: bytes) -> tuple[bytes, bytes, dict[str, object]]:
        platform = SimulatedPlatform.create(seed=seed, now=NOW, tee="tdx")
        return platform.root_pem, platform.tdx_quote(report_data=b"x"), platform.collateral(now=NOW)

    first, again, other = build(b"s1"), build(b"s1"), build(b"s2")
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]
    assert SimulatedPlatform.create(now=NOW).root_pem != SimulatedPlatform.create(now=NOW).root_pem


def test_collateral_dates_follow_now(sgx_platform: SimulatedPlatform) -> None:
    import json

    when = NOW + dt.timedelta(days=100)
    collateral = sgx_platform.collateral(now=when, valid_for=dt.timedelta(days=10))
    info = json.loads(collateral["tcb_info"])
    assert info["issueDate"] == "2026-06-08T12:00:00Z" and info["nextUpdate"] == "2026-06-18T12:00:00Z"
    crl = x509.load_der_x509_crl(bytes.fromhex(collateral["pck_crl"]))
    assert crl.next_update_utc == dt.datetime(2026, 6, 18, 12, tzinfo=dt.UTC)
    assert crl.issuer == sgx_platform.pck.cert.issuer
    assert crl.is_signature_valid(sgx_platform.pki.pck_ca("processor").cert.public_key())
