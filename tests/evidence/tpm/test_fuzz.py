"""Property tests: any bytes through the TPM parsers give a result or a TpmError, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence.tpm import (
    TpmError,
    analyze_log,
    parse_attest,
    parse_public,
    parse_signature,
    verify_signature,
)
from affidavit.evidence.tpm.formats import parse_maa_pcrs, parse_tools_pcrs
from affidavit.evidence.tpm.maa_json import events_json
from affidavit.evidence.tpm.sipa import decode
from tests.conftest import VECTORS

SYNTH = VECTORS / "tpm/swtpm-synthetic"


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


LOGS = [
    _read(VECTORS / "tpm/swtpm-synthetic/eventlog.bin"),
    _read(VECTORS / "tpm/tpm2-tools/event-uefi-sha1-log.bin")[:3000],
    _read(VECTORS / "tpm/go-tpm-tools/eventlogs/glinux-alex.bin")[:4000],
]
QUOTES = [_read(SYNTH / f"quote_{k}.msg") for k in ("rsa", "pss", "ecc")]
SIGS = [_read(SYNTH / f"quote_{k}.sig") for k in ("rsa", "pss", "ecc")]
PUBS = [_read(SYNTH / f"ak_{k}.pub") for k in ("rsa", "pss", "ecc")]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set32"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "set32" and len(data) >= pos + 4:
            data[pos : pos + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x10\x00\x00\x00"])
            )
    return bytes(data)


def _log_roundtrip(data: bytes) -> None:
    try:
        analysis = analyze_log(data)
    except TpmError:
        return
    events_json(analysis.log.events, analysis.status)


@given(st.binary(max_size=512))
def test_random_logs(data: bytes) -> None:
    _log_roundtrip(data)


@given(mutated(LOGS))
def test_mutated_logs(data: bytes) -> None:
    _log_roundtrip(data)


@given(st.one_of(st.binary(max_size=300), mutated(QUOTES)))
def test_attest(data: bytes) -> None:
    try:
        parse_attest(data)
    except TpmError:
        pass


@given(st.one_of(st.binary(max_size=300), mutated(SIGS)), st.sampled_from(range(3)))
def test_signature(data: bytes, k: int) -> None:
    try:
        sig = parse_signature(data)
        verify_signature(QUOTES[k], sig, parse_public(PUBS[k]))
    except TpmError:
        pass


@given(st.one_of(st.binary(max_size=400), mutated(PUBS)))
def test_public(data: bytes) -> None:
    try:
        parse_public(data)
    except TpmError:
        pass


@given(st.one_of(st.binary(max_size=2000), mutated([_read(SYNTH / "quote_rsa.pcrs")])))
def test_tools_pcrs(data: bytes) -> None:
    try:
        parse_tools_pcrs(data)
    except TpmError:
        pass


@given(st.binary(max_size=300))
def test_sipa(data: bytes) -> None:
    decode(data)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=8),
        lambda kids: (
            st.lists(kids, max_size=3)
            | st.dictionaries(st.sampled_from(["algorithm", "values", "index", "digest"]), kids, max_size=4)
        ),
        max_leaves=10,
    )
)
def test_maa_pcrs(obj: object) -> None:
    for candidate in (obj, [{"algorithm": 11, "values": obj}], [{"algorithm": 4, "values": [obj]}]):
        try:
            parse_maa_pcrs(candidate)
        except TpmError:
            pass


@given(
    mutated(QUOTES[:1]),
    mutated(SIGS[:1]),
    st.one_of(st.just(_read(VECTORS / "tpm/swtpm-synthetic/eventlog.bin")), mutated(LOGS[:1])),
)
def test_verify_tpm_on_mutated_evidence(quote: bytes, sig: bytes, log: bytes) -> None:
    """End to end: mutated quote, signature and log give a result or an EvidenceError."""
    from datetime import UTC, datetime

    from affidavit.evidence import EvidenceError
    from affidavit.evidence.tpm import TpmEvidence, TpmTrust, verify_tpm

    pcrs = parse_tools_pcrs(_read(SYNTH / "quote_rsa.pcrs"))[1]
    trust = TpmTrust.from_pem(registered_aks=[_read(SYNTH / "ak_rsa.pem")])
    ev = TpmEvidence(quote, sig, pcrs, ak_public=PUBS[0], event_log=log)
    nonce = bytes.fromhex(_read(SYNTH / "nonce.hex").decode().strip())
    try:
        verify_tpm(ev, nonce, trust, datetime.now(UTC), required_pcr_mask=0x3FF)
    except EvidenceError:
        pass


@pytest.mark.parametrize(
    "pcrs",
    [
        [{"algorithm": 11, "values": [{"index": 24, "digest": "AA" * 16}]}],  # PCR 24 (allowed < 32 before)
        [{"algorithm": 11, "values": [{"index": 3, "digest": "AAAA"}]}],  # 3 bytes in a SHA-256 bank
        [{"algorithm": 11, "values": [{"index": True, "digest": "AA"}]}],
        [],
    ],
)
def test_maa_pcrs_rules_are_the_protocols(pcrs: object) -> None:
    """One parser of MAA's pcrs list, with the TPM protocol's rules (indices 0..23, digest sizes)."""
    with pytest.raises(TpmError):
        parse_maa_pcrs(pcrs)
    digest = bytes(range(32))
    from affidavit.jose import b64url

    ok = [{"algorithm": 11, "values": [{"index": 23, "digest": b64url(digest)}]}]
    assert parse_maa_pcrs(ok) == ((11, ((23, digest),)),)


@pytest.mark.parametrize("modulus", [bytes(256), b"\x00" * 255 + b"\x01"])
def test_an_rsa_modulus_cryptography_refuses_is_a_tpm_error(modulus: bytes) -> None:
    """A zero or tiny modulus of the right size passed the size checks and escaped as ValueError (a
    500 for /attest/AzureGuest's AikPub or EncKeyPub)."""
    from affidavit.simulate.azure_cvm import SoftVtpm

    _, pub, _, _ = SoftVtpm().certified_key()
    assert len(pub) > 256 and parse_public(pub).public_key.key_size == 2048
    with pytest.raises(TpmError):
        parse_public(pub[:-256] + modulus)
