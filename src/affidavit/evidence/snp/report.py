"""Parsing the 1184-byte SEV-SNP ATTESTATION_REPORT (versions 1-5; sev-snp.md §2).

Parsing is structural only: it refuses bytes that no AMD firmware emits (wrong length, reserved bits or
ranges set, unknown signing key or signature algorithm) and decodes every field. Nothing here is
authenticated; `affidavit.evidence.snp.authenticate` checks the signature and the certificate chain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any

from affidavit.evidence.snp.errors import (
    REPORT_MALFORMED,
    UNSUPPORTED_SIGNATURE_ALGO,
    SnpError,
)

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1

SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7
SIGNING_KEY_NAMES = {SIGNING_KEY_VCEK: "VCEK", SIGNING_KEY_VLEK: "VLEK", SIGNING_KEY_NONE: "none"}

MILAN, GENOA, TURIN = "Milan", "Genoa", "Turin"
PRODUCTS = (MILAN, GENOA, TURIN)

# POLICY (u64 at 0x008) bits.
POLICY_SMT = 1 << 16
POLICY_RESERVED_1 = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25
POLICY_RESERVED_MASK = ~((1 << 26) - 1) & 0xFFFFFFFFFFFFFFFF

# PLATFORM_INFO (u64 at 0x040) bits; unknown bits are reported, not refused (new firmware adds bits).
PLATFORM_SMT_EN = 1 << 0
PLATFORM_TSME_EN = 1 << 1
PLATFORM_ECC_EN = 1 << 2
PLATFORM_RAPL_DIS = 1 << 3
PLATFORM_CIPHERTEXT_HIDING_EN = 1 << 4
PLATFORM_ALIAS_CHECK_COMPLETE = 1 << 5
PLATFORM_TIO_EN = 1 << 7


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION: the raw 8 bytes and their SPLs under one product's layout (sev-snp.md §2.7).

    Milan/Genoa: bootloader(0) tee(1) reserved(2-5) snp(6) microcode(7); Turin: fmc(0) bootloader(1)
    tee(2) snp(3) reserved(4-6) microcode(7). ``fmc`` is None on the legacy layout."""

    raw: bytes
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None

    @classmethod
    def decode(cls, raw: bytes, product: str) -> TcbVersion:
        if product == TURIN:
            return cls(bytes(raw), raw[1], raw[2], raw[3], raw[7], raw[0])
        return cls(bytes(raw), raw[0], raw[1], raw[6], raw[7], None)

    @classmethod
    def from_spls(cls, product: str, spls: dict[str, int]) -> TcbVersion:
        """From SPL values by AMD's extension names (``blSPL`` ...; ``fmcSPL`` on Turin), laid out as
        ``product``'s firmware does."""
        bl, tee, snp, ucode = (spls.get(k, 0) for k in ("blSPL", "teeSPL", "snpSPL", "ucodeSPL"))
        if product == TURIN:
            raw = bytes([spls.get("fmcSPL", 0), bl, tee, snp, 0, 0, 0, ucode])
        else:
            raw = bytes([bl, tee, 0, 0, 0, 0, snp, ucode])
        return cls.decode(raw, product)

    @classmethod
    def from_tcbm(cls, tcbm: str, product: str) -> TcbVersion:
        """From THIM's ``tcbm`` (the u64 as big-endian hex)."""
        return cls.decode(bytes.fromhex(tcbm)[::-1], product)

    @property
    def reserved_nonzero(self) -> bool:
        spans = (4, 5, 6) if self.fmc is not None else (2, 3, 4, 5)
        return any(self.raw[i] for i in spans)

    def components(self) -> dict[str, int]:
        """SPL name -> value, with AMD's VCEK extension names (``blSPL`` ...)."""
        parts = {"blSPL": self.bootloader, "teeSPL": self.tee, "snpSPL": self.snp, "ucodeSPL": self.microcode}
        if self.fmc is not None:
            parts = {"fmcSPL": self.fmc, **parts}
        return parts

    def to_dict(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        out.update(bootloader=self.bootloader, tee=self.tee, snp=self.snp, microcode=self.microcode)
        out["raw"] = self.raw.hex()
        return out

    @property
    def tcbm(self) -> str:
        """The u64 as big-endian hex: Azure THIM's ``tcbm`` spelling."""
        return self.raw[::-1].hex()


def product_from_cpuid(family: int, model: int) -> str | None:
    """Product line from CPUID family/model (v3+ reports); None for parts this verifier does not know."""
    if family == 0x19:
        if model <= 0x0F:
            return MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return GENOA
    if family == 0x1A and model <= 0x11:
        return TURIN
    return None


_TCB_FIELD = {w: f"{w}_tcb_raw" for w in ("current", "reported", "committed", "launch")}


@dataclass(frozen=True)
class SnpReport:
    """A parsed (unauthenticated) ATTESTATION_REPORT. Byte fields are raw, in report order."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb_raw: bytes
    platform_info: int
    key_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb_raw: bytes
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb_raw: bytes
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb_raw: bytes
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def signing_key(self) -> int:
        return (self.key_info >> 2) & 0x7

    @property
    def signing_key_name(self) -> str:
        return SIGNING_KEY_NAMES.get(self.signing_key, "reserved")

    @property
    def author_key_en(self) -> bool:
        return bool(self.key_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.key_info & 2)

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def migrate_ma(self) -> bool:
        return bool(self.policy & POLICY_MIGRATE_MA)

    @property
    def smt_allowed(self) -> bool:
        return bool(self.policy & POLICY_SMT)

    @property
    def abi_major(self) -> int:
        return (self.policy >> 8) & 0xFF

    @property
    def abi_minor(self) -> int:
        return self.policy & 0xFF

    @property
    def cpuid_product(self) -> str | None:
        """The product line the report names (v3+ with a known family/model), else None."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def chip_id_masked(self) -> bool:
        return not any(self.chip_id)

    def tcb(self, which: str, product: str) -> TcbVersion:
        """``which`` in current | reported | committed | launch, decoded with ``product``'s layout."""
        return TcbVersion.decode(getattr(self, _TCB_FIELD[which]), product)


    def to_dict(self, product: str | None = None) -> dict[str, Any]:
        """Every field, for people and scripts; TCBs decoded with ``product``'s layout (default: the
        CPUID's, else raw only)."""
        product = product or self.cpuid_product

        def tcb(raw: bytes) -> dict[str, Any]:
            return TcbVersion.decode(raw, product).to_dict() if product else {"raw": raw.hex()}

        out: dict[str, Any] = {
            "version": self.version,
            "product": product,
            "guest_svn": self.guest_svn,
            "policy": f"0x{self.policy:016x}",
            "policy_abi": f"{self.abi_major}.{self.abi_minor}",
            "policy_smt_allowed": self.smt_allowed,
            "policy_migrate_ma_allowed": self.migrate_ma,
            "policy_debug_allowed": self.debug,
            "policy_single_socket_required": bool(self.policy & POLICY_SINGLE_SOCKET),
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "platform_info": f"0x{self.platform_info:016x}",
            "author_key_en": self.author_key_en,
            "mask_chip_key": self.mask_chip_key,
            "signing_key": self.signing_key_name,
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "current_tcb": tcb(self.current_tcb_raw),
            "reported_tcb": tcb(self.reported_tcb_raw),
            "committed_tcb": tcb(self.committed_tcb_raw),
            "launch_tcb": tcb(self.launch_tcb_raw),
            "cpuid": None if self.cpuid_fam_id is None else
            {"family": self.cpuid_fam_id, "model": self.cpuid_mod_id, "stepping": self.cpuid_step},
            "chip_id": self.chip_id.hex(),
            "current_version": f"{self.current_major}.{self.current_minor}.{self.current_build}",
            "committed_version": f"{self.committed_major}.{self.committed_minor}.{self.committed_build}",
        }
        if self.launch_mit_vector is not None:
            out["launch_mit_vector"] = f"0x{self.launch_mit_vector:016x}"
            out["current_mit_vector"] = f"0x{self.current_mit_vector or 0:016x}"
        return out


def _new_report(*values: Any) -> SnpReport:
    """``SnpReport(*values)`` without its frozen ``__init__``'s 35 ``object.__setattr__`` calls (a tenth
    of an uncached verification's Python time); the fields are filled in declaration order."""
    report = object.__new__(SnpReport)
    report.__dict__.update(zip(_REPORT_FIELDS, values, strict=True))
    return report


def _zero(data: bytes, start: int, end: int, what: str) -> None:
    if data.count(0, start, end) != end - start:
        raise SnpError(f"SNP report: reserved {what} (0x{start:03x}..0x{end - 1:03x}) is not zero")


_REPORT_FIELDS = tuple(f.name for f in fields(SnpReport))
_HEAD = struct.Struct("<IIQ16s16sII8sQI")
"""0x000..0x04C: VERSION, GUEST_SVN, POLICY, FAMILY_ID, IMAGE_ID, VMPL, SIGNATURE_ALGO, CURRENT_TCB,
PLATFORM_INFO, KEY_INFO."""
_VERSIONS = struct.Struct("<3BxBBBx")  # 0x1E8: CURRENT_BUILD/MINOR/MAJOR, reserved, COMMITTED_..., reserved
_MIT = struct.Struct("<QQ")  # 0x1F8: LAUNCH_MIT_VECTOR, CURRENT_MIT_VECTOR (v5)


def parse_report(data: bytes) -> SnpReport:
    """Decode an ATTESTATION_REPORT; raise `SnpError` (``snp_report_malformed`` or
    ``snp_unsupported_signature_algorithm``) for anything AMD firmware does not produce."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnpError("SNP report must be bytes")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise SnpError(f"SNP report must be {REPORT_SIZE} bytes, got {len(data)}")
    (version, guest_svn, policy, family_id, image_id, vmpl, signature_algo, current_tcb, platform_info,
     key_info) = _HEAD.unpack_from(data)
    if version == 0:
        raise SnpError("SNP report version 0 does not exist")
    if not policy & POLICY_RESERVED_1:
        raise SnpError("SNP report: POLICY bit 17 (reserved, must be one) is zero")
    if policy & POLICY_RESERVED_MASK:
        raise SnpError(f"SNP report: reserved POLICY bits 63:26 set (0x{policy:016x})")
    if signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise SnpError(
            f"SNP report signature algorithm {signature_algo} is not 1 (ECDSA P-384 with SHA-384)",
            code=UNSUPPORTED_SIGNATURE_ALGO,
        )
    if key_info >> 5:
        raise SnpError(f"SNP report: reserved KEY_INFO bits 31:5 set (0x{key_info:08x})")
    signing_key = (key_info >> 2) & 0x7
    if signing_key not in SIGNING_KEY_NAMES:
        raise SnpError(f"SNP report: SIGNING_KEY {signing_key} is reserved")
    _zero(data, 0x04C, 0x050, "word after KEY_INFO")
    fam: int | None
    mod: int | None
    step: int | None
    launch_mit: int | None
    current_mit: int | None
    if version >= 3:
        _zero(data, 0x18B, 0x1A0, "bytes after CPUID")
        fam, mod, step = data[0x188], data[0x189], data[0x18A]
    else:
        _zero(data, 0x188, 0x1A0, "bytes after REPORTED_TCB")
        fam = mod = step = None
    _zero(data, 0x1EB, 0x1EC, "byte after CURRENT_MAJOR")
    _zero(data, 0x1EF, 0x1F0, "byte after COMMITTED_MAJOR")
    if version >= 5:
        _zero(data, 0x208, SIGNED_SIZE, "bytes after CURRENT_MIT_VECTOR")
        launch_mit, current_mit = _MIT.unpack_from(data, 0x1F8)
    else:
        _zero(data, 0x1F8, SIGNED_SIZE, "bytes after LAUNCH_TCB")
        launch_mit = current_mit = None
    # r and s: 72-byte little-endian fields of which 48 bytes are significant (sev-snp.md §2.3).
    _zero(data, 0x2A0 + 48, 0x2E8, "padding of signature R")
    _zero(data, 0x2E8 + 48, 0x330, "padding of signature S")
    # Not signed, so a strict parser refuses anything there (go-sev-guest does too).
    _zero(data, 0x330, REPORT_SIZE, "tail of the signature field")
    cur_build, cur_minor, cur_major, com_build, com_minor, com_major = _VERSIONS.unpack_from(data, 0x1E8)
    return _new_report(
        data, version, guest_svn, policy, family_id, image_id, vmpl, signature_algo, current_tcb,
        platform_info, key_info,
        data[0x050:0x090],  # report_data
        data[0x090:0x0C0],  # measurement
        data[0x0C0:0x0E0],  # host_data
        data[0x0E0:0x110],  # id_key_digest
        data[0x110:0x140],  # author_key_digest
        data[0x140:0x160],  # report_id
        data[0x160:0x180],  # report_id_ma
        data[0x180:0x188],  # reported_tcb_raw
        fam, mod, step,
        data[0x1A0:0x1E0],  # chip_id
        data[0x1E0:0x1E8],  # committed_tcb_raw
        cur_build, cur_minor, cur_major, com_build, com_minor, com_major,
        data[0x1F0:0x1F8],  # launch_tcb_raw
        launch_mit, current_mit,
        int.from_bytes(data[0x2A0:0x2E8], "little"),  # signature_r
        int.from_bytes(data[0x2E8:0x330], "little"),  # signature_s
    )


__all__ = [
    "GENOA",
    "MILAN",
    "PRODUCTS",
    "REPORT_MALFORMED",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "TURIN",
    "SnpReport",
    "TcbVersion",
    "parse_report",
    "product_from_cpuid",
]
