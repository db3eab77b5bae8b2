"""The SevSnpVm verifier: AMD SEV-SNP reports in MAA's request shape (``POST /attest/SevSnpVm``, also
``SevSnpVM``), served by the registry (``attestation_types.SEV_SNP_VM``), the "maa" request shape
(with ``sidecar_quirks``) and the one pipeline.

``SnpAttestationVerifier`` is the evidence contract's ``EvidenceVerifier`` (``parse`` pure,
``collateral`` the only I/O, ``verify`` pure) and ``build(state)`` its factory
(``verifier="affidavit.service.snp_route:build"``).

Request (sev-snp.md §5.1): ``report`` (base64url of the JSON document, `affidavit.evidence.snp.maa`),
``runtimeData`` (JSON or Binary; SHA-256 bound to REPORT_DATA[0:32]), ``initTimeData`` (SHA-256 bound to
HOST_DATA; ``{"data": "", "dataType": ""}`` as confidential-sidecar sends it means "not given"),
``nonce`` (string, or a number as the sidecar sends it: echoed as received, never bound to the report),
``draftPolicyForAttestation``. Configuration comes from ``ServiceConfig.extra`` (see `build`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from affidavit.evidence.contract import VerifiedEvidence
from affidavit.service.errors import ServiceError


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
        from affidavit.collateral.amd import SnpCollateral, no_collateral_source

        if parsed.chain is not None:  # the client's chain: trusted only if it reaches a pinned ARK
            crl: tuple[bytes, ...] = ()
            product = _product_hint(parsed)
            if self.provider is not None and product is not None:
                kind = "vlek" if parsed.report.signing_key == 1 else "vcek"
                crl = await self.provider.crl_for(product, kind)
            return SnpCollateral(None, parsed.chain, crl, crl_product=product)
        if self.provider is None:
            raise no_collateral_source()
        return await self.provider.get_snp(parsed.report)

    def verify(self, parsed: Any, collateral: Any, now: Any, options: Any = None) -> VerifiedEvidence:
        from affidavit.evidence.snp.maa import uvm_claims

        with self._lock:
            result = self.verifier.verify(
                parsed.report, collateral.vek, collateral.chain, now, crl=collateral.crl, options=self.options
            )
        sent = parsed.chain is not None and self.provider is not None
        if sent and collateral.crl_product != result.product:
            # the CRL asked for was another product's (or none): never a chain verified without its CRL
            from affidavit.evidence.snp import SnpError
            from affidavit.evidence.snp.errors import CRL_UNAVAILABLE

            raise SnpError(
                f"the certificates sent are {result.product}'s, but the CRL looked up was "
                f"{collateral.crl_product or 'none'}'s (the chain's first VCEK/VLEK names its issuer)",
                code=CRL_UNAVAILABLE,
            )
        return VerifiedEvidence(
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
    """The product a report's CRL belongs to, before verification (only to pick which CRL to fetch): the
    CPUID's, else that of the ASK/ASVK named as issuer by the chain's first VCEK/VLEK (the one
    ``verify_chain`` takes; a chain of the VEK alone is completed by the shipped ASKs), else any AMD CN's.
    ``verify`` refuses a chain that verifies to another product than this one."""
    from affidavit.evidence.snp import SnpError, load_certificates
    from affidavit.evidence.snp.certs import cn, is_vek, issuer_cn, product_of_name

    if parsed.report.cpuid_product:
        return str(parsed.report.cpuid_product)
    try:
        certs = load_certificates(parsed.chain)
    except SnpError:
        return None
    veks = [cert for cert in certs if is_vek(cert)]
    if veks:
        return product_of_name(issuer_cn(veks[0]))
    for cert in certs:
        product = product_of_name(cn(cert))
        if product:
            return product
    return None


def _paths(value: Any) -> list[str]:
    if not value:
        return []
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]


def load_trust(value: Any) -> Any:
    """The pinned AMD roots from ``--snp-trust-root`` files (``snp_trust_roots``: a path or a list of
    them; AMD's shipped roots when none are given), or
    a one-line ``configuration`` error naming the flag and the file: `build` runs when the service
    starts (``build_state`` builds every registered verifier), so a bad root stops ``affidavit serve``
    instead of failing the first SevSnpVm request."""
    from affidavit.evidence.snp import AmdTrust, SnpError

    paths = _paths(value)
    if not paths:
        return AmdTrust.amd()
    blobs = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ServiceError(f"--snp-trust-root {path}: cannot read it ({exc.strerror or exc})",
                               code="configuration") from None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ServiceError(f"--snp-trust-root {path}: no PEM certificate in it", code="configuration")
        blobs.append(data)
    try:
        return AmdTrust.from_pem(b"".join(blobs))
    except SnpError as exc:
        named = " ".join(paths)
        raise ServiceError(f"--snp-trust-root {named}: {exc.message}", code="configuration") from None


def build(state: Any) -> SnpAttestationVerifier:
    """The verifier for one worker, from ``config.extra``: ``snp_trust_roots`` (PEM files with ARKs,
    default AMD's shipped roots), ``snp_collateral_dir`` (offline KDS files), ``snp_kds_url`` (default
    AMD KDS; ``none``: no KDS, only what ``affidavit collateral import`` put in the cache),
    ``snp_product`` (for v2 reports that arrive without a chain), ``snp_require_crl``, ``snp_vmpl``
    (refuse other VMPLs), ``snp_allow_debug`` (default true: debug is a claim for the policy, as in
    MAA)."""
    from affidavit.collateral.amd import AMD_KDS_URL, AmdDirectoryProvider, CachingKdsProvider
    from affidavit.evidence.snp import SnpOptions

    config = state.config
    extra = config.extra
    trust = load_trust(extra.get("snp_trust_roots"))
    product = extra.get("snp_product")
    require_crl = bool(extra.get("snp_require_crl", False))
    provider: Any = None
    if extra.get("snp_collateral_dir"):
        provider = AmdDirectoryProvider(extra["snp_collateral_dir"], default_product=product)
    else:
        url = extra.get("snp_kds_url", AMD_KDS_URL)
        # ``none``: no KDS, the verified cache alone (filled by `affidavit collateral import`)
        provider = CachingKdsProvider(
            url if url and url != "none" else None, cache_url=config.store_url, trust=trust,
            grace=config.collateral_grace, default_product=product, require_crl=require_crl,
            clock=state.evidence_clock,
        )
    vmpl = extra.get("snp_vmpl")
    options = SnpOptions(
        require_crl=require_crl,
        vmpl=None if vmpl is None else int(vmpl),
        allow_debug=bool(extra.get("snp_allow_debug", True)),
    )
    return SnpAttestationVerifier(trust, provider, options)
