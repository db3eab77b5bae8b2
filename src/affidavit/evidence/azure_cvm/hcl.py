"""The HCL report (vTPM NV index 0x01400001), its request data, the runtime claims JSON and the TDREPORT.

Layout (``shared/docs/azure-cvm.md`` §3): a 32-byte header (``HCLA`` …), the 1184-byte hardware report
area (an SNP ATTESTATION_REPORT, or a 1024-byte TDX TDREPORT padded with zeros), the IGVM request data
at 1216 (data_size, version, report_type, report_data_hash_type, variable_data_size[, capabilities]),
then the runtime claims (UTF-8 JSON) whose SHA-256 is the hardware REPORT_DATA[0:32].

Only the hardware report and the claims it binds are protected. The header after the magic, the
request data's ``data_size`` / ``version``, and the TDREPORT's REPORTTYPE / CPUSVN / reserved / MAC are
not: they are parsed and reported, never used to decide trust. ``data_size`` only locates the claims
(a wrong value moves the window and so breaks the binding); ``report_type`` must agree with the
hardware evidence actually verified; ``hash_type`` selects the (only supported) SHA-256 binding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit import strict_json
from affidavit.evidence.azure_cvm.errors import HclBindingError, HclFormatError

HCL_MAGIC = b"HCLA"
HEADER_SIZE = 32
HW_REPORT_OFFSET = 32
HW_REPORT_SIZE = 1184  # SNP ATTESTATION_REPORT; the largest hardware report
REQUEST_DATA_OFFSET = HW_REPORT_OFFSET + HW_REPORT_SIZE  # 1216
REQUEST_DATA_V1_SIZE = 20
MIN_HCL_SIZE = REQUEST_DATA_OFFSET + REQUEST_DATA_V1_SIZE  # 1236
MAX_HCL_SIZE = 16384  # NV indices are 2048 (older HCLs) or 2600 bytes; refuse anything far larger
MAX_CLAIMS_SIZE = 8192
MAX_JWKS = 16

REPORT_TYPE_VBS = 1
REPORT_TYPE_SNP = 2
REPORT_TYPE_TVM = 3
REPORT_TYPE_TDX = 4
REPORT_TYPES = {
    REPORT_TYPE_VBS: "VBS",
    REPORT_TYPE_SNP: "SNP",
    REPORT_TYPE_TVM: "TVM",
    REPORT_TYPE_TDX: "TDX",
}
HASH_TYPE_SHA256 = 1

TDREPORT_SIZE = 1024
SNP_REPORT_DATA_OFFSET = 0x50
SNP_VMPL_OFFSET = 0x30


@dataclass(frozen=True)
class HclReport:
    """A parsed HCL report. Fields marked *unprotected* are informational only."""

    raw: bytes = field(repr=False)
    header_version: int  # unprotected
    report_size: int  # unprotected
    request_type: int  # unprotected
    status: int  # unprotected
    data_size: int  # unprotected (locates the claims only)
    request_version: int  # unprotected
    report_type: int  # must agree with the verified hardware evidence
    hash_type: int
    claims_offset: int
    claims: bytes = field(repr=False)  # the exact runtime-claims bytes (what REPORT_DATA binds)

    @property
    def report_type_name(self) -> str:
        return REPORT_TYPES.get(self.report_type, str(self.report_type))

    @property
    def hardware_report(self) -> bytes:
        return self.raw[HW_REPORT_OFFSET:REQUEST_DATA_OFFSET]

    @property
    def snp_report(self) -> bytes:
        """The 1184-byte SNP ATTESTATION_REPORT (signature included)."""
        return self.hardware_report

    @property
    def tdreport(self) -> bytes:
        return self.hardware_report[:TDREPORT_SIZE]


def parse_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report of any NV buffer size (2048 or 2600 bytes seen); raises ``HclFormatError``."""
    if not isinstance(data, bytes | bytearray):
        raise HclFormatError("the HCL report must be bytes")
    data = bytes(data)
    if len(data) < MIN_HCL_SIZE:
        raise HclFormatError(f"HCL report is {len(data)} bytes, shorter than {MIN_HCL_SIZE}")
    if len(data) > MAX_HCL_SIZE:
        raise HclFormatError(f"HCL report is {len(data)} bytes, longer than {MAX_HCL_SIZE}")
    if data[:4] != HCL_MAGIC:
        raise HclFormatError("HCL report does not start with 'HCLA'")
    version, report_size, request_type, status = struct.unpack_from("<4I", data, 4)
    data_size, req_version, report_type, hash_type, var_size = struct.unpack_from(
        "<5I", data, REQUEST_DATA_OFFSET
    )
    if report_type not in REPORT_TYPES:
        raise HclFormatError(f"unknown HCL report_type {report_type}")
    if hash_type != HASH_TYPE_SHA256:
        raise HclFormatError(f"unsupported report_data_hash_type {hash_type} (only 1 = SHA-256)")
    if var_size > MAX_CLAIMS_SIZE:
        raise HclFormatError(f"runtime claims of {var_size} bytes exceed {MAX_CLAIMS_SIZE}")
    if data_size < REQUEST_DATA_V1_SIZE + var_size:
        raise HclFormatError("request data_size is smaller than its header plus the runtime claims")
    offset = REQUEST_DATA_OFFSET + data_size - var_size
    if offset + var_size > len(data):
        raise HclFormatError("the runtime claims run past the end of the HCL report")
    return HclReport(
        raw=data,
        header_version=version,
        report_size=report_size,
        request_type=request_type,
        status=status,
        data_size=data_size,
        request_version=req_version,
        report_type=report_type,
        hash_type=hash_type,
        claims_offset=offset,
        claims=data[offset : offset + var_size],
    )


def check_report_data(claims: bytes, report_data: bytes, what: str = "REPORT_DATA") -> None:
    """The binding rule: ``report_data == SHA-256(claims) || 32 zero bytes``."""
    if len(report_data) != 64:
        raise HclBindingError(f"{what} is {len(report_data)} bytes, not 64")
    digest = hashlib.sha256(claims).digest()
    if not hmac.compare_digest(report_data[:32], digest):
        raise HclBindingError(f"SHA-256 of the runtime claims is not {what}[0:32]")
    if any(report_data[32:]):
        raise HclBindingError(f"{what}[32:64] is not zero")


# --------------------------------------------------------------------------------------- runtime claims


@dataclass(frozen=True)
class RuntimeClaims:
    """The paravisor's runtime claims: ``keys`` (JWKs by kid), ``vm-configuration``, ``user-data``."""

    raw: bytes = field(repr=False)
    value: dict[str, Any] = field(repr=False)  # the whole parsed JSON object (unknown keys kept)
    keys: dict[str, dict[str, Any]]  # kid -> JWK
    vm_configuration: dict[str, Any]
    user_data: bytes | None  # the 64 bytes written to NV 0x01400002; None when absent

    def rsa_key(self, kid: str) -> rsa.RSAPublicKey:
        jwk = self.keys.get(kid)
        if jwk is None:
            raise HclFormatError(f"the runtime claims have no {kid!r} key")
        return rsa_jwk_public_key(jwk, kid)

    @property
    def ak_key(self) -> rsa.RSAPublicKey:
        """``HCLAkPub``: the vTPM attestation key the hardware report vouches for."""
        return self.rsa_key("HCLAkPub")

    @property
    def vm_unique_id(self) -> str | None:
        v = self.vm_configuration.get("vmUniqueId")
        return v if isinstance(v, str) else None


def _b64url_bytes(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text or len(text) > 4096:
        raise HclFormatError(f"{what} is not a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise HclFormatError(f"{what} is not valid base64url") from None


def rsa_jwk_public_key(jwk: object, what: str = "jwk") -> rsa.RSAPublicKey:
    """An RSA public key from a JWK (the paravisor writes RSA-2048 keys, e = AQAB)."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise HclFormatError(f"{what} is not an RSA JWK")
    n = int.from_bytes(_b64url_bytes(jwk.get("n"), f"{what}.n"), "big")
    e = int.from_bytes(_b64url_bytes(jwk.get("e"), f"{what}.e"), "big")
    if not 2048 <= n.bit_length() <= 8192 or e < 3 or e % 2 == 0 or e.bit_length() > 64:
        raise HclFormatError(f"{what} is not an acceptable RSA key (2048 to 8192 bits)")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise HclFormatError(f"{what} is not a valid RSA key") from None


def parse_runtime_claims(data: bytes) -> RuntimeClaims:
    """Parse the runtime claims JSON; never re-serialise (the exact bytes are what is hashed)."""
    if len(data) > MAX_CLAIMS_SIZE:
        raise HclFormatError(f"runtime claims of {len(data)} bytes exceed {MAX_CLAIMS_SIZE}")
    try:
        value = strict_json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HclFormatError("the runtime claims are not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise HclFormatError("the runtime claims are not a JSON object")
    raw_keys = value.get("keys", [])
    if not isinstance(raw_keys, list) or len(raw_keys) > MAX_JWKS:
        raise HclFormatError(f"runtime claims 'keys' must be a list of at most {MAX_JWKS} JWKs")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in raw_keys:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            raise HclFormatError("each runtime claims key must be a JWK with a string 'kid'")
        if jwk["kid"] in keys:
            raise HclFormatError(f"runtime claims key {jwk['kid']!r} appears twice")
        keys[jwk["kid"]] = jwk
    config = value.get("vm-configuration", {})
    if not isinstance(config, dict):
        raise HclFormatError("runtime claims 'vm-configuration' is not an object")
    user_data: bytes | None = None
    if "user-data" in value:
        text = value["user-data"]
        if not isinstance(text, str) or len(text) > 256:
            raise HclFormatError("runtime claims 'user-data' is not a hex string")
        try:
            user_data = bytes.fromhex(text)
        except ValueError:
            raise HclFormatError("runtime claims 'user-data' is not hex") from None
    return RuntimeClaims(bytes(data), value, keys, config, user_data)


# ------------------------------------------------------------------------------------------- TDREPORT


@dataclass(frozen=True)
class TdReport:
    """TDREPORT_STRUCT (1024 bytes). REPORTTYPE, CPUSVN and MAC are unprotected off the machine."""

    raw: bytes = field(repr=False)

    @property
    def report_type(self) -> bytes:
        return self.raw[0:4]

    @property
    def cpusvn(self) -> bytes:
        return self.raw[16:32]

    @property
    def tee_tcb_info_hash(self) -> bytes:
        return self.raw[32:80]

    @property
    def tee_info_hash(self) -> bytes:
        return self.raw[80:128]

    @property
    def report_data(self) -> bytes:
        return self.raw[128:192]

    @property
    def mac(self) -> bytes:
        return self.raw[224:256]

    @property
    def tee_tcb_info(self) -> bytes:
        return self.raw[256:495]

    @property
    def tdinfo(self) -> bytes:
        return self.raw[512:1024]

    # TEE_TCB_INFO fields
    @property
    def tee_tcb_svn(self) -> bytes:
        return self.tee_tcb_info[8:24]

    @property
    def mrseam(self) -> bytes:
        return self.tee_tcb_info[24:72]

    @property
    def mrsigner_seam(self) -> bytes:
        return self.tee_tcb_info[72:120]

    @property
    def seam_attributes(self) -> bytes:
        return self.tee_tcb_info[120:128]

    # TDINFO fields
    @property
    def td_attributes(self) -> bytes:
        return self.tdinfo[0:8]

    @property
    def xfam(self) -> bytes:
        return self.tdinfo[8:16]

    @property
    def mrtd(self) -> bytes:
        return self.tdinfo[16:64]

    @property
    def mr_config_id(self) -> bytes:
        return self.tdinfo[64:112]

    @property
    def mr_owner(self) -> bytes:
        return self.tdinfo[112:160]

    @property
    def mr_owner_config(self) -> bytes:
        return self.tdinfo[160:208]

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        t = self.tdinfo
        return (t[208:256], t[256:304], t[304:352], t[352:400])


def parse_tdreport(data: bytes) -> TdReport:
    """Parse a TDREPORT and check its internal hashes: TEE_TCB_INFO_HASH = SHA-384(TEE_TCB_INFO) and
    TEE_INFO_HASH = SHA-384(TDINFO). Those hashes are what a TD quote's QE signs over (through the
    MAC'd REPORTMACSTRUCT), so a TDREPORT whose hashes disagree with its own fields is forged."""
    if len(data) < TDREPORT_SIZE:
        raise HclFormatError(f"TDREPORT is {len(data)} bytes, not {TDREPORT_SIZE}")
    report = TdReport(bytes(data[:TDREPORT_SIZE]))
    if not hmac.compare_digest(hashlib.sha384(report.tee_tcb_info).digest(), report.tee_tcb_info_hash):
        raise HclBindingError("the TDREPORT's TEE_TCB_INFO_HASH is not SHA-384(TEE_TCB_INFO)")
    if not hmac.compare_digest(hashlib.sha384(report.tdinfo).digest(), report.tee_info_hash):
        raise HclBindingError("the TDREPORT's TEE_INFO_HASH is not SHA-384(TDINFO)")
    return report


def snp_report_data(report: bytes) -> bytes:
    return bytes(report[SNP_REPORT_DATA_OFFSET : SNP_REPORT_DATA_OFFSET + 64])


def snp_vmpl(report: bytes) -> int:
    return int.from_bytes(report[SNP_VMPL_OFFSET : SNP_VMPL_OFFSET + 4], "little")
