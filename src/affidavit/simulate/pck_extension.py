"""Encoding of the SGX extension (OID 1.2.840.113741.1.13.1) that PCK certificates carry (sgx-dcap.md §4).

The verifier matches the TCB in this extension, not the report's CPUSVN, against TCB Info; so the
simulator must write it exactly as Intel's PCS does (a SEQUENCE of {OID, value} pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

from affidavit.simulate import der

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"

SGX_TYPE_STANDARD = 0
SGX_TYPE_SCALABLE = 1
SGX_TYPE_SCALABLE_WITH_INTEGRITY = 2


@dataclass(frozen=True)
class PlatformConfiguration:
    """The Platform-CA-only Configuration field (.7)."""

    dynamic_platform: bool = True
    cached_keys: bool = True
    smt_enabled: bool = True


@dataclass(frozen=True)
class PckExtension:
    """Values written into a simulated PCK certificate."""

    ppid: bytes
    sgx_svns: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    configuration: PlatformConfiguration | None = None

    def __post_init__(self) -> None:
        if (
            len(self.ppid) != 16
            or len(self.cpusvn) != 16
            or len(self.platform_instance_id or bytes(16)) != 16
        ):
            raise ValueError("PPID, CPUSVN and PlatformInstanceID are 16 bytes")
        if len(self.sgx_svns) != 16 or not all(0 <= s <= 255 for s in self.sgx_svns):
            raise ValueError("sgx_svns must be 16 values in 0..255")
        if not 0 <= self.pcesvn <= 0xFFFF:
            raise ValueError("pcesvn must fit in 16 bits")
        if len(self.pce_id) != 2 or len(self.fmspc) != 6:
            raise ValueError("PCE-ID is 2 bytes and FMSPC 6 bytes")

    def to_der(self) -> bytes:
        """The extension value (the content of the X.509 extension's OCTET STRING)."""

        def field(suffix: str, value: bytes) -> bytes:
            return der.sequence(der.oid(f"{SGX_EXTENSION_OID}.{suffix}"), value)

        tcb = [field(f"2.{i + 1}", der.integer(svn)) for i, svn in enumerate(self.sgx_svns)]
        tcb.append(field("2.17", der.integer(self.pcesvn)))
        tcb.append(field("2.18", der.octet_string(self.cpusvn)))
        fields = [
            field("1", der.octet_string(self.ppid)),
            field("2", der.sequence(*tcb)),
            field("3", der.octet_string(self.pce_id)),
            field("4", der.octet_string(self.fmspc)),
            field("5", der.enumerated(self.sgx_type)),
        ]
        if self.platform_instance_id is not None:
            fields.append(field("6", der.octet_string(self.platform_instance_id)))
        if self.configuration is not None:
            cfg = self.configuration
            fields.append(
                field(
                    "7",
                    der.sequence(
                        field("7.1", der.boolean(cfg.dynamic_platform)),
                        field("7.2", der.boolean(cfg.cached_keys)),
                        field("7.3", der.boolean(cfg.smt_enabled)),
                    ),
                )
            )
        return der.sequence(*fields)
