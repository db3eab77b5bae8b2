"""Azure CVM verification: hardware report (SNP seam or TD quote), claims binding, AK, vTPM quote, log.

Pure: bytes, collateral, the verifiers and ``now`` in; an ``AzureCvmResult`` or one ``EvidenceError``
out. The SNP hardware report is verified through one injected seam, ``SnpReportVerifier``, so that
this package never carries a second SNP implementation; ``snp_verifier_from_package()`` adapts
``affidavit.evidence.snp`` when it is installed.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit.evidence import EvidenceError
from affidavit.evidence.azure_cvm.errors import (
    AkMismatchError,
    HardwareMismatchError,
    HclFormatError,
    NotAttestableError,
    TdReportMismatchError,
)
from affidavit.evidence.azure_cvm.hcl import (
    HW_REPORT_SIZE,
    REPORT_TYPE_SNP,
    REPORT_TYPE_TDX,
    HclReport,
    RuntimeClaims,
    TdReport,
    check_report_data,
    parse_hcl_report,
    parse_runtime_claims,
    parse_tdreport,
    snp_report_data,
    snp_vmpl,
)
from affidavit.evidence.tpm import (
    TpmEvidence,
    TpmResult,
    TpmTrust,
    TpmVerifier,
    parse_attest,
    verify_tpm,
)
from affidavit.evidence.tpm import constants as tpmc

MAX_CACHED_KEYS = 4096
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL)


class SnpReportVerifier(Protocol):
    """The seam to the SEV-SNP verifier: verify a 1184-byte ATTESTATION_REPORT against its VCEK chain
    (PEM or DER: VCEK first, then ASK, ARK) at ``now``, exactly as ``/attest/SevSnpVm`` does, and return
    its ``x-ms-sevsnpvm-*`` claims; raise an ``EvidenceError`` when it does not verify. ``crl``: None
    when no CRL was looked up, else AMD's CRLs looked up for ``crl_product`` (possibly none), which the
    chain must verify to."""

    def __call__(
        self, report: bytes, vcek_chain: bytes, now: datetime,
        crl: tuple[bytes, ...] | None = None, crl_product: str | None = None,
    ) -> Mapping[str, Any]: ...


def snp_verifier_from_package(trust: Any = None, *, require_crl: bool = False) -> SnpReportVerifier:
    """An adapter over ``affidavit.evidence.snp`` (``SnpVerifier(trust).verify``): the one place the two
    packages meet. ``trust``: an ``AmdTrust`` (default ``AmdTrust.amd()``, AMD's pinned ARKs). The chain
    is split here: the VEK first, then the ASK/ARK given with it (none given: the ASK shipped with the SNP
    package), so a VEK under another product's chain fails. ``require_crl``: refuse a report without
    its product's ARK-signed CRL (``SnpOptions.require_crl``)."""
    from affidavit.evidence import snp as amd
    from affidavit.evidence.snp.certs import MAX_BUNDLE_CERTIFICATES
    from affidavit.evidence.snp.errors import CERTIFICATE_MALFORMED, CRL_UNAVAILABLE

    verifier = amd.SnpVerifier(trust if trust is not None else amd.AmdTrust.amd())
    options = amd.SnpOptions(require_crl=require_crl)

    def verify(
        report: bytes, vcek_chain: bytes, now: datetime,
        crl: tuple[bytes, ...] | None = None, crl_product: str | None = None,
    ) -> Mapping[str, Any]:
        # Split by PEM armour only: certificate parsing (hostile DER) is the SNP package's. The lazy
        # pattern scans to the end from each BEGIN line, so their number is bounded first.
        if vcek_chain.count(b"-----BEGIN") > MAX_BUNDLE_CERTIFICATES:
            raise amd.SnpError(f"more than {MAX_BUNDLE_CERTIFICATES} certificates in the VCEK chain",
                               code=CERTIFICATE_MALFORMED)
        blocks = _PEM_BLOCK.findall(vcek_chain)
        vek, chain = (blocks[0], b"".join(blocks[1:]) or None) if blocks else (vcek_chain, None)
        result = verifier.verify(report, vek, chain, now, crl=crl or None, options=options)
        if crl is not None and result.product != crl_product:  # never verified without its own CRL
            raise amd.SnpError(
                f"the certificates are {result.product}'s, but the CRL looked up was "
                f"{crl_product or 'none'}'s", code=CRL_UNAVAILABLE,
            )
        return dict(result.claims)

    return verify


@dataclass(frozen=True)
class VtpmQuote:
    """The vTPM's evidence. ``signature`` is the raw RSA signature (MAA's ``PcrSignature``, Trustee's
    ``signature``) or a TPMT_SIGNATURE; ``pcrs`` the SHA-256 bank values by index; ``pcr_set`` MAA's
    ``PcrSet`` (must equal the quote's selection); ``ak_public`` MAA's ``AikPub`` (TPM2B_PUBLIC)."""

    message: bytes
    signature: bytes
    pcrs: Mapping[int, bytes]
    pcr_set: tuple[int, ...] | None = None
    ak_public: bytes | None = None
    event_log: bytes | None = None


@dataclass(frozen=True)
class AzureCvmEvidence:
    """One CVM's evidence. Either ``hcl_report`` (the whole NV blob: claims, SNP report or TDREPORT
    come from it) or ``runtime_claims`` with ``snp_report`` / ``td_quote`` (MAA's IsolationInfo)."""

    vtpm: VtpmQuote
    hcl_report: bytes | None = None
    runtime_claims: bytes | None = None
    snp_report: bytes | None = None
    vcek_chain: bytes | None = None
    td_quote: bytes | None = None


@dataclass(frozen=True)
class AzureCvmResult:
    tee: str  # "sevsnpvm" | "tdxvm": what was verified, never the HCL report_type alone
    runtime: RuntimeClaims
    hardware_claims: dict[str, Any]  # x-ms-sevsnpvm-* (SNP seam) or the DCAP tdx_* claims
    tpm: TpmResult
    ak: rsa.RSAPublicKey = field(repr=False)
    dcap: Any = None  # the DcapResult on TDX
    hcl: HclReport | None = None
    tdreport: TdReport | None = None


def check_hcl_structure(hcl: HclReport) -> RuntimeClaims:
    """What a lone HCL report allows: layout, claims JSON, TDREPORT hashes and the REPORT_DATA binding
    (the SNP report's or the TDREPORT's). Authentication is still missing after this."""
    claims = parse_runtime_claims(hcl.claims)
    if hcl.report_type == REPORT_TYPE_SNP:
        check_report_data(hcl.claims, snp_report_data(hcl.snp_report), "SNP REPORT_DATA")
    elif hcl.report_type == REPORT_TYPE_TDX:
        td = parse_tdreport(hcl.tdreport)
        check_report_data(hcl.claims, td.report_data, "TDREPORT REPORTDATA")
    else:
        raise NotAttestableError(f"HCL report_type {hcl.report_type_name} carries no hardware report")
    return claims


def tpmt_rsassa_signature(raw: bytes) -> bytes:
    """A TPMT_SIGNATURE for a raw RSASSA-SHA256 signature (what the Azure AK produces)."""
    if len(raw) in (256, 384, 512):
        return (
            tpmc.ALG_RSASSA.to_bytes(2, "big")
            + tpmc.ALG_SHA256.to_bytes(2, "big")
            + len(raw).to_bytes(2, "big")
            + raw
        )
    return raw


def _same_rsa(a: Any, b: rsa.RSAPublicKey) -> bool:
    return isinstance(a, rsa.RSAPublicKey) and a.public_numbers() == b.public_numbers()


def verify_vtpm(
    vtpm: VtpmQuote,
    ak: rsa.RSAPublicKey,
    nonce: bytes | None,
    now: datetime,
    tpm: TpmVerifier | None = None,
) -> TpmResult:
    """The vTPM quote with the HCL-attested AK: signature, nonce (None: not checked, as MAA's clients
    send an empty one and freshness comes from the sealed response), selection == ``pcr_set``, PCR
    digest and, with a log, its replay."""
    attest = parse_attest(vtpm.message)
    selected = [sel for sel in attest.pcr_select if sel.pcrs]
    if len(selected) != 1 or selected[0].hash_alg != tpmc.ALG_SHA256:
        raise HclFormatError("the vTPM quote must select PCRs of the SHA-256 bank only")
    quoted = selected[0].pcrs
    if vtpm.pcr_set is not None and tuple(sorted(set(vtpm.pcr_set))) != tuple(quoted):
        raise HclFormatError(f"PcrSet {list(vtpm.pcr_set)} is not the quote's selection {list(quoted)}")
    mask = 0
    for i in quoted:
        mask |= 1 << i
    evidence = TpmEvidence(
        quote=vtpm.message,
        signature=tpmt_rsassa_signature(vtpm.signature),
        pcrs={"sha256": dict(vtpm.pcrs)},
        ak_public=vtpm.ak_public if vtpm.ak_public is not None else ak,
        event_log=vtpm.event_log,
    )
    expected = attest.extra_data if nonce is None else nonce
    options: dict[str, Any] = {"require_valid_aik_cert": False, "required_pcr_mask": mask}
    if tpm is not None:
        result = tpm.verify(evidence, expected, now, **options)
    else:
        result = verify_tpm(evidence, expected, TpmTrust(), now, **options)
    if not _same_rsa(result.ak.public_key, ak):  # the quote's key (AikPub, parsed once) must be HCLAkPub
        raise AkMismatchError("AikPub is not the HCLAkPub key of the runtime claims")
    return result


def _compare_tdreport(td: TdReport, body: Any) -> None:
    pairs = {
        "REPORTDATA": (td.report_data, body.report_data),
        "MRTD": (td.mrtd, body.mrtd),
        "TD ATTRIBUTES": (td.td_attributes, body.td_attributes),
        "XFAM": (td.xfam, body.xfam),
        "MRCONFIGID": (td.mr_config_id, body.mr_config_id),
        "MROWNER": (td.mr_owner, body.mr_owner),
        "MROWNERCONFIG": (td.mr_owner_config, body.mr_owner_config),
        "RTMRs": (b"".join(td.rtmrs), b"".join(body.rtmrs)),
        "MRSEAM": (td.mrseam, body.mrseam),
        "MRSIGNERSEAM": (td.mrsigner_seam, body.mrsigner_seam),
        "SEAMATTRIBUTES": (td.seam_attributes, body.seam_attributes),
        "TEE_TCB_SVN": (td.tee_tcb_svn, body.tee_tcb_svn),
    }
    for name, (ours, theirs) in pairs.items():
        if not hmac.compare_digest(bytes(ours), bytes(theirs)):
            raise TdReportMismatchError(f"the TD quote's {name} is not the HCL report's TDREPORT {name}")


class AzureCvmVerifier:
    """Verifies Azure CVM evidence with the injected hardware verifiers (the service holds one).

    ``snp``: the SNP seam (None: SNP evidence is not attestable here); ``dcap``: a ``DcapVerifier``
    (None: TDX evidence is not attestable); ``tpm``: a ``TpmVerifier`` for its event cache (optional).
    """

    def __init__(
        self, snp: SnpReportVerifier | None = None, dcap: Any = None, tpm: TpmVerifier | None = None
    ) -> None:
        self.snp = snp
        self.dcap = dcap
        self.tpm = tpm
        self._keys: dict[tuple[str, str], rsa.RSAPublicKey] = {}  # HCLAkPub (n, e) -> key: a VM's AK repeats
        self._lock = threading.Lock()

    def _ak_key(self, runtime: RuntimeClaims) -> rsa.RSAPublicKey:
        jwk = runtime.keys.get("HCLAkPub")
        ident = (str(jwk.get("n")), str(jwk.get("e"))) if jwk is not None else None
        if ident is not None:
            with self._lock:
                key = self._keys.get(ident)
            if key is not None:
                return key
        key = runtime.ak_key
        if ident is not None:
            with self._lock:
                if len(self._keys) >= MAX_CACHED_KEYS:
                    self._keys.clear()
                self._keys[ident] = key
        return key

    def verify(
        self,
        evidence: AzureCvmEvidence,
        *,
        now: datetime,
        nonce: bytes | None = None,
        tdx_collateral: Any = None,
        expected_user_data: bytes | None = None,
        collateral_grace: Any = None,
        snp_crl: tuple[bytes, ...] | None = None,
        snp_crl_product: str | None = None,
    ) -> AzureCvmResult:
        """``snp_crl`` / ``snp_crl_product``: AMD's CRLs for an SNP report, as the seam takes them."""
        hcl: HclReport | None = None
        claims_bytes = evidence.runtime_claims
        snp_report = evidence.snp_report
        runtime: RuntimeClaims | None = None
        if evidence.hcl_report is not None:
            hcl = parse_hcl_report(evidence.hcl_report)
            runtime = check_hcl_structure(hcl)
            if claims_bytes is not None and claims_bytes != hcl.claims:
                raise HclFormatError("the runtime claims given are not the HCL report's")
            claims_bytes = hcl.claims
            if hcl.report_type == REPORT_TYPE_SNP:
                if snp_report is not None and snp_report != hcl.snp_report:
                    raise HclFormatError("the SNP report given is not the HCL report's")
                snp_report = hcl.snp_report
        if claims_bytes is None:
            raise HclFormatError("no runtime claims (RunTimeData) were given")
        if runtime is None:
            runtime = parse_runtime_claims(claims_bytes)
        ak = self._ak_key(runtime)

        dcap_result = None
        tdreport: TdReport | None = None
        if snp_report is not None and evidence.td_quote is None:
            if hcl is not None and hcl.report_type != REPORT_TYPE_SNP:
                raise HardwareMismatchError("SNP evidence for an HCL report that is not SNP")
            crl = (snp_crl, snp_crl_product)
            hardware = self._verify_snp(snp_report, evidence.vcek_chain, claims_bytes, now, crl)
            tee = "sevsnpvm"
        elif evidence.td_quote is not None and snp_report is None:
            if hcl is not None and hcl.report_type != REPORT_TYPE_TDX:
                raise HardwareMismatchError("a TD quote for an HCL report that is not TDX")
            if self.dcap is None or tdx_collateral is None:
                raise NotAttestableError("TDX: no DCAP verifier or collateral to verify the TD quote")
            options = {} if collateral_grace is None else {"collateral_grace": collateral_grace}
            dcap_result = self.dcap.verify(evidence.td_quote, tdx_collateral, now, **options)
            if dcap_result.tee != "tdx":
                raise HardwareMismatchError("the TD quote is an SGX quote, not a TDX one")
            check_report_data(claims_bytes, bytes(dcap_result.report_data), "TD quote REPORTDATA")
            if hcl is not None:
                tdreport = parse_tdreport(hcl.tdreport)
                _compare_tdreport(tdreport, dcap_result.quote.body)
            hardware, tee = dict(dcap_result.claims), "tdxvm"
        elif hcl is not None and hcl.report_type == REPORT_TYPE_TDX:
            raise NotAttestableError(
                "TDX: no TD quote given; the TDREPORT is only MAC-protected with a CPU-local key "
                "and cannot be authenticated off the machine"
            )
        else:
            raise NotAttestableError("no hardware evidence (SNP report or TD quote) was given")

        tpm_result = verify_vtpm(evidence.vtpm, ak, nonce, now, self.tpm)
        if expected_user_data is not None:
            got = runtime.user_data or b""
            if not hmac.compare_digest(got[: len(expected_user_data)], expected_user_data):
                raise HclFormatError("the runtime claims' user-data does not start with the expected data")
        return AzureCvmResult(tee, runtime, hardware, tpm_result, ak, dcap_result, hcl, tdreport)

    def _verify_snp(
        self, report: bytes, chain: bytes | None, claims: bytes, now: datetime,
        crl: tuple[tuple[bytes, ...] | None, str | None] = (None, None),
    ) -> dict[str, Any]:
        if len(report) != HW_REPORT_SIZE:
            raise HclFormatError(f"the SNP report is {len(report)} bytes, not {HW_REPORT_SIZE}")
        if self.snp is None:
            raise NotAttestableError("SNP: no SEV-SNP report verifier is configured")
        if not chain:
            raise NotAttestableError("SNP: no VCEK certificate chain was given")
        try:
            # a seam is called with the CRL arguments only when a CRL was looked up
            found = self.snp(report, chain, now, *crl) if crl[0] is not None else self.snp(report, chain, now)
            hardware = dict(found)
        except EvidenceError:
            raise
        except (ValueError, TypeError) as exc:  # a seam must not let a parser error escape untyped
            raise HclFormatError(f"SNP: {exc}") from None
        if snp_vmpl(report) != 0:
            raise HardwareMismatchError(
                f"SNP report VMPL is {snp_vmpl(report)}; the paravisor runs at VMPL 0"
            )
        check_report_data(claims, snp_report_data(report), "SNP REPORT_DATA")
        return hardware
