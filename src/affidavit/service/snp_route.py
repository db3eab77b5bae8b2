"""``POST /attest/SevSnpVm`` (also ``SevSnpVM``): AMD SEV-SNP reports in MAA's request shape.

``SnpAttestationVerifier`` is the SevSnpVm verifier in the evidence contract's form (``parse`` pure,
``collateral`` the only I/O, ``verify`` pure) and ``build(state)`` its factory, so the type moves onto the
attestation-type registry as is (``verifier="affidavit.service.snp_route:build"``); until then
``attest_sev_snp_vm`` runs it through this branch's pipeline helpers.

Request (sev-snp.md §5.1): ``report`` (base64url of the JSON document, `affidavit.evidence.snp.maa`),
``runtimeData`` (JSON or Binary; SHA-256 bound to REPORT_DATA[0:32]), ``initTimeData`` (SHA-256 bound to
HOST_DATA; ``{"data": "", "dataType": ""}`` as confidential-sidecar sends it means "not given"),
``nonce`` (string, or a number as the sidecar sends it: echoed as received, never bound to the report),
``draftPolicyForAttestation``. Configuration comes from ``ServiceConfig.extra`` (see `build`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from affidavit.service.common import sign, state_of, token_response
from affidavit.service.decode import check_api_version, parse_attest_request, read_body, require_media
from affidavit.service.errors import INVALID_PARAMETER, ServiceError
from affidavit.service.pipeline import PolicyChoice, Verified, _check_binding, token_claims
from affidavit.service.policies import stored_policy_choice

POLICY_TYPE = "SevSnpVm"
ATTESTATION_TYPE = "sevsnpvm"


class SnpAttestationVerifier:
    """parse -> collateral -> verify for SevSnpVm; owns the (locked) ``SnpVerifier`` cache and the
    collateral provider (AMD KDS through the verified cache, an offline directory, or none)."""

    def __init__(self, trust: Any = None, provider: Any = None, options: Any = None) -> None:
        from affidavit.evidence.snp import SnpOptions, SnpVerifier

        self.verifier = SnpVerifier(trust)
        self.provider = provider
        self.options = options or SnpOptions()
        self._lock = threading.Lock()

    def parse(self, submitted: Any) -> Any:
        from affidavit.evidence.snp.maa import parse_document

        data = submitted.evidence if hasattr(submitted, "evidence") else submitted
        return parse_document(bytes(data))

    async def collateral(self, parsed: Any) -> Any:
        from affidavit.collateral import CollateralError
        from affidavit.collateral.amd import SnpCollateral

        if parsed.chain is not None:  # the client's chain: trusted only if it reaches a pinned ARK
            crl: tuple[bytes, ...] = ()
            product = _product_hint(parsed)
            if self.provider is not None and product is not None:
                kind = "vlek" if parsed.report.signing_key == 1 else "vcek"
                crl = await self.provider.crl_for(product, kind)
            return SnpCollateral(None, parsed.chain, crl)
        if self.provider is None:
            raise CollateralError(
                "the report came without VcekCertChain and no AMD collateral source is configured",
                code="collateral_not_found",
            )
        return await self.provider.get_snp(parsed.report)

    def verify(self, parsed: Any, collateral: Any, now: Any, options: Any = None) -> Any:
        from affidavit.evidence.snp.maa import SnpVerified, uvm_claims

        with self._lock:
            result = self.verifier.verify(
                parsed.report, collateral.vek, collateral.chain, now, crl=collateral.crl, options=self.options
            )
        return SnpVerified(
            claims=dict(result.claims),
            policy_claims={**result.platform_claims, **uvm_claims(parsed)},
            runtime_target=result.report.report_data,
            inittime_target=result.report.host_data,
        )

    async def aclose(self) -> None:
        aclose = getattr(self.provider, "aclose", None)
        if aclose is not None:
            await aclose()


def _product_hint(parsed: Any) -> str | None:
    """The product a report's CRL belongs to, before verification (only to pick which CRL to fetch)."""
    from affidavit.evidence.snp import SnpError, load_certificates
    from affidavit.evidence.snp.certs import cn, product_of_name

    if parsed.report.cpuid_product:
        return str(parsed.report.cpuid_product)
    try:
        for cert in load_certificates(parsed.chain):
            product = product_of_name(cn(cert))
            if product:
                return product
    except SnpError:
        return None
    return None


def _paths(value: Any) -> list[str]:
    if not value:
        return []
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]


def build(state: Any) -> SnpAttestationVerifier:
    """The verifier for one worker, from ``config.extra``: ``snp_trust_roots`` (PEM files with ARKs,
    default AMD's shipped roots), ``snp_collateral_dir`` (offline KDS files), ``snp_kds_url`` (default
    AMD KDS; ``none``: no KDS), ``snp_product`` (for v2 reports that arrive without a chain),
    ``snp_require_crl``, ``snp_vmpl`` (refuse other VMPLs), ``snp_allow_debug`` (default true: debug is
    a claim for the policy, as in MAA)."""
    from affidavit.collateral.amd import AMD_KDS_URL, AmdDirectoryProvider, CachingKdsProvider
    from affidavit.evidence.snp import AmdTrust, SnpError, SnpOptions

    config = state.config
    extra = config.extra
    roots = _paths(extra.get("snp_trust_roots"))
    try:
        trust = AmdTrust.from_pem(b"".join(Path(p).read_bytes() for p in roots)) if roots else AmdTrust.amd()
    except (OSError, SnpError) as exc:
        raise ServiceError(f"cannot read the SEV-SNP trust roots: {exc}", code="configuration") from None
    product = extra.get("snp_product")
    require_crl = bool(extra.get("snp_require_crl", False))
    provider: Any = None
    if extra.get("snp_collateral_dir"):
        provider = AmdDirectoryProvider(extra["snp_collateral_dir"], default_product=product)
    else:
        url = extra.get("snp_kds_url", AMD_KDS_URL)
        if url and url != "none":
            provider = CachingKdsProvider(
                url, cache_url=config.store_url, trust=trust, grace=config.collateral_grace,
                default_product=product, require_crl=require_crl, clock=state.evidence_clock,
            )
    vmpl = extra.get("snp_vmpl")
    options = SnpOptions(
        require_crl=require_crl,
        vmpl=None if vmpl is None else int(vmpl),
        allow_debug=bool(extra.get("snp_allow_debug", True)),
    )
    return SnpAttestationVerifier(trust, provider, options)


def verifier_of(state: Any) -> SnpAttestationVerifier:
    """The worker's verifier, built on first use (until the registry's ``state.evidence_verifier``)."""
    found = getattr(state, "_snp_verifier", None)
    if found is None:
        found = build(state)
        state._snp_verifier = found
    return found


def _normalise_body(body: bytes) -> tuple[bytes, Any]:
    """MAA client quirks: a numeric nonce (kept as sent) and empty ``{"data": "", "dataType": ""}``."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return body, None  # parse_attest_request reports it
    if not isinstance(obj, dict):
        return body, None
    nonce = obj.get("nonce")
    if isinstance(nonce, bool) or not (nonce is None or isinstance(nonce, str | int)):
        raise ServiceError("nonce must be a string or a number", code=INVALID_PARAMETER)
    obj.pop("nonce", None)
    for name in ("runtimeData", "initTimeData"):
        field = obj.get(name)
        if isinstance(field, dict) and not field.get("data"):
            obj.pop(name)
    return json.dumps(obj).encode(), nonce


async def attest_sev_snp_vm(request: Request) -> Response:
    state = state_of(request)
    check_api_version(request)
    require_media(request, "application/json")
    body, nonce = _normalise_body(await read_body(request, state.config.max_body_bytes))
    req = parse_attest_request(body, "report")
    verifier = verifier_of(state)
    parsed = verifier.parse(req)
    collateral = await verifier.collateral(parsed)
    evidence = await asyncio.to_thread(verifier.verify, parsed, collateral, state.evidence_clock())
    _check_binding(req.runtime, evidence.runtime_target, "runtimeData", "REPORT_DATA")
    _check_binding(req.inittime, evidence.inittime_target, "initTimeData", "HOST_DATA")

    token: dict[str, Any] = {"x-ms-ver": "1.0", "x-ms-attestation-type": ATTESTATION_TYPE, **evidence.claims}
    if req.runtime is not None and req.runtime.data is not None:
        if req.runtime.data_type == "JSON":
            token["x-ms-runtime"] = req.runtime.json_value
        else:
            from affidavit.jose import b64url

            token["x-ms-runtime-data"] = b64url(req.runtime.data)
    if req.inittime is not None and req.inittime.data is not None:
        if req.inittime.data_type == "JSON":
            token["x-ms-inittime"] = req.inittime.json_value
        else:
            from affidavit.jose import b64url

            token["x-ms-inittime-data"] = b64url(req.inittime.data)
    verified = Verified(incoming={**token, **evidence.policy_claims}, token_claims=token)

    if req.draft_policy is not None:
        policy = PolicyChoice(text=req.draft_policy, draft=True)
    else:
        policy = stored_policy_choice(state, POLICY_TYPE)
    compiled = state.compiler.compile(policy.text)
    ring = state.keyring()
    claims = token_claims(
        verified, policy, compiled, issuer=state.issuer, now=state.clock(), nonce=nonce,
        max_lifetime=int(ring.max_token_lifetime.total_seconds()), claim_cache=state.claims,
    )
    if policy.draft:
        from affidavit.tokens import unsecured_jwt

        return token_response(str(unsecured_jwt(claims, jku=state.jku, kid=ring.current.kid)))
    return token_response(sign(state, claims))
