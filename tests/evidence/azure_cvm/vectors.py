"""Loading the azure-cvm vectors (../shared/vectors/azure-cvm) into ``AzureCvmEvidence``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from affidavit.evidence.azure_cvm import AzureCvmEvidence, VtpmQuote
from affidavit.evidence.dcap import DcapVerifier, load_collateral
from tests.conftest import VECTORS

AZ = VECTORS / "azure-cvm"
TDX_COLLATERAL = VECTORS / "sgx" / "automata-tdx-v4-00806f050000"
# (collateral file, verification time) pairs the TDX expected.json lists
TDX_TIMES = {
    "collateral_2025-02.json": datetime(2025, 3, 1, tzinfo=UTC),
    "collateral_2025-05.json": datetime(2025, 6, 10, tzinfo=UTC),
    "collateral_2025-10.json": datetime(2025, 10, 24, 7, 10, 18, tzinfo=UTC),
}


@cache
def expected(set_name: str) -> dict[str, Any]:
    return json.loads((AZ / set_name / "expected.json").read_text())


def case(set_name: str, name: str) -> dict[str, Any]:
    return next(c for c in expected(set_name)["cases"] if c["name"] == name)


def parse_time(text: str | None) -> datetime:
    if text is None:
        return datetime(2025, 3, 1, tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def quote_json(path: Path) -> VtpmQuote:
    obj = json.loads(path.read_text())
    return VtpmQuote(
        message=bytes.fromhex(obj["message"]),
        signature=bytes.fromhex(obj["signature"]),
        pcrs={i: bytes.fromhex(v) for i, v in enumerate(obj["pcrs"])},
    )


def quote_bincode(data: bytes) -> VtpmQuote:
    """Rust bincode of Trustee's Quote {signature: Vec<u8>, message: Vec<u8>, pcrs: Vec<[u8; 32]>}."""
    pos = 0

    def vec() -> bytes:
        nonlocal pos
        n = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
        out = data[pos : pos + n]
        pos += n
        return out

    sig = vec()
    msg = vec()
    count = int.from_bytes(data[pos : pos + 8], "little")
    pos += 8
    pcrs = {i: data[pos + 32 * i : pos + 32 * (i + 1)] for i in range(count)}
    return VtpmQuote(message=msg, signature=sig, pcrs=pcrs)


def split_evidence(set_name: str, split: str) -> AzureCvmEvidence:
    d = AZ / set_name / "split" / split
    pcrs = json.loads((d / "pcrs_sha256.json").read_text())
    vtpm = VtpmQuote(
        message=(d / "tpm_quote.msg").read_bytes(),
        signature=(d / "tpm_quote.sig").read_bytes(),
        pcrs={int(k[3:]): bytes.fromhex(v) for k, v in pcrs.items()},
    )
    vcek = d / "vcek.der"
    td = d / "td_quote.bin"
    return AzureCvmEvidence(
        vtpm=vtpm,
        hcl_report=(d / "hcl_report.bin").read_bytes(),
        vcek_chain=vcek.read_bytes() if vcek.exists() else None,
        td_quote=td.read_bytes() if td.exists() else None,
    )


def tdx_evidence() -> AzureCvmEvidence:
    d = AZ / "trustee-az-tdx-vtpm"
    return AzureCvmEvidence(
        vtpm=quote_json(d / "tpm-quote-v1.json"),
        hcl_report=(d / "hcl-report.bin").read_bytes(),
        td_quote=(d / "td-quote.bin").read_bytes(),
    )


@cache
def tdx_collateral(name: str = "collateral_2025-02.json") -> Any:
    return load_collateral((TDX_COLLATERAL / name).read_text())


@cache
def dcap() -> DcapVerifier:
    return DcapVerifier()
