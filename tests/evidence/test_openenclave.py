"""Open Enclave reports: unwrap the real MAA/OE samples, verify the quote inside, compare MAA's claims."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from affidavit.evidence import EvidenceError, openenclave
from affidavit.evidence.dcap import DcapVerifier, collateral_hashes, parse_quote
from tests.evidence.dcap.conftest import vector_cases

_CASES = {c.id: c for c in vector_cases()}
AZURE = _CASES["azure-dcsv2-sgx-00906ed50000-2025-05/maa2022-standard-eval17"]
_OE_DIR = AZURE.quote_path.parent.parent / "azure-maa-openenclave-claims"
EVIDENCE: list[dict[str, Any]] = json.loads((_OE_DIR / "expected.json").read_text())["evidence"]


@pytest.fixture(scope="module")
def verifier() -> DcapVerifier:
    return DcapVerifier()


def _load(spec: str) -> bytes:
    """`file.bin`, or `file.json:Key` holding base64url (`Quote`) or hex (`QuoteHex`)."""
    name, _, key = spec.partition(":")
    if not key:
        return (_OE_DIR / name).read_bytes()
    value = json.loads((_OE_DIR / name).read_text())[key]
    if key.endswith("Hex"):
        return bytes.fromhex(value)
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.mark.parametrize("entry", EVIDENCE, ids=[e["evidence"] for e in EVIDENCE])
def test_real_evidence_unwraps_verifies_and_gives_maa_claims(
    entry: dict[str, Any], verifier: DcapVerifier
) -> None:
    submitted = _load(entry["evidence"])
    assert hashlib.sha256(submitted).hexdigest() == entry["sha256_submitted_evidence"]
    header = entry["oe_header"]
    assert openenclave.is_oe_report(submitted) is (header is not None)
    quote = openenclave.unwrap(submitted) if header is not None else submitted
    if header is not None:
        version, kind, size = struct.unpack_from("<IIQ", submitted)
        assert (version, kind, size) == (
            header["oe_header_version"],
            header["oe_report_type"],
            header["quote_size"],
        )
    assert hashlib.sha256(quote).hexdigest() == entry["sha256_sgx_quote"]
    # Same FMSPC (00906ED50000, Processor CA) as the Azure set, whose collateral verifies these quotes.
    collateral = AZURE.collateral()
    result = verifier.verify(quote, collateral, AZURE.at)
    expected = {k: v for k, v in entry["expected_maa_sgx_claims"].items() if k.startswith("x-ms-sgx-")}
    expected.pop("x-ms-sgx-ehd", None)  # comes from the request's runtime data, not the quote
    assert {k: result.claims[k] for k in expected} == expected
    assert result.quote.qe_report.report_data.hex() == entry["quote"]["qe_report"]["report_data"]
    # MAA's quotehash for /attest/OpenEnclave covers the OE report including its header.
    assert collateral_hashes(collateral, submitted)["quotehash"] == entry["sha256_submitted_evidence"]


def test_evidence_format_with_custom_claims() -> None:
    quote = AZURE.quote()
    claims = b"custom-claims-buffer"
    data = quote + claims
    wrapped = (
        struct.pack("<I", 3) + openenclave.OE_FORMAT_UUID_SGX_ECDSA + struct.pack("<Q", len(data)) + data
    )
    parsed = openenclave.parse(wrapped)
    assert (parsed.kind, parsed.quote, parsed.custom_claims) == ("evidence", quote, claims)
    assert parse_quote(openenclave.unwrap(wrapped)).raw == quote


def _oe(version: int, kind: int, payload: bytes, size: int | None = None) -> bytes:
    return struct.pack("<IIQ", version, kind, len(payload) if size is None else size) + payload


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "shorter than its 16-byte header"),
        (_oe(1, 1, b"x" * 100), "SGX local report"),
        (_oe(1, 7, b"x" * 100), "type 7"),
        (_oe(2, 2, b"x" * 100), "neither 1"),
        (_oe(1, 2, b"x" * 100, size=99), "declares 99"),
        (struct.pack("<I", 3) + bytes(16) + struct.pack("<Q", 0), "not SGX-ECDSA"),
        (
            struct.pack("<I", 3)
            + openenclave.OE_FORMAT_UUID_SGX_ECDSA
            + struct.pack("<Q", 4)
            + b"\x03\x00\x02\x00",
            "too short",
        ),
    ],
)
def test_malformed_oe_envelopes(data: bytes, fragment: str) -> None:
    with pytest.raises(EvidenceError) as info:
        openenclave.unwrap(data)
    assert info.value.code == "oe_report_malformed"
    assert fragment in info.value.message


def test_raw_quote_is_not_mistaken_for_an_oe_report() -> None:
    for case in vector_cases():
        assert not openenclave.is_oe_report(case.quote())


def test_oe_report_file_is_in_the_shared_vectors(vectors: Path) -> None:
    assert (vectors / "sgx" / "azure-maa-openenclave-claims" / "maa2022_oe_report.bin").is_file()
