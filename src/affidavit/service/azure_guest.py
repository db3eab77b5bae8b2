"""``POST /attest/AzureGuest``: MAA's guest attestation of Azure confidential VMs (azure-cvm.md §6).

Body ``{"AttestationInfo": base64url(JSON)}`` (the key case-insensitively). The JSON carries the OS
fields, ``TcgLogs``, ``ClientPayload``, ``TpmInfo`` (AikPub, PcrQuote, PcrSignature, PcrSet, PCRs,
EncKeyPub, EncKeyCertifyInfo and its signature; AikCert is accepted, not needed: on a CVM the hardware
report vouches for the AK) and ``IsolationInfo`` (``SevSnp`` with ``Proof`` = {SnpReport,
VcekCertChain} and ``RunTimeData``, or ``Tdx`` with the TD quote as ``Proof``). ``TrustedLaunch`` (no
hardware report) is refused as not attestable.

Order: decode; the ephemeral key's certification by the AK (``HCLAkPub``, checked against the quote);
hardware (SNP through the ``affidavit.evidence.snp`` seam, TDX through the DCAP verifier with the
state's collateral provider); binding; vTPM quote (the nonce is not required: MAA's clients send an
empty one) and TCG log replay; ``azurevm`` claims; the ``AzureGuest`` policy; the JWT, sealed to
``EncKeyPub`` as MAA does (``affidavit.tokens.sealed``).

Configuration (``ServiceConfig.extra``): ``azure_cvm_baselines`` — a list of baselines (format in
``affidavit.evidence.azure_cvm.claims``) or the path of a JSON file holding one; it drives
``x-ms-isolation-tee.x-ms-compliance-status``. Limits: the request body (``max_body_bytes``), at most
24 PCRs, a 1 MiB TCG log, a 64 KiB Proof.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from affidavit.attestation_types import AttestationType
from affidavit.evidence.contract import EvidenceInput, VerifiedEvidence, VerifyOptions
from affidavit.service.common import state_of, token_response
from affidavit.service.decode import (
    b64decode_lenient,
    check_api_version,
    parse_json,
    read_body,
    require_media,
)
from affidavit.service.errors import INVALID_PARAMETER, ServiceError
from affidavit.service.pipeline import AttestationInput, issue
from affidavit.service.state import ServiceState

MAX_PCRS = 24
MAX_TCG_LOG = 1 << 20
MAX_PROOF = 64 * 1024
MAX_FIELD = 16 * 1024


@dataclass(frozen=True)
class GuestRequest:
    """A decoded ``AttestationInfo``."""

    protocol_version: str
    os_type: str
    os_distro: str
    os_build: str
    os_version_major: int
    os_version_minor: int
    tcg_log: bytes | None
    client_payload: Any
    aik_pub: bytes
    aik_cert: bytes | None
    pcr_quote: bytes
    pcr_signature: bytes
    pcr_set: tuple[int, ...]
    pcrs: dict[int, bytes]
    enc_key_pub: bytes
    enc_key_certify_info: bytes
    enc_key_certify_signature: bytes
    isolation: str  # "SevSnp" | "Tdx"
    snp_report: bytes | None
    vcek_chain: bytes | None
    td_quote: bytes | None
    runtime_data: bytes


def _bytes(obj: Mapping[str, Any], name: str, limit: int = MAX_FIELD, *, optional: bool = False) -> bytes:
    value = obj.get(name)
    if value is None or value == "":
        if optional:
            return b""
        raise ServiceError(f"AttestationInfo: missing {name}", code=INVALID_PARAMETER)
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise ServiceError(f"AttestationInfo: {name} is not a base64 string of at most {limit} bytes")
    return b64decode_lenient(value, name)


def _text(obj: Mapping[str, Any], name: str) -> str:
    raw = _bytes(obj, name, 256, optional=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(f"AttestationInfo: {name} is not base64 of UTF-8 text") from None


def _number(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return int(value)
    if type(value) is int and 0 <= value < 10**9:
        return value
    raise ServiceError(f"AttestationInfo: {name} must be a non-negative number")


def _object(obj: Any, name: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ServiceError(f"AttestationInfo: {name} must be an object")
    return obj


def _member(obj: Mapping[str, Any], name: str) -> Any:
    """A member by name, case-insensitively (the 2025-06-01 spec writes ``attestationInfo``); two
    spellings are refused, as strict_json refuses duplicates (which one counts would depend on order)."""
    found = [value for key, value in obj.items() if isinstance(key, str) and key.lower() == name.lower()]
    if len(found) > 1:
        raise ServiceError(f"request body names {name} more than once (in different cases)")
    return found[0] if found else None


def _snp_proof(proof: bytes) -> tuple[bytes, bytes]:
    doc = _object(parse_json(proof), "IsolationInfo.Evidence.Proof")
    report = _bytes(doc, "SnpReport", 2048)
    chain_text = doc.get("VcekCertChain")
    if isinstance(chain_text, str) and chain_text.lstrip().startswith("-----BEGIN"):
        chain = chain_text.encode("ascii", "replace")
    else:
        chain = _bytes(doc, "VcekCertChain", MAX_PROOF)
    return report, chain


def parse_attestation_info(body: bytes) -> GuestRequest:
    """Decode an AzureGuest request body; raises ``ServiceError`` (400) on anything malformed."""
    outer = parse_json(body)
    if not isinstance(outer, dict):
        raise ServiceError("request body must be a JSON object")
    encoded = _member(outer, "AttestationInfo")
    if encoded is None:
        raise ServiceError("missing 'AttestationInfo'")
    info = _object(parse_json(b64decode_lenient(encoded, "AttestationInfo")), "AttestationInfo")
    version = info.get("AttestationProtocolVersion")
    if version != "2.0":
        raise ServiceError(f'AttestationProtocolVersion {version!r} is not supported (only "2.0")')
    tpm = _object(info.get("TpmInfo"), "TpmInfo")
    iso = _object(info.get("IsolationInfo"), "IsolationInfo")
    kind = iso.get("Type")
    if kind == "TrustedLaunch":
        raise ServiceError(
            "IsolationInfo Type TrustedLaunch carries no hardware report: not attestable here",
            code=INVALID_PARAMETER,
        )
    if kind not in ("SevSnp", "Tdx"):
        raise ServiceError("IsolationInfo.Type must be SevSnp or Tdx")
    evidence = _object(iso.get("Evidence"), "IsolationInfo.Evidence")
    proof = _bytes(evidence, "Proof", MAX_PROOF)
    runtime = _bytes(evidence, "RunTimeData", MAX_FIELD)
    snp_report = vcek = td_quote = None
    if kind == "SevSnp":
        snp_report, vcek = _snp_proof(proof)
    else:
        td_quote = proof
    pcr_set = tpm.get("PcrSet")
    if (
        not isinstance(pcr_set, list)
        or not 0 < len(pcr_set) <= MAX_PCRS
        or not all(type(i) is int and 0 <= i < MAX_PCRS for i in pcr_set)
    ):
        raise ServiceError(f"TpmInfo.PcrSet must list 1 to {MAX_PCRS} PCR indices")
    pcrs_raw = tpm.get("PCRs")
    if not isinstance(pcrs_raw, list) or len(pcrs_raw) > MAX_PCRS:
        raise ServiceError(f"TpmInfo.PCRs must list at most {MAX_PCRS} PCRs")
    pcrs: dict[int, bytes] = {}
    for entry in pcrs_raw:
        entry = _object(entry, "TpmInfo.PCRs[]")
        index = entry.get("Index")
        if type(index) is not int or not 0 <= index < MAX_PCRS or index in pcrs:
            raise ServiceError("TpmInfo.PCRs[].Index must be distinct PCR indices")
        pcrs[index] = _bytes(entry, "Digest", 64)
    log = _bytes(info, "TcgLogs", MAX_TCG_LOG, optional=True)
    cert = _bytes(tpm, "AikCert", MAX_FIELD, optional=True)
    payload = info.get("ClientPayload", {})
    return GuestRequest(
        protocol_version=version,
        os_type=_text(info, "OSType"),
        os_distro=_text(info, "OSDistro"),
        os_build=_text(info, "OSBuild"),
        os_version_major=_number(info, "OSVersionMajor"),
        os_version_minor=_number(info, "OSVersionMinor"),
        tcg_log=log or None,
        client_payload=payload,
        aik_pub=_bytes(tpm, "AikPub"),
        aik_cert=cert or None,
        pcr_quote=_bytes(tpm, "PcrQuote"),
        pcr_signature=_bytes(tpm, "PcrSignature"),
        pcr_set=tuple(pcr_set),
        pcrs=pcrs,
        enc_key_pub=_bytes(tpm, "EncKeyPub"),
        enc_key_certify_info=_bytes(tpm, "EncKeyCertifyInfo"),
        enc_key_certify_signature=_bytes(tpm, "EncKeyCertifyInfoSignature"),
        isolation=kind,
        snp_report=snp_report,
        vcek_chain=vcek,
        td_quote=td_quote,
        runtime_data=runtime,
    )


def load_baselines(value: object) -> tuple[Mapping[str, Any], ...]:
    """``azure_cvm_baselines`` from the configuration: a list, or the path of a JSON file with one."""
    from affidavit.evidence.azure_cvm.claims import check_baselines

    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(Path(value).read_text())
        except (OSError, ValueError) as exc:
            raise ServiceError(f"cannot read Azure CVM baselines {value!r}: {exc}", status=500) from None
    return check_baselines(value)


def _public_jwk(key: Any, kid: str) -> dict[str, Any]:
    from affidavit.jose import b64url

    numbers = key.public_numbers()

    def uint(n: int) -> bytes:
        return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")

    return {
        "e": b64url(uint(numbers.e)),
        "key_ops": ["encrypt"],
        "kid": kid,
        "kty": "RSA",
        "n": b64url(uint(numbers.n)),
    }


def incoming_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """What the policy sees: the token claims, plus each scalar of ``x-ms-isolation-tee`` under its dotted
    name (``x-ms-isolation-tee.x-ms-compliance-status``), as SKR-style rules address them."""
    incoming = dict(claims)
    tee = claims.get("x-ms-isolation-tee")
    if isinstance(tee, dict):
        for name, value in tee.items():
            if type(value) in (bool, int, str):
                incoming[f"x-ms-isolation-tee.{name}"] = value
    return incoming


@dataclass(frozen=True)
class GuestCollateral:
    """What a guest's hardware report needs fetched: the TD quote's DCAP collateral (None for SNP), or
    AMD's CRLs for an SNP report (``snp_crl``, None when none was looked up) and the product they are
    for, looked up as ``/attest/SevSnpVm`` does for a chain sent with the report."""

    tdx: Any = None
    snp_crl: tuple[bytes, ...] | None = None
    snp_crl_product: str | None = None


class AzureGuestVerifier:
    """The AzureGuest ``evidence.contract.EvidenceVerifier``: ``parse`` decodes ``AttestationInfo``,
    ``collateral`` fetches a TD quote's DCAP collateral (the PCK chain verified first), ``verify`` checks
    the hardware report, the binding, the vTPM quote and log and the ephemeral key's certification, and
    yields the ``azurevm`` claims (``x-ms-attestation-type`` is the entry's ``token_type``)."""

    def __init__(self, state: ServiceState) -> None:
        from affidavit.evidence.azure_cvm import AzureCvmVerifier, snp_verifier_from_package

        self._state = state
        from affidavit.service.snp_route import load_trust

        # the roots /attest/SevSnpVm pins (--snp-trust-root), read and refused at start the same way
        extra = state.config.extra
        snp = snp_verifier_from_package(
            load_trust(extra.get("snp_trust_roots")), require_crl=bool(extra.get("snp_require_crl", False))
        )
        self.verifier = AzureCvmVerifier(snp=snp, dcap=state.verifier, tpm=state.tpm_verifier)
        self.baselines = load_baselines(state.config.extra.get("azure_cvm_baselines"))

    def parse(self, submitted: EvidenceInput) -> GuestRequest:
        return parse_attestation_info(submitted.evidence)

    async def collateral(self, parsed: GuestRequest) -> GuestCollateral:
        if parsed.td_quote is None:
            return await self._snp_crl(parsed)
        from affidavit.evidence.dcap import parse_quote

        state = self._state
        quote = parse_quote(parsed.td_quote)
        return GuestCollateral(await state.collateral.get(state.platform_of(quote)))

    async def _snp_crl(self, parsed: GuestRequest) -> GuestCollateral:
        """AMD's CRLs for the SNP report through the SevSnpVm verifier's provider (KDS, cache or directory);
        nothing when the report does not parse or came without a chain (``verify`` then refuses it)."""
        from affidavit.evidence.snp import SnpError, parse_report
        from affidavit.evidence.snp.maa import SnpEvidence

        if parsed.snp_report is None or not parsed.vcek_chain:
            return GuestCollateral()
        try:
            report = parse_report(parsed.snp_report)
        except SnpError:
            return GuestCollateral()
        snp = self._state.evidence_verifier("SevSnpVm")
        if snp.provider is None:
            return GuestCollateral()
        found = await snp.collateral(SnpEvidence(report, parsed.vcek_chain))
        return GuestCollateral(snp_crl=found.crl, snp_crl_product=found.crl_product)

    def verify(
        self, parsed: GuestRequest, collateral: GuestCollateral, now: Any, options: VerifyOptions
    ) -> VerifiedEvidence:
        from affidavit.evidence.azure_cvm import AzureCvmEvidence, VtpmQuote, check_encryption_key
        from affidavit.evidence.azure_cvm.claims import OsInfo, azurevm_claims

        req = parsed
        evidence = AzureCvmEvidence(
            vtpm=VtpmQuote(req.pcr_quote, req.pcr_signature, req.pcrs, req.pcr_set, req.aik_pub, req.tcg_log),
            runtime_claims=req.runtime_data,
            snp_report=req.snp_report,
            vcek_chain=req.vcek_chain,
            td_quote=req.td_quote,
        )
        result = self.verifier.verify(
            evidence, now=now, tdx_collateral=collateral.tdx, collateral_grace=options.collateral_grace,
            snp_crl=collateral.snp_crl, snp_crl_product=collateral.snp_crl_product,
        )
        enc = check_encryption_key(
            req.enc_key_pub, req.enc_key_certify_info, req.enc_key_certify_signature, result.ak
        )
        os_info = OsInfo(
            req.os_type, req.os_distro, req.os_build, req.os_version_major, req.os_version_minor,
            req.protocol_version,
        )
        claims = azurevm_claims(
            result,
            os_info,
            client_payload=req.client_payload,
            encryption_key_jwk=_public_jwk(enc.key, "TpmEphemeralEncryptionKey"),
            baselines=self.baselines,
        )
        claims.pop("x-ms-attestation-type", None)  # the pipeline writes it from the entry
        claims.pop("x-ms-ver", None)
        extra = incoming_claims(claims)
        policy_only = {k: v for k, v in extra.items() if k not in claims}
        return VerifiedEvidence(claims=claims, policy_claims=policy_only)


def build(state: ServiceState) -> AzureGuestVerifier:
    """The AzureGuest verifier of one worker (``attestation_types.AZURE_GUEST.verifier``)."""
    return AzureGuestVerifier(state)


def _encryption_key(req: GuestRequest) -> Any:
    """``EncKeyPub``'s RSA key (the pipeline's verification checked its certification by the AK)."""
    from affidavit.evidence.azure_cvm.certify import tpm2b_public_prefix
    from affidavit.evidence.tpm import parse_public

    return parse_public(tpm2b_public_prefix(bytes(req.enc_key_pub))).public_key


async def attest_azure_guest(request: Request, entry: AttestationType) -> Response:
    """The "azureguest" request shape: decode the envelope, the one pipeline, seal the token."""
    from affidavit.tokens.sealed import seal_token

    state = state_of(request)
    check_api_version(request)
    require_media(request, "application/json")
    body = await read_body(request, state.config.max_body_bytes)
    req = parse_attestation_info(body)  # 400 before any work; the verifier's parse is the same decode
    token = await issue(state, entry, AttestationInput(evidence=EvidenceInput(body)))
    return token_response(seal_token(token, _encryption_key(req)))


__all__: Sequence[str] = ("attest_azure_guest", "build", "parse_attestation_info", "load_baselines")
