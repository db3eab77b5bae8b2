"""Open Enclave envelopes around an SGX DCAP quote (sgx-dcap.md §8).

* OE report (``oe_get_report``, what MAA's ``/attest/OpenEnclave`` takes): a 16-byte
  ``oe_report_header_t`` (u32 version = 1, u32 report type = 2 for SGX remote, u64 size) and then
  exactly ``size`` bytes of quote.
* OE evidence (``oe_get_evidence``, format SGX-ECDSA): a 28-byte ``oe_attestation_header_t`` (u32
  version = 3, 16-byte format UUID, u64 data size), then the quote followed by OE's custom-claims
  buffer. No real sample of this form was available; its layout follows the OE headers.

Both only unwrap: the quote inside is verified by `affidavit.evidence.dcap`.
"""

from __future__ import annotations

from dataclasses import dataclass

from affidavit.evidence import EvidenceError

OE_REPORT_HEADER_SIZE = 16
OE_REPORT_VERSION = 1
OE_REPORT_TYPE_SGX_LOCAL = 1
OE_REPORT_TYPE_SGX_REMOTE = 2
OE_ATTESTATION_HEADER_SIZE = 28
OE_ATTESTATION_HEADER_VERSION = 3
OE_FORMAT_UUID_SGX_ECDSA = bytes.fromhex("a3a21e871b4d4014b70aa125d2fbcd8c")
# SGX quotes start with version 3, 4 or 5 (u16) and key type 2 (u16); an OE header cannot look like that.
_MAX_SIZE = 64 * 1024


def _fail(message: str) -> EvidenceError:
    return EvidenceError(message, code="oe_report_malformed")


@dataclass(frozen=True)
class OeEvidence:
    """The quote and (evidence form only) the custom-claims buffer that follows it."""

    kind: str  # "report" | "evidence"
    quote: bytes
    custom_claims: bytes = b""


def is_oe_report(data: bytes) -> bool:
    """True when ``data`` starts with an OE report or OE evidence header rather than a raw quote."""
    if len(data) < OE_REPORT_HEADER_SIZE:
        return False
    version = int.from_bytes(data[0:4], "little")
    if version == OE_REPORT_VERSION:
        return int.from_bytes(data[4:8], "little") in (OE_REPORT_TYPE_SGX_LOCAL, OE_REPORT_TYPE_SGX_REMOTE)
    return version == OE_ATTESTATION_HEADER_VERSION and data[4:20] == OE_FORMAT_UUID_SGX_ECDSA


def _quote_length(data: bytes) -> int:
    """Length of the DCAP quote at the start of ``data`` (header, body, signature data)."""
    if len(data) < 48:
        raise _fail("OE evidence data is too short to hold a quote")
    version = int.from_bytes(data[0:2], "little")
    if version == 3:
        body_end = 48 + 384
    elif version in (4, 5):
        tee = int.from_bytes(data[4:8], "little")
        if version == 5:
            if len(data) < 54:
                raise _fail("OE evidence data is too short to hold a quote")
            body_end = 54 + int.from_bytes(data[50:54], "little")
        else:
            body_end = 48 + (584 if tee == 0x81 else 384)
    else:
        raise _fail(f"OE evidence holds quote version {version}, not 3, 4 or 5")
    if len(data) < body_end + 4:
        raise _fail("OE evidence data ends inside the quote")
    end = body_end + 4 + int.from_bytes(data[body_end : body_end + 4], "little")
    if end > len(data):
        raise _fail("OE evidence data ends inside the quote's signature data")
    return end


def parse(data: bytes) -> OeEvidence:
    """Split an OE report or OE evidence into its parts; ``oe_report_malformed`` on any defect."""
    if not isinstance(data, bytes | bytearray):
        raise _fail("an OE report must be bytes")
    data = bytes(data)
    if len(data) > _MAX_SIZE:
        raise _fail(f"OE report is {len(data)} bytes; at most {_MAX_SIZE} accepted")
    if len(data) < OE_REPORT_HEADER_SIZE:
        raise _fail(f"OE report is {len(data)} bytes, shorter than its 16-byte header")
    version = int.from_bytes(data[0:4], "little")
    if version == OE_REPORT_VERSION:
        report_type = int.from_bytes(data[4:8], "little")
        if report_type != OE_REPORT_TYPE_SGX_REMOTE:
            what = "an SGX local report" if report_type == OE_REPORT_TYPE_SGX_LOCAL else f"type {report_type}"
            raise _fail(f"OE report is {what}, not an SGX remote report (type 2)")
        size = int.from_bytes(data[8:16], "little")
        if size != len(data) - OE_REPORT_HEADER_SIZE:
            raise _fail(f"OE report header declares {size} bytes of quote, {len(data) - 16} follow")
        return OeEvidence("report", data[OE_REPORT_HEADER_SIZE:])
    if version == OE_ATTESTATION_HEADER_VERSION:
        if len(data) < OE_ATTESTATION_HEADER_SIZE:
            raise _fail("OE evidence is shorter than its 28-byte header")
        if data[4:20] != OE_FORMAT_UUID_SGX_ECDSA:
            raise _fail(f"OE evidence format {data[4:20].hex()} is not SGX-ECDSA")
        size = int.from_bytes(data[20:28], "little")
        if size != len(data) - OE_ATTESTATION_HEADER_SIZE:
            raise _fail(f"OE evidence header declares {size} data bytes, {len(data) - 28} follow")
        body = data[OE_ATTESTATION_HEADER_SIZE:]
        n = _quote_length(body)
        return OeEvidence("evidence", body[:n], body[n:])
    raise _fail(f"OE header version {version} is neither 1 (report) nor 3 (evidence)")


def unwrap(report: bytes) -> bytes:
    """The SGX quote inside an OE report (or OE evidence)."""
    return parse(report).quote
