"""SGX enclaves, Open Enclave reports and TDX VMs through the evidence contract (``evidence.contract``).

One :class:`DcapEvidenceVerifier` per attestation type, sharing the worker's :class:`DcapVerifier` (its
caches) and collateral provider. Binding targets: the report data (``runtimeData``) and the enclave's
CONFIGID / the TD's MRCONFIGID (``initTimeData``; none when all zero).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from affidavit.evidence import EvidenceError
from affidavit.evidence.contract import EvidenceInput, VerifiedEvidence, VerifyOptions
from affidavit.evidence.dcap.collateral import SgxCollateral
from affidavit.evidence.dcap.quote import Quote, TdReportBody, parse_quote
from affidavit.evidence.dcap.verifier import DcapResult, DcapVerifier, Platform, platform_of


class Collateral(Protocol):
    """``collateral.CollateralProvider``, as this module needs it."""

    def get(self, platform: Platform) -> Awaitable[SgxCollateral]: ...


@dataclass(frozen=True)
class ParsedQuote:
    """A decoded (not yet verified) quote, the bytes as submitted, and the platform it names."""

    submitted: bytes
    quote: Quote
    platform: Platform


class DcapEvidenceVerifier:
    """``EvidenceVerifier[ParsedQuote, SgxCollateral]`` for one of SgxEnclave, OpenEnclave, TdxVm."""

    def __init__(
        self,
        *,
        type_name: str,
        tee: str,
        verifier: DcapVerifier,
        provider: Collateral,
        open_enclave: bool = False,
        platform_lookup: Callable[[Quote], Platform] = platform_of,
    ) -> None:
        self.type_name = type_name
        self.tee = tee  # "sgx" | "tdx": the quote body this type accepts
        self.open_enclave = open_enclave
        self._verifier = verifier
        self._provider = provider
        self._platform_of = platform_lookup

    def parse(self, submitted: EvidenceInput) -> ParsedQuote:
        raw = submitted.evidence
        if self.open_enclave:
            from affidavit.evidence.openenclave import unwrap

            raw = unwrap(raw)
        quote = parse_quote(raw)  # parsed once: the platform lookup and the verifier share it
        platform = self._platform_of(quote)
        if platform.tee != self.tee:
            raise EvidenceError(
                f"{self.type_name} expects an {self.tee.upper()} quote, got {platform.tee.upper()}",
                code="wrong_tee",
            )
        return ParsedQuote(submitted.evidence, quote, platform)

    async def collateral(self, parsed: ParsedQuote) -> SgxCollateral:
        return await self._provider.get(parsed.platform)

    def verify(
        self, parsed: ParsedQuote, collateral: SgxCollateral, now: datetime, options: VerifyOptions
    ) -> VerifiedEvidence:
        result = self._verifier.verify(
            parsed.quote, collateral, now, collateral_grace=options.collateral_grace
        )
        hashes = dict(result.collateral_hashes)
        hashes["quotehash"] = hashlib.sha256(parsed.submitted).hexdigest()  # the OE report, not the quote
        return VerifiedEvidence(
            claims=dict(result.claims),
            runtime_target=bytes(result.report_data),
            inittime_target=config_id(result),
            collateral_hashes=hashes,
            tcb_status=result.tcb_status,
            advisory_ids=tuple(result.advisory_ids),
        )


def config_id(result: DcapResult) -> bytes | None:
    """The enclave's CONFIGID (SGX) or the TD's MRCONFIGID: what initTimeData binds to; None when zero."""
    body = result.quote.body
    raw = body.mr_config_id if isinstance(body, TdReportBody) else body.config_id
    return raw if any(raw) else None
