"""Property tests: every parser of untrusted Azure CVM bytes returns a result or its typed error."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence import EvidenceError
from affidavit.evidence.azure_cvm import (
    AzureCvmVerifier,
    check_encryption_key,
    check_hcl_structure,
    parse_hcl_report,
    parse_runtime_claims,
    parse_tdreport,
    parse_trustee_evidence,
)
from tests.evidence.azure_cvm.vectors import AZ, TDX_TIMES, dcap, tdx_collateral, tdx_evidence

REAL_HCL = (AZ / "trustee-az-tdx-vtpm" / "hcl-report.bin").read_bytes()
REAL_SNP_HCL = (AZ / "kinvolk-az-cvm-vtpm" / "hcl-report-snp.bin").read_bytes()


def _edits(base: bytes) -> st.SearchStrategy[bytes]:
    """The real report with a few bytes overwritten, truncated or extended."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        out = bytearray(base)
        for _ in range(draw(st.integers(0, 4))):
            pos = draw(st.integers(0, len(out) - 1))
            out[pos] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(out)))
        return bytes(out[:cut]) + draw(st.binary(max_size=64))

    return build()


@given(st.one_of(st.binary(max_size=3000), _edits(REAL_HCL), _edits(REAL_SNP_HCL)))
def test_hcl_parse_and_structure_never_raise_untyped(data: bytes) -> None:
    try:
        check_hcl_structure(parse_hcl_report(data))
    except EvidenceError as exc:
        assert exc.code.startswith("azure_cvm_")


@given(st.one_of(st.binary(max_size=1200), _edits(REAL_HCL[32:1056])))
def test_tdreport_parse(data: bytes) -> None:
    try:
        parse_tdreport(data)
    except EvidenceError as exc:
        assert exc.code.startswith("azure_cvm_")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.one_of(
        st.binary(max_size=600),
        JSONISH.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "keys": st.lists(
                    st.dictionaries(st.sampled_from(["kid", "kty", "n", "e"]), JSONISH), max_size=3
                )
            },
            optional={"vm-configuration": JSONISH, "user-data": JSONISH},
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_runtime_claims_parse(data: bytes) -> None:
    try:
        claims = parse_runtime_claims(data)
        claims.ak_key  # noqa: B018 - converting the JWK is part of parsing it
    except EvidenceError as exc:
        assert exc.code.startswith("azure_cvm_")


TRUSTEE = (AZ / "trustee-az-tdx-vtpm" / "evidence-v1.json").read_bytes()


@given(st.one_of(st.binary(max_size=400), _edits(TRUSTEE), JSONISH.map(lambda v: json.dumps(v).encode())))
def test_trustee_evidence_parse(data: bytes) -> None:
    try:
        parse_trustee_evidence(data)
    except EvidenceError as exc:
        assert exc.code.startswith("azure_cvm_")


@given(st.binary(max_size=400), st.binary(max_size=200), st.binary(max_size=300))
def test_encryption_key_check(pub: bytes, info: bytes, sig: bytes) -> None:
    ak = parse_runtime_claims(parse_hcl_report(REAL_HCL).claims).ak_key
    try:
        check_encryption_key(pub, info, sig, ak)
    except EvidenceError as exc:
        assert exc.code == "azure_cvm_enckey_invalid" or exc.code.startswith("tpm_")


VERIFIER = AzureCvmVerifier(dcap=dcap())
REAL = tdx_evidence()


@given(_edits(REAL.td_quote or b""), st.binary(max_size=8))
def test_full_verification_of_edited_td_quotes(td_quote: bytes, junk: bytes) -> None:
    evidence = dataclasses.replace(REAL, td_quote=td_quote + junk)
    try:
        VERIFIER.verify(
            evidence,
            now=TDX_TIMES["collateral_2025-02.json"],
            nonce=b"challenge",
            tdx_collateral=tdx_collateral(),
        )
    except EvidenceError:
        pass
