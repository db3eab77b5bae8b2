"""A simulated SGX/TDX platform: its PCK certificate, its quoting enclaves, the quotes and the collateral."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from affidavit.simulate.collateral import (
    QE_MRSIGNER,
    TD_QE_MRSIGNER,
    DocumentDates,
    EnclaveLevel,
    QeIdentitySpec,
    TcbInfoSpec,
    TcbLevel,
    TdxModuleIdentity,
    sign_document,
)
from affidavit.simulate.keys import derive_bytes, derive_key
from affidavit.simulate.pck_extension import (
    SGX_TYPE_SCALABLE,
    SGX_TYPE_STANDARD,
    PckExtension,
    PlatformConfiguration,
)
from affidavit.simulate.pki import CaKind, Issued, Seed, SimulatedPki, to_utc_seconds
from affidavit.simulate.quote import TEE_SGX, TEE_TDX, QuotingEnclave
from affidavit.simulate.report import (
    TD_ATTR_DEBUG,
    TD_ATTR_SEPT_VE_DISABLE,
    SgxReportBody,
    TdReportBody,
    sgx_attributes,
)

Tee = Literal["sgx", "tdx"]

# QE report ATTRIBUTES: INIT | MODE64BIT | PROVISIONKEY, XFRM 0xE7 (as in real quotes).
_QE_ATTRIBUTES = bytes.fromhex("1500000000000000E700000000000000")
_QE_PROD_ID = {"sgx": 1, "tdx": 2}
_QE_MRSIGNER = {"sgx": QE_MRSIGNER, "tdx": TD_QE_MRSIGNER}


@dataclass(frozen=True)
class PlatformTcb:
    """The platform's TCB: what PCS certified in the PCK certificate, and the TDX module's TEE_TCB_SVN."""

    sgx_svns: tuple[int, ...] = (2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    pcesvn: int = 11
    tdx_svns: tuple[int, ...] = (5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    cpusvn: bytes = b""  # the PCK extension's CPUSVN; empty: the SGX SVNs as bytes

    def level(self, status: str = "UpToDate", advisory_ids: Sequence[str] = ()) -> TcbLevel:
        """A TCB level this platform matches exactly."""
        return TcbLevel(self.sgx_svns, self.pcesvn, status, tuple(advisory_ids), self.tdx_svns)

    def raised(self, by: int = 1) -> TcbLevel:
        """An UpToDate level just above this platform (its first SGX component higher): never matched."""
        svns = (self.sgx_svns[0] + by, *self.sgx_svns[1:])
        return TcbLevel(svns, self.pcesvn, "UpToDate", (), self.tdx_svns)


class SimulatedPlatform:
    """One machine with a PCK certificate from a simulated Intel PKI, able to produce signed quotes.

    Never trusted by default: a verifier accepts its quotes only with ``TrustAnchors.from_pem(root_pem)``.
    """

    def __init__(
        self,
        pki: SimulatedPki,
        *,
        name: str,
        fmspc: bytes,
        ca: CaKind,
        tee: Tee,
        tcb: PlatformTcb,
        qe_svn: int,
        pce_id: bytes,
        now: dt.datetime,
    ) -> None:
        if tee not in ("sgx", "tdx"):
            raise ValueError(f"tee must be 'sgx' or 'tdx', not {tee!r}")
        self.pki, self.name, self.fmspc, self.ca, self.tee = pki, name, fmspc, ca, tee
        self.tcb, self.qe_svn, self.pce_id = tcb, qe_svn, pce_id
        self.created = to_utc_seconds(now)
        seed = pki.seed
        platform_ca = ca == "platform"
        self.extension = PckExtension(
            ppid=derive_bytes(seed, f"{name}/ppid", 16),
            sgx_svns=tcb.sgx_svns,
            pcesvn=tcb.pcesvn,
            cpusvn=tcb.cpusvn or bytes(tcb.sgx_svns),
            pce_id=pce_id,
            fmspc=fmspc,
            sgx_type=SGX_TYPE_SCALABLE if platform_ca else SGX_TYPE_STANDARD,
            platform_instance_id=derive_bytes(seed, f"{name}/instance", 16) if platform_ca else None,
            configuration=PlatformConfiguration() if platform_ca else None,
        )
        self.pck: Issued = pki.issue_pck(ca, self.extension, name, self.created)
        self.pck_chain_pem = self.pck.pem + pki.pck_ca(ca).pem + pki.root_pem
        self.quoting_enclaves = {kind: self._quoting_enclave(kind) for kind in ("sgx", "tdx")}
        self.mrseam = derive_bytes(seed, f"{name}/mrseam", 48)

    @classmethod
    def create(
        cls,
        *,
        fmspc: str = "00906ED50000",
        ca: CaKind = "platform",
        tee: Tee = "sgx",
        tcb: PlatformTcb | None = None,
        qe_svn: int = 8,
        pce_id: str = "0000",
        now: dt.datetime | None = None,
        seed: Seed = None,
        pki: SimulatedPki | None = None,
        name: str = "platform-0",
    ) -> SimulatedPlatform:
        """A platform (and, unless ``pki`` is given, a fresh PKI) as of ``now`` (default: the wall clock)."""
        now = now or dt.datetime.now(dt.UTC)
        pki = pki or SimulatedPki.create(seed=seed, now=now)
        return cls(
            pki,
            name=name,
            fmspc=_hex(fmspc, 6, "fmspc"),
            ca=ca,
            tee=tee,
            tcb=tcb or PlatformTcb(),
            qe_svn=qe_svn,
            pce_id=_hex(pce_id, 2, "pce_id"),
            now=now,
        )

    def _quoting_enclave(self, kind: str) -> QuotingEnclave:
        seed = self.pki.seed
        report = SgxReportBody(
            mrenclave=derive_bytes(seed, f"{self.name}/qe-mrenclave/{kind}"),
            mrsigner=_QE_MRSIGNER[kind],
            isv_prod_id=_QE_PROD_ID[kind],
            isv_svn=self.qe_svn,
            attributes=_QE_ATTRIBUTES,
            cpusvn=bytes(self.tcb.sgx_svns),
        )
        return QuotingEnclave(
            report=report,
            attestation_key=derive_key(seed, f"{self.name}/attestation-key/{kind}"),
            pck_key=self.pck.key,
            pck_chain_pem=self.pck_chain_pem,
            qe_id=derive_bytes(seed, f"{self.name}/qe-id", 16),
            pce_svn=self.tcb.pcesvn,
        )

    # -- trust anchor and identifiers ---------------------------------------------------------------

    @property
    def root_pem(self) -> bytes:
        return self.pki.root_pem

    @property
    def pck_serial(self) -> int:
        return self.pck.serial

    @property
    def fmspc_hex(self) -> str:
        return self.fmspc.hex().upper()

    # -- quotes ------------------------------------------------------------------------------------

    def sign_sgx(self, body: SgxReportBody, *, version: int = 3, trailing: int = 0) -> bytes:
        """A quote (v3, v4 or v5) over an SGX enclave report body."""
        return self.quoting_enclaves["sgx"].quote(
            body.encode(), version=version, tee_type=TEE_SGX, trailing=trailing
        )

    def sign_tdx(self, body: TdReportBody, *, version: int = 4, trailing: int = 0) -> bytes:
        """A quote (v4, or v5 for TDX 1.0 and 1.5 bodies) over a TD report body."""
        return self.quoting_enclaves["tdx"].quote(
            body.encode(), version=version, tee_type=TEE_TDX, trailing=trailing
        )

    def sgx_quote(
        self,
        *,
        mrenclave: bytes = b"",
        mrsigner: bytes = b"",
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
        attributes: bytes | None = None,
        report_data: bytes = b"",
        miscselect: int = 0,
        cpusvn: bytes | None = None,
        config_id: bytes = b"",
        config_svn: int = 0,
        isv_ext_prod_id: bytes = b"",
        isv_family_id: bytes = b"",
        version: int = 3,
        trailing: int = 0,
    ) -> bytes:
        """An SGX quote for an enclave with these identity fields; short byte values are zero-padded."""
        body = SgxReportBody(
            mrenclave=mrenclave,
            mrsigner=mrsigner,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            attributes=attributes if attributes is not None else sgx_attributes(debug),
            miscselect=miscselect,
            cpusvn=cpusvn if cpusvn is not None else bytes(self.tcb.sgx_svns),
            report_data=report_data,
            isv_ext_prod_id=isv_ext_prod_id,
            config_id=config_id,
            config_svn=config_svn,
            isv_family_id=isv_family_id,
        )
        return self.sign_sgx(body, version=version, trailing=trailing)

    def tdx_quote(
        self,
        *,
        mrtd: bytes = b"",
        rtmrs: Sequence[bytes] = (),
        report_data: bytes = b"",
        debug: bool = False,
        td_attributes: int | None = None,
        xfam: int = 0x61AE7,
        mrseam: bytes | None = None,
        tee_tcb_svn: Sequence[int] | None = None,
        mr_config_id: bytes = b"",
        mr_owner: bytes = b"",
        mr_owner_config: bytes = b"",
        version: int = 4,
        td15: bool | None = None,
        tee_tcb_svn2: Sequence[int] | None = None,
        mr_service_td: bytes = b"",
        trailing: int = 0,
    ) -> bytes:
        """A TDX quote; v5 defaults to a TDX 1.5 body, whose TEE_TCB_SVN2 defaults to TEE_TCB_SVN."""
        td15 = version == 5 if td15 is None else td15
        svn = bytes(tee_tcb_svn if tee_tcb_svn is not None else self.tcb.tdx_svns)
        attrs = td_attributes if td_attributes is not None else TD_ATTR_SEPT_VE_DISABLE
        body = TdReportBody(
            tee_tcb_svn=svn,
            mrseam=self.mrseam if mrseam is None else mrseam,
            td_attributes=attrs | (TD_ATTR_DEBUG if debug else 0),
            xfam=xfam,
            mrtd=mrtd,
            mr_config_id=mr_config_id,
            mr_owner=mr_owner,
            mr_owner_config=mr_owner_config,
            rtmrs=tuple(rtmrs),
            report_data=report_data,
            td15=td15,
            tee_tcb_svn2=(bytes(tee_tcb_svn2) if tee_tcb_svn2 is not None else svn) if td15 else b"",
            mr_service_td=mr_service_td,
        )
        return self.sign_tdx(body, version=version, trailing=trailing)

    # -- collateral --------------------------------------------------------------------------------

    def collateral(
        self,
        *,
        now: dt.datetime | None = None,
        tee: Tee | None = None,
        tcb_levels: Sequence[TcbLevel] | None = None,
        qe_levels: Sequence[EnclaveLevel] | None = None,
        tdx_module_levels: Sequence[EnclaveLevel] | None = None,
        revoked: Iterable[int] = (),
        root_revoked: Iterable[int] = (),
        fmspc: str | None = None,
        pce_id: str | None = None,
        valid_for: dt.timedelta = dt.timedelta(days=30),
        tcb_evaluation_data_number: int = 17,
    ) -> dict[str, Any]:
        """Collateral in the offline JSON form, issued a day before ``now`` and valid for ``valid_for``.

        Defaults: one UpToDate TCB level equal to the platform's TCB, one UpToDate QE level at the QE's
        SVN, and for TDX one UpToDate level of the module identity ``TDX_%02X`` (TEE_TCB_SVN[1]).
        ``revoked`` lists PCK certificate serials for the PCK CRL (e.g. ``[platform.pck_serial]``);
        ``root_revoked`` lists serials for the Root CA CRL.
        """
        tee = tee or self.tee
        issue = to_utc_seconds(now or self.created) - dt.timedelta(days=1)
        dates = DocumentDates(issue, issue + valid_for, tcb_evaluation_data_number)
        modules: tuple[TdxModuleIdentity, ...] = ()
        if tee == "tdx" and self.tcb.tdx_svns[1] > 0:
            levels = (
                tdx_module_levels if tdx_module_levels is not None else (EnclaveLevel(self.tcb.tdx_svns[0]),)
            )
            modules = (TdxModuleIdentity(self.tcb.tdx_svns[1], tuple(levels)),)
        tcb_info = TcbInfoSpec(
            tee=tee,
            fmspc=_hex(fmspc, 6, "fmspc") if fmspc else self.fmspc,
            pce_id=_hex(pce_id, 2, "pce_id") if pce_id else self.pce_id,
            levels=tuple(tcb_levels) if tcb_levels is not None else (self.tcb.level(),),
            tdx_modules=modules,
        ).document(dates)
        qe_identity = QeIdentitySpec(
            tee=tee,
            levels=tuple(qe_levels) if qe_levels is not None else (EnclaveLevel(self.qe_svn),),
            mrsigner=_QE_MRSIGNER[tee],
            isv_prod_id=_QE_PROD_ID[tee],
        ).document(dates)
        signer = self.pki.tcb_signing
        signing_chain = (signer.pem + self.root_pem).decode()
        return {
            "pck_crl_issuer_chain": (self.pki.pck_ca(self.ca).pem + self.root_pem).decode(),
            "root_ca_crl": self.pki.root_crl(issue, issue + valid_for, root_revoked).hex(),
            "pck_crl": self.pki.pck_crl(self.ca, issue, issue + valid_for, revoked).hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": sign_document(signer.key, tcb_info),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": sign_document(signer.key, qe_identity),
        }


def _hex(value: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} must be hex, got {value!r}") from None
    if len(raw) != size:
        raise ValueError(f"{what} is {size} bytes ({2 * size} hex digits), got {value!r}")
    return raw
