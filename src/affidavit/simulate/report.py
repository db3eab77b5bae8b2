"""Report bodies as the hardware writes them (sgx-dcap.md §2.2): the SGX enclave report and the TD report."""

from __future__ import annotations

import struct
from dataclasses import dataclass

SGX_FLAG_INIT = 0x01
SGX_FLAG_DEBUG = 0x02
SGX_FLAG_MODE64BIT = 0x04
TD_ATTR_DEBUG = 0x01
TD_ATTR_SEPT_VE_DISABLE = 1 << 28

SGX_BODY_SIZE = 384
TD10_BODY_SIZE = 584
TD15_BODY_SIZE = 648


def _fixed(value: bytes, size: int, what: str) -> bytes:
    """Shorter values are zero-padded on the right (report data, IDs); longer ones are an error."""
    if len(value) > size:
        raise ValueError(f"{what} is at most {size} bytes, got {len(value)}")
    return value.ljust(size, b"\0")


def sgx_attributes(debug: bool = False, xfrm: int = 0xE7) -> bytes:
    """ATTRIBUTES of an ordinary initialised 64-bit enclave (FLAGS || XFRM)."""
    flags = SGX_FLAG_INIT | SGX_FLAG_MODE64BIT | (SGX_FLAG_DEBUG if debug else 0)
    return struct.pack("<QQ", flags, xfrm)


@dataclass(frozen=True)
class SgxReportBody:
    """An SGX REPORT body (384 bytes); the layout of both the enclave's report and the QE's report."""

    mrenclave: bytes = b""
    mrsigner: bytes = b""
    isv_prod_id: int = 0
    isv_svn: int = 0
    attributes: bytes = b""  # empty: sgx_attributes(debug=False)
    miscselect: int = 0
    cpusvn: bytes = b""
    report_data: bytes = b""
    isv_ext_prod_id: bytes = b""
    config_id: bytes = b""
    config_svn: int = 0
    isv_family_id: bytes = b""

    def encode(self) -> bytes:
        attributes = self.attributes or sgx_attributes()
        out = b"".join(
            [
                _fixed(self.cpusvn, 16, "cpusvn"),
                struct.pack("<I", self.miscselect),
                bytes(12),
                _fixed(self.isv_ext_prod_id, 16, "isv_ext_prod_id"),
                _fixed(attributes, 16, "attributes"),
                _fixed(self.mrenclave, 32, "mrenclave"),
                bytes(32),
                _fixed(self.mrsigner, 32, "mrsigner"),
                bytes(32),
                _fixed(self.config_id, 64, "config_id"),
                struct.pack("<HHH", self.isv_prod_id, self.isv_svn, self.config_svn),
                bytes(42),
                _fixed(self.isv_family_id, 16, "isv_family_id"),
                _fixed(self.report_data, 64, "report_data"),
            ]
        )
        assert len(out) == SGX_BODY_SIZE
        return out


@dataclass(frozen=True)
class TdReportBody:
    """A TD report body: TDX 1.0 (584 bytes) or, with ``td15=True``, TDX 1.5 (648 bytes)."""

    tee_tcb_svn: bytes = b""
    mrseam: bytes = b""
    mrsignerseam: bytes = b""
    seam_attributes: bytes = b""
    td_attributes: int = TD_ATTR_SEPT_VE_DISABLE
    xfam: int = 0x61AE7
    mrtd: bytes = b""
    mr_config_id: bytes = b""
    mr_owner: bytes = b""
    mr_owner_config: bytes = b""
    rtmrs: tuple[bytes, ...] = ()
    report_data: bytes = b""
    td15: bool = False
    tee_tcb_svn2: bytes = b""
    mr_service_td: bytes = b""

    def encode(self) -> bytes:
        if len(self.rtmrs) > 4:
            raise ValueError("a TD has four RTMRs")
        rtmrs = [*self.rtmrs, *([b""] * (4 - len(self.rtmrs)))]
        parts = [
            _fixed(self.tee_tcb_svn, 16, "tee_tcb_svn"),
            _fixed(self.mrseam, 48, "mrseam"),
            _fixed(self.mrsignerseam, 48, "mrsignerseam"),
            _fixed(self.seam_attributes, 8, "seam_attributes"),
            struct.pack("<QQ", self.td_attributes, self.xfam),
            _fixed(self.mrtd, 48, "mrtd"),
            _fixed(self.mr_config_id, 48, "mr_config_id"),
            _fixed(self.mr_owner, 48, "mr_owner"),
            _fixed(self.mr_owner_config, 48, "mr_owner_config"),
            *(_fixed(r, 48, f"rtmr{i}") for i, r in enumerate(rtmrs)),
            _fixed(self.report_data, 64, "report_data"),
        ]
        if self.td15:
            parts += [
                _fixed(self.tee_tcb_svn2, 16, "tee_tcb_svn2"),
                _fixed(self.mr_service_td, 48, "mr_service_td"),
            ]
        elif self.tee_tcb_svn2 or self.mr_service_td:
            raise ValueError("tee_tcb_svn2 and mr_service_td exist only in TDX 1.5 reports")
        out = b"".join(parts)
        assert len(out) == (TD15_BODY_SIZE if self.td15 else TD10_BODY_SIZE)
        return out
