"""DCAP quote layout: header, SGX / TD report bodies, ECDSA signature data (versions 3, 4 and 5).

Parsing is format validation only (sgx-dcap.md §5 A); nothing here is trusted until the verifier has
checked the signatures. All integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from affidavit.evidence import EvidenceError

HEADER_SIZE = 48
# version, attestation key type, TEE type (reserved in v3), QE SVN, PCE SVN, QE vendor ID, user data
_HEADER = struct.Struct("<HHIHH16s20s")
SGX_REPORT_SIZE = 384
TD10_REPORT_SIZE = 584
TD15_REPORT_SIZE = 648
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
ATT_KEY_ECDSA_P384 = 3
INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
# Body types of a v5 quote.
BODY_SGX, BODY_TD10, BODY_TD15 = 1, 2, 3
_BODY_SIZES = {BODY_SGX: SGX_REPORT_SIZE, BODY_TD10: TD10_REPORT_SIZE, BODY_TD15: TD15_REPORT_SIZE}
# The largest quote accepted; real ones are 4-8 KB. Bounds the work done on hostile input.
MAX_QUOTE_SIZE = 64 * 1024


def _fail(code: str, message: str) -> EvidenceError:
    return EvidenceError(message, code=code)


def _u16(b: bytes, off: int) -> int:
    return b[off] | (b[off + 1] << 8)


def _u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off : off + 4], "little")


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "att_key_type": self.att_key_type,
            "tee_type": f"0x{self.tee_type:08x}",
            "qe_svn": self.qe_svn,
            "pce_svn": self.pce_svn,
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "user_data": self.user_data.hex(),
        }


@dataclass(frozen=True, slots=True)
class SgxReportBody:
    """``sgx_report_body_t``: an enclave report (also the layout of the QE report)."""

    raw: bytes

    @property
    def cpusvn(self) -> bytes:
        return self.raw[0:16]

    @property
    def miscselect(self) -> int:
        return _u32(self.raw, 16)

    @property
    def isv_ext_prod_id(self) -> bytes:
        return self.raw[32:48]

    @property
    def attributes(self) -> bytes:
        return self.raw[48:64]

    @property
    def flags(self) -> int:
        return int.from_bytes(self.raw[48:56], "little")

    @property
    def xfrm(self) -> int:
        return int.from_bytes(self.raw[56:64], "little")

    @property
    def mrenclave(self) -> bytes:
        return self.raw[64:96]

    @property
    def mrsigner(self) -> bytes:
        return self.raw[128:160]

    @property
    def config_id(self) -> bytes:
        return self.raw[192:256]

    @property
    def isv_prod_id(self) -> int:
        return _u16(self.raw, 256)

    @property
    def isv_svn(self) -> int:
        return _u16(self.raw, 258)

    @property
    def config_svn(self) -> int:
        return _u16(self.raw, 260)

    @property
    def isv_family_id(self) -> bytes:
        return self.raw[304:320]

    @property
    def report_data(self) -> bytes:
        return self.raw[320:384]

    @property
    def is_debuggable(self) -> bool:
        return bool(self.raw[48] & 0x02)

    @property
    def kss(self) -> bool:
        return bool(self.raw[48] & 0x80)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpusvn": self.cpusvn.hex(),
            "miscselect": self.miscselect,
            "isv_ext_prod_id": self.isv_ext_prod_id.hex(),
            "attributes": self.attributes.hex(),
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "config_id": self.config_id.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "config_svn": self.config_svn,
            "isv_family_id": self.isv_family_id.hex(),
            "report_data": self.report_data.hex(),
            "is_debuggable": self.is_debuggable,
        }


@dataclass(frozen=True, slots=True)
class TdReportBody:
    """``sgx_report2_body_t`` (TDX 1.0, 584 bytes) or its 1.5 extension (648 bytes)."""

    raw: bytes

    @property
    def is_td15(self) -> bool:
        return len(self.raw) == TD15_REPORT_SIZE

    @property
    def tee_tcb_svn(self) -> bytes:
        return self.raw[0:16]

    @property
    def mrseam(self) -> bytes:
        return self.raw[16:64]

    @property
    def mrsigner_seam(self) -> bytes:
        return self.raw[64:112]

    @property
    def seam_attributes(self) -> bytes:
        return self.raw[112:120]

    @property
    def td_attributes(self) -> bytes:
        return self.raw[120:128]

    @property
    def xfam(self) -> bytes:
        return self.raw[128:136]

    @property
    def mrtd(self) -> bytes:
        return self.raw[136:184]

    @property
    def mr_config_id(self) -> bytes:
        return self.raw[184:232]

    @property
    def mr_owner(self) -> bytes:
        return self.raw[232:280]

    @property
    def mr_owner_config(self) -> bytes:
        return self.raw[280:328]

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        r = self.raw
        return (r[328:376], r[376:424], r[424:472], r[472:520])

    @property
    def report_data(self) -> bytes:
        return self.raw[520:584]

    @property
    def tee_tcb_svn2(self) -> bytes | None:
        return self.raw[584:600] if self.is_td15 else None

    @property
    def mr_service_td(self) -> bytes | None:
        return self.raw[600:648] if self.is_td15 else None

    @property
    def is_debuggable(self) -> bool:
        return bool(self.raw[120] & 0x01)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "mrseam": self.mrseam.hex(),
            "mrsignerseam": self.mrsigner_seam.hex(),
            "seam_attributes": self.seam_attributes.hex(),
            "td_attributes": self.td_attributes.hex(),
            "xfam": self.xfam.hex(),
            "mrtd": self.mrtd.hex(),
            "mrconfigid": self.mr_config_id.hex(),
            "mrowner": self.mr_owner.hex(),
            "mrownerconfig": self.mr_owner_config.hex(),
            **{f"rtmr{i}": r.hex() for i, r in enumerate(self.rtmrs)},
            "report_data": self.report_data.hex(),
            "td_debug": self.is_debuggable,
        }
        if self.is_td15:
            out["tee_tcb_svn2"] = self.raw[584:600].hex()
            out["mrservicetd"] = self.raw[600:648].hex()
        return out


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed ECDSA-P256 DCAP quote. ``raw`` is the input with trailing padding removed."""

    header: QuoteHeader
    body_type: int  # BODY_SGX, BODY_TD10 or BODY_TD15 (implied by size for v3/v4)
    body: SgxReportBody | TdReportBody
    signed_region: bytes
    signature: bytes  # r||s over signed_region, by the attestation key
    attestation_key: bytes  # x||y
    qe_report: SgxReportBody
    qe_report_signature: bytes  # r||s over the QE report, by the PCK key
    qe_auth_data: bytes
    cert_data_type: int  # innermost certification data type (5 in practice)
    cert_data: bytes
    raw: bytes

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def tee(self) -> str:
        return "tdx" if self.header.tee_type == TEE_TDX else "sgx"

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    @property
    def pck_chain_pem(self) -> bytes:
        """The PEM chain of type-5 certification data, trailing NULs stripped."""
        if self.cert_data_type != CERT_PCK_CHAIN:
            raise _fail(
                "unsupported_cert_data_type",
                f"certification data type {self.cert_data_type} does not carry the PCK chain "
                "(only type 5 can be verified offline)",
            )
        return self.cert_data.rstrip(b"\0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": self.header.to_dict(),
            "tee": self.tee,
            "body_type": {BODY_SGX: "SGX", BODY_TD10: "TD10", BODY_TD15: "TD15"}[self.body_type],
            "body": self.body.to_dict(),
            "signed_region_len": len(self.signed_region),
            "signature": self.signature.hex(),
            "attestation_key": self.attestation_key.hex(),
            "qe_report": self.qe_report.to_dict(),
            "qe_report_signature": self.qe_report_signature.hex(),
            "qe_auth_data": self.qe_auth_data.hex(),
            "cert_data_type": self.cert_data_type,
            "cert_data_len": len(self.cert_data),
        }


def parse_header(data: bytes) -> QuoteHeader:
    if len(data) < HEADER_SIZE:
        raise _fail("quote_truncated", f"quote is {len(data)} bytes, shorter than its 48-byte header")
    version, att_key_type, tee_field, qe_svn, pce_svn, qe_vendor_id, user_data = _HEADER.unpack_from(data)
    if version not in (3, 4, 5):
        raise _fail("unsupported_quote_version", f"quote version {version} is not supported (3, 4 or 5)")
    if att_key_type != ATT_KEY_ECDSA_P256:
        name = "ECDSA-P384" if att_key_type == ATT_KEY_ECDSA_P384 else f"type {att_key_type}"
        raise _fail("unsupported_key_type", f"attestation key {name} is not supported (ECDSA-P256 only)")
    tee_type = 0 if version == 3 else tee_field
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise _fail("unsupported_tee_type", f"TEE type 0x{tee_type:08x} is neither SGX nor TDX")
    if qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise _fail("unsupported_qe_vendor", f"QE vendor ID {qe_vendor_id.hex()} is not Intel's")
    return QuoteHeader(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=qe_vendor_id,
        user_data=user_data,
    )


def _need(data: bytes, end: int, what: str) -> None:
    if end > len(data):
        raise _fail("quote_truncated", f"quote truncated in {what} (needs {end} bytes, has {len(data)})")


def parse_quote(data: bytes) -> Quote:
    """Parse and format-check a quote; any defect is an ``EvidenceError`` with a stable code."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("quote_malformed", "a quote must be bytes")
    data = bytes(data)
    if len(data) > MAX_QUOTE_SIZE:
        raise _fail("quote_oversized", f"quote is {len(data)} bytes; at most {MAX_QUOTE_SIZE} accepted")
    header = parse_header(data)
    pos = HEADER_SIZE
    if header.version == 5:
        _need(data, pos + 6, "the v5 body descriptor")
        body_type = _u16(data, pos)
        body_size = _u32(data, pos + 2)
        if body_type not in _BODY_SIZES:
            raise _fail("quote_malformed", f"v5 body type {body_type} is unknown (1 SGX, 2 TD 1.0, 3 TD 1.5)")
        if body_size != _BODY_SIZES[body_type]:
            raise _fail(
                "quote_malformed",
                f"v5 body type {body_type} must be {_BODY_SIZES[body_type]} bytes, "
                f"descriptor says {body_size}",
            )
        if (body_type == BODY_SGX) != (header.tee_type == TEE_SGX):
            raise _fail(
                "quote_malformed", f"v5 body type {body_type} contradicts TEE type 0x{header.tee_type:08x}"
            )
        pos += 6
    else:
        body_type = BODY_SGX if header.tee_type == TEE_SGX else BODY_TD10
        body_size = _BODY_SIZES[body_type]
    body_end = pos + body_size
    _need(data, body_end + 4, "the report body")
    body_raw = data[pos:body_end]
    body: SgxReportBody | TdReportBody = (
        SgxReportBody(body_raw) if body_type == BODY_SGX else TdReportBody(body_raw)
    )
    sig_len = _u32(data, body_end)
    sig_start = body_end + 4
    sig_end = sig_start + sig_len
    _need(data, sig_end, "the signature data (declared length)")
    # Bytes after the declared signature data are padding (real TDX quotes come in fixed buffers).
    # Offsets stay absolute within `data`, bounded by `sig_end`, so nothing large is copied twice.
    if sig_len < 128:
        raise _fail("quote_truncated", f"signature data is {sig_len} bytes, too short for signature and key")
    signature, attestation_key = data[sig_start : sig_start + 64], data[sig_start + 64 : sig_start + 128]
    p = sig_start + 128
    if header.version == 3:
        qe_report, qe_sig, qe_auth, p = _qe_report_block(data, p, sig_end, "signature data")
        cert_type, c_start, p = _cert_record(data, p, sig_end, "certification data")
        if not 1 <= cert_type <= 5:
            raise _fail("unsupported_cert_data_type", f"v3 certification data type {cert_type} is not 1..5")
    else:
        outer_type, outer_start, p = _cert_record(data, p, sig_end, "certification data")
        if outer_type != CERT_QE_REPORT:
            raise _fail(
                "unsupported_cert_data_type",
                f"v{header.version} certification data type {outer_type} is not 6 (QE report)",
            )
        qe_report, qe_sig, qe_auth, q = _qe_report_block(data, outer_start, p, "QE report certification data")
        cert_type, c_start, q = _cert_record(data, q, p, "nested certification data")
        if not 1 <= cert_type <= 5:
            raise _fail(
                "unsupported_cert_data_type", f"nested certification data type {cert_type} is not 1..5"
            )
        if q != p:
            raise _fail("quote_malformed", "QE report certification data has trailing bytes")
    if p != sig_end:
        raise _fail("quote_malformed", f"signature data has {sig_end - p} unexplained trailing bytes")
    cert_data = data[c_start:q] if header.version != 3 else data[c_start:p]
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        signed_region=data[:body_end],
        signature=signature,
        attestation_key=attestation_key,
        qe_report=SgxReportBody(qe_report),
        qe_report_signature=qe_sig,
        qe_auth_data=qe_auth,
        cert_data_type=cert_type,
        cert_data=cert_data,
        raw=data[:sig_end],
    )


def _qe_report_block(buf: bytes, p: int, end: int, what: str) -> tuple[bytes, bytes, bytes, int]:
    """QE report, its signature and the QE auth data at ``p``, within ``buf[:end]``."""
    _need_in(end, p + SGX_REPORT_SIZE + 64 + 2, what)
    qe_report = buf[p : p + SGX_REPORT_SIZE]
    p += SGX_REPORT_SIZE
    qe_sig = buf[p : p + 64]
    p += 64
    auth_len = _u16(buf, p)
    p += 2
    _need_in(end, p + auth_len, f"QE authentication data of {what}")
    return qe_report, qe_sig, buf[p : p + auth_len], p + auth_len


def _cert_record(buf: bytes, p: int, end: int, what: str) -> tuple[int, int, int]:
    """(type, start of data, end of data) of the certification-data record at ``p``."""
    _need_in(end, p + 6, what)
    ctype = _u16(buf, p)
    size = _u32(buf, p + 2)
    p += 6
    _need_in(end, p + size, f"{what} (declared size {size})")
    return ctype, p, p + size


def _need_in(end: int, want: int, what: str) -> None:
    if want > end:
        raise _fail("quote_truncated", f"quote truncated in {what} (needs {want - end} more bytes)")
