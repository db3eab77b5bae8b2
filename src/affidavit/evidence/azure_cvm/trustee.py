"""Trustee's ``az-snp-vtpm`` / ``az-tdx-vtpm`` evidence JSON (v0, v1, v2; azure-cvm.md §7.1).

v0: ``{"quote"|"tpm_quote": {"signature", "message", "pcrs"} as byte arrays, "report"|"hcl_report":
[bytes], "vcek": PEM | "td_quote": [bytes]}``; v1/v2: ``{"version", "tpm_quote": hex strings,
"hcl_report": base64url, "vcek": base64url DER | "td_quote": base64url}``. Parsed strictly into an
``AzureCvmEvidence``; every failure is an ``HclFormatError``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from affidavit import strict_json
from affidavit.evidence.azure_cvm.errors import HclFormatError
from affidavit.evidence.azure_cvm.verify import AzureCvmEvidence, VtpmQuote

MAX_EVIDENCE_JSON = 256 * 1024
MAX_FIELD_BYTES = 32 * 1024
PCR_COUNT = 24


def _bytes(value: Any, what: str, version: int) -> bytes:
    if isinstance(value, list):
        if len(value) > MAX_FIELD_BYTES or not all(type(b) is int and 0 <= b <= 255 for b in value):
            raise HclFormatError(f"{what} is not a byte array")
        return bytes(value)
    if isinstance(value, str) and len(value) <= 2 * MAX_FIELD_BYTES:
        if version >= 1 and what.startswith("tpm_quote"):
            try:
                return bytes.fromhex(value)
            except ValueError:
                raise HclFormatError(f"{what} is not hex") from None
        try:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise HclFormatError(f"{what} is not base64url") from None
    raise HclFormatError(f"{what} is missing or not bytes")


def parse_trustee_evidence(data: bytes) -> AzureCvmEvidence:
    if len(data) > MAX_EVIDENCE_JSON:
        raise HclFormatError(f"evidence JSON larger than {MAX_EVIDENCE_JSON} bytes")
    try:
        obj = strict_json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HclFormatError("the evidence is not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise HclFormatError("the evidence is not a JSON object")
    version = obj.get("version", 0)
    if type(version) is not int or version not in (0, 1, 2):
        raise HclFormatError(f"unknown evidence version {version!r}")
    quote = obj.get("tpm_quote", obj.get("quote"))
    if not isinstance(quote, dict):
        raise HclFormatError("the evidence has no tpm_quote object")
    pcrs_raw = quote.get("pcrs")
    if not isinstance(pcrs_raw, list) or len(pcrs_raw) != PCR_COUNT:
        raise HclFormatError(f"tpm_quote.pcrs must list {PCR_COUNT} PCR values")
    pcrs = {i: _bytes(v, f"tpm_quote.pcrs[{i}]", version) for i, v in enumerate(pcrs_raw)}
    vtpm = VtpmQuote(
        message=_bytes(quote.get("message"), "tpm_quote.message", version),
        signature=_bytes(quote.get("signature"), "tpm_quote.signature", version),
        pcrs=pcrs,
    )
    hcl = _bytes(obj.get("hcl_report", obj.get("report")), "hcl_report", version)
    vcek: bytes | None = None
    td_quote: bytes | None = None
    if "vcek" in obj:
        raw = obj["vcek"]
        if isinstance(raw, str) and raw.lstrip().startswith("-----BEGIN"):
            vcek = raw.encode("ascii", "replace")
        else:
            vcek = _bytes(raw, "vcek", version)
    if "td_quote" in obj:
        td_quote = _bytes(obj["td_quote"], "td_quote", version)
    if (vcek is None) == (td_quote is None):
        raise HclFormatError("the evidence must carry exactly one of vcek (SNP) and td_quote (TDX)")
    return AzureCvmEvidence(vtpm=vtpm, hcl_report=hcl, vcek_chain=vcek, td_quote=td_quote)
