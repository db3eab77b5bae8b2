"""Assembly and signing of DCAP quotes v3, v4 and v5 (sgx-dcap.md §2), as Intel's quoting enclave does it."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.simulate.keys import raw_public_key, sign_raw
from affidavit.simulate.report import SGX_BODY_SIZE, TD10_BODY_SIZE, TD15_BODY_SIZE, SgxReportBody

INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
ATT_KEY_ECDSA_P256 = 2
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
# What Intel's QE puts in its authentication data; any bytes work as long as the QE report binds them.
INTEL_QE_AUTH_DATA = bytes(range(32))
# v5 body descriptor types.
BODY_SGX, BODY_TD10, BODY_TD15 = 1, 2, 3
_BODY_TYPE_BY_SIZE = {SGX_BODY_SIZE: BODY_SGX, TD10_BODY_SIZE: BODY_TD10, TD15_BODY_SIZE: BODY_TD15}


@dataclass(frozen=True)
class QuotingEnclave:
    """A quoting enclave: its own report, its attestation key, and the PCK key and chain that vouch for it."""

    report: SgxReportBody  # report_data is filled in at signing time
    attestation_key: ec.EllipticCurvePrivateKey
    pck_key: ec.EllipticCurvePrivateKey
    pck_chain_pem: bytes  # leaf || PCK CA || root, PEM
    qe_id: bytes  # 16 bytes, the header's user data
    pce_svn: int
    auth_data: bytes = INTEL_QE_AUTH_DATA

    def certified_report(self) -> tuple[bytes, bytes]:
        """The QE report binding the attestation key, and its signature by the PCK key."""
        binding = hashlib.sha256(raw_public_key(self.attestation_key) + self.auth_data).digest()
        report = replace(self.report, report_data=binding + bytes(32)).encode()
        return report, sign_raw(self.pck_key, report)

    def header(self, version: int, tee_type: int) -> bytes:
        # v3 carries the QE and PCE SVNs here; v4/v5 declare these bytes reserved (zero in real TDX quotes).
        svns = (self.report.isv_svn, self.pce_svn) if version == 3 else (0, 0)
        return (
            struct.pack("<HHI", version, ATT_KEY_ECDSA_P256, tee_type if version > 3 else 0)
            + struct.pack("<HH", *svns)
            + INTEL_QE_VENDOR_ID
            + self.qe_id.ljust(20, b"\0")
        )

    def quote(self, body: bytes, *, version: int, tee_type: int, trailing: int = 0) -> bytes:
        """Sign an encoded report body into a quote; ``trailing`` zero bytes mimic padded buffers."""
        if version == 3 and (tee_type != TEE_SGX or len(body) != SGX_BODY_SIZE):
            raise ValueError("a v3 quote carries an SGX report body")
        if version not in (3, 4, 5):
            raise ValueError(f"quote version must be 3, 4 or 5, not {version}")
        expected = {TEE_SGX: (SGX_BODY_SIZE,), TEE_TDX: (TD10_BODY_SIZE, TD15_BODY_SIZE)}[tee_type]
        if len(body) not in expected or (version == 4 and len(body) == TD15_BODY_SIZE):
            raise ValueError(
                f"a {len(body)}-byte body does not fit quote v{version} with TEE type {tee_type:#x}"
            )
        signed = self.header(version, tee_type)
        if version == 5:
            signed += struct.pack("<HI", _BODY_TYPE_BY_SIZE[len(body)], len(body))
        signed += body
        qe_report, qe_signature = self.certified_report()
        chain = _cert_data(CERT_DATA_PCK_CHAIN, self.pck_chain_pem + b"\0")
        qe_part = qe_report + qe_signature + struct.pack("<H", len(self.auth_data)) + self.auth_data
        signature = sign_raw(self.attestation_key, signed) + raw_public_key(self.attestation_key)
        if version == 3:
            signature += qe_part + chain
        else:
            signature += _cert_data(CERT_DATA_QE_REPORT, qe_part + chain)
        return signed + struct.pack("<I", len(signature)) + signature + bytes(trailing)


def _cert_data(kind: int, data: bytes) -> bytes:
    return struct.pack("<HI", kind, len(data)) + data
