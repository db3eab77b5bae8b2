"""End-to-end verification of the complete real attestations, and tampering with each part."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from affidavit.evidence import EvidenceError
from affidavit.evidence.tpm import (
    EventDataError,
    EventLogReplayError,
    TpmAkError,
    TpmEvidence,
    TpmNonceError,
    TpmPcrError,
    TpmSignatureError,
    TpmTrust,
    parse_attest,
    parse_event_log,
    verify_tpm,
)
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.formats import (
    go_attestation_evidence,
    go_tpm_tools_evidence,
    parse_tools_pcr_values,
    parse_tools_pcrs,
)
from tests.evidence.tpm.vectors import event_data_span, flip, secureboot_seq

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SYNTH = "tpm/swtpm-synthetic"
KEYLIME = "tpm/keylime/swtpm-replayed-secureboot"


def _synthetic(vectors: Path, kind: str) -> tuple[TpmEvidence, bytes, TpmTrust]:
    d = vectors / SYNTH
    _, pcrs = parse_tools_pcrs((d / f"quote_{kind}.pcrs").read_bytes())
    ev = TpmEvidence(
        quote=(d / f"quote_{kind}.msg").read_bytes(),
        signature=(d / f"quote_{kind}.sig").read_bytes(),
        pcrs=pcrs,
        ak_public=(d / f"ak_{kind}.pub").read_bytes(),
        event_log=(d / "eventlog.bin").read_bytes(),
    )
    trust = TpmTrust.from_pem(registered_aks=[(d / f"ak_{kind}.pem").read_bytes()])
    return ev, bytes.fromhex((d / "nonce.hex").read_text().strip()), trust


def _verify_synthetic(ev: TpmEvidence, nonce: bytes, trust: TpmTrust):  # noqa: ANN202
    return verify_tpm(ev, nonce, trust, NOW, required_pcr_mask=0x3FF)


def _gce(vectors: Path, name: str) -> tuple[TpmEvidence, TpmTrust]:
    d = vectors / "tpm/go-tpm-tools"
    obj = json.loads((d / f"attestations/{name}.json").read_text())
    log = (d / "attestations" / obj["event_log_file"]).read_bytes()
    trust = TpmTrust.from_pem(
        roots=(d / "ca-certs/tpm_ek_root_1.cer").read_bytes(),
        intermediates=(d / "ca-certs/tpm_ek_intermediate_2.crt").read_bytes(),
    )
    return TpmEvidence(**go_tpm_tools_evidence(obj, log)), trust


def _keylime(vectors: Path) -> tuple[TpmEvidence, bytes, TpmTrust]:
    d = vectors / KEYLIME
    _, pcrs = parse_tools_pcrs((d / "quote.pcrs.tpm2tools-serialized").read_bytes())
    ev = TpmEvidence(
        quote=(d / "quote.tpms_attest").read_bytes(),
        signature=(d / "quote.tpmt_signature").read_bytes(),
        pcrs=pcrs,
        ak_public=(d / "ak.tpm2b_public").read_bytes(),
        event_log=(vectors / "tpm/keylime/binary_bios_measurements-secureboot").read_bytes(),
    )
    trust = TpmTrust.from_pem(registered_aks=[(d / "ak.pem").read_bytes()])
    return ev, bytes.fromhex((d / "nonce.hex").read_text().strip()), trust


def _windows(vectors: Path) -> TpmEvidence:
    obj = json.loads((vectors / "tpm/go-attestation/windows_gcp_shielded_vm.json").read_text())
    return TpmEvidence(**go_attestation_evidence(obj))


@pytest.mark.parametrize("kind", ["rsa", "pss", "ecc"])
def test_swtpm_quotes_verify(vectors: Path, kind: str) -> None:
    ev, nonce, trust = _synthetic(vectors, kind)
    result = _verify_synthetic(ev, nonce, trust)
    assert result.aik_validated and result.claims["aikValidated"] is True
    assert result.claims["secureBootEnabled"] is True
    assert result.covered_pcrs == frozenset(range(10))
    assert set(result.pcrs) == {"sha1", "sha256"}


def test_swtpm_values_file_matches_serialized(vectors: Path) -> None:
    d = vectors / SYNTH
    attest = parse_attest((d / "quote_rsa_values.msg").read_bytes())
    values = parse_tools_pcr_values((d / "quote_rsa_values.pcrs").read_bytes(), attest.pcr_select)
    assert values == parse_tools_pcrs((d / "quote_rsa.pcrs").read_bytes())[1]


def test_gce_attestations_verify_with_ak_certificate_chain(vectors: Path) -> None:
    for name, nonce in (("gce-cos-85-nonce9009", b"\x90\x09"), ("gce-cos-85-no-nonce", b"")):
        ev, trust = _gce(vectors, name)
        result = verify_tpm(ev, nonce, trust, NOW)
        assert result.claims["aikValidated"] is True
        assert result.claims["secureBootEnabled"] is True
        assert set(result.pcrs) == {"sha1", "sha256", "sha384"}
        assert result.covered_pcrs == frozenset(range(10))
        assert len(result.claims["pcrs"]["PCRs"]) == 24
        events = result.claims["events"]["Events"]
        assert events and all(set(e["Digests"]) == {"SHA1", "SHA256", "SHA384"} for e in events)
        assert all(e["EventType"] != c.EV_NO_ACTION and e["PcrIndex"] in range(10) for e in events)


def test_gce_without_the_ca_is_untrusted(vectors: Path) -> None:
    ev, _ = _gce(vectors, "gce-cos-85-nonce9009")
    with pytest.raises(TpmAkError):
        verify_tpm(ev, b"\x90\x09", TpmTrust(), NOW)
    result = verify_tpm(ev, b"\x90\x09", TpmTrust(), NOW, require_valid_aik_cert=False)
    assert result.claims["aikValidated"] is False


def test_gce_certificate_outside_validity_is_untrusted(vectors: Path) -> None:
    ev, trust = _gce(vectors, "gce-cos-85-nonce9009")
    with pytest.raises(TpmAkError):
        verify_tpm(ev, b"\x90\x09", trust, datetime(2020, 1, 1, tzinfo=UTC))


def test_keylime_swtpm_replayed_secureboot_verifies(vectors: Path) -> None:
    ev, nonce, trust = _keylime(vectors)
    mask = sum(1 << i for i in (*range(10), 11, 12, 13, 14, 15))
    result = verify_tpm(ev, nonce, trust, NOW, required_pcr_mask=mask)
    assert result.claims["secureBootEnabled"] is True
    assert result.claims["bootDebuggingDisabled"] is True
    assert 7 in result.covered_pcrs


def test_windows_gce_verifies_with_sha1_allowed(vectors: Path) -> None:
    ev = _windows(vectors)
    assert isinstance(ev.ak_public, bytes)
    from affidavit.evidence.tpm import parse_public

    trust = TpmTrust(registered_aks=frozenset({_spki(parse_public(ev.ak_public).public_key)}))
    with pytest.raises(TpmSignatureError):
        verify_tpm(ev, b"", trust, NOW)
    result = verify_tpm(ev, b"", trust, NOW, allow_sha1_signature=True)
    claims = result.claims
    assert claims["secureBootEnabled"] is True
    assert claims["notSafeMode"] is True and claims["notWinPE"] is True
    assert claims["bootDebuggingDisabled"] is True
    assert any(e.get("EventTypeString") == "EV_EVENT_TAG" for e in claims["events"]["Events"])
    assert all(set(e["Digests"]) == {"SHA1"} for e in claims["events"]["Events"])


def test_only_quoted_banks_and_replayed_pcrs_reach_claims(vectors: Path) -> None:
    """A quote over the SHA-1 bank only: SHA-256 digests in the log are unverified and left out."""
    ev, nonce, trust = _synthetic(vectors, "rsa")
    result = _verify_synthetic(ev, nonce, trust)
    assert all(set(e["Digests"]) == {"SHA1", "SHA256"} for e in result.claims["events"]["Events"])
    sha1_only = {"sha1": dict(ev.pcrs["sha1"]), "sha256": {}}
    from affidavit.evidence.tpm.verify import derive_claims

    claims = derive_claims(result.analysis, {"sha1": sha1_only["sha1"]}, result.covered_pcrs)
    assert all(set(e["Digests"]) == {"SHA1"} for e in claims["events"]["Events"])
    claims = derive_claims(result.analysis, result.pcrs, frozenset(range(7)))
    assert "secureBootEnabled" not in claims  # PCR7 not bound by the quote
    assert all(e["PcrIndex"] < 7 for e in claims["events"]["Events"])


def _spki(key) -> bytes:  # noqa: ANN001
    from affidavit.evidence.tpm.aik import spki_der

    return spki_der(key)


# --- tampering -------------------------------------------------------------------------------------


def test_wrong_nonce_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    with pytest.raises(TpmNonceError):
        _verify_synthetic(ev, flip(nonce, 0), trust)


@pytest.mark.parametrize("kind", ["rsa", "pss", "ecc"])
def test_every_quote_byte_matters(vectors: Path, kind: str) -> None:
    ev, nonce, trust = _synthetic(vectors, kind)
    for pos in range(len(ev.quote)):
        tampered = dataclasses.replace(ev, quote=flip(ev.quote, pos))
        with pytest.raises(EvidenceError):
            _verify_synthetic(tampered, nonce, trust)


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_signature_bytes_matter(vectors: Path, kind: str) -> None:
    ev, nonce, trust = _synthetic(vectors, kind)
    for pos in (len(ev.signature) - 1, len(ev.signature) // 2, 10):
        with pytest.raises(EvidenceError):
            _verify_synthetic(dataclasses.replace(ev, signature=flip(ev.signature, pos)), nonce, trust)


def test_tampered_pcr_value_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    for bank, index in (("sha1", 0), ("sha256", 7), ("sha256", 9)):
        pcrs = {b: dict(v) for b, v in ev.pcrs.items()}
        pcrs[bank][index] = flip(pcrs[bank][index], 3)
        with pytest.raises(TpmPcrError):
            _verify_synthetic(dataclasses.replace(ev, pcrs=pcrs), nonce, trust)


def test_missing_pcr_value_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    pcrs = {b: dict(v) for b, v in ev.pcrs.items()}
    del pcrs["sha256"][4]
    with pytest.raises(TpmPcrError):
        _verify_synthetic(dataclasses.replace(ev, pcrs=pcrs), nonce, trust)


def test_tampered_event_digest_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    assert ev.event_log is not None
    log = parse_event_log(ev.event_log)
    app = next(e.seq for e in log.events if e.type == c.EV_EFI_BOOT_SERVICES_APPLICATION)
    for seq, error in ((app, EventLogReplayError), (secureboot_seq(ev.event_log), EvidenceError)):
        start, _ = event_data_span(ev.event_log, seq)
        # the last (sha256) digest byte sits just before the 4-byte event size
        with pytest.raises(error):
            _verify_synthetic(dataclasses.replace(ev, event_log=flip(ev.event_log, start - 5)), nonce, trust)


def test_tampered_event_data_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _keylime(vectors)
    assert ev.event_log is not None
    seq = secureboot_seq(ev.event_log)
    _, end = event_data_span(ev.event_log, seq)
    mask = sum(1 << i for i in (*range(10), 11, 12, 13, 14, 15))
    with pytest.raises(EventDataError):
        verify_tpm(
            dataclasses.replace(ev, event_log=flip(ev.event_log, end - 1)),
            nonce,
            trust,
            NOW,
            required_pcr_mask=mask,
        )


def test_unregistered_ak_is_untrusted(vectors: Path) -> None:
    ev, nonce, _ = _synthetic(vectors, "rsa")
    _, _, other = _synthetic(vectors, "ecc")
    with pytest.raises(TpmAkError):
        _verify_synthetic(ev, nonce, other)


def test_ak_of_another_key_is_rejected(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    pss = (vectors / SYNTH / "ak_pss.pub").read_bytes()
    trust = TpmTrust.from_pem(registered_aks=[(vectors / SYNTH / "ak_pss.pem").read_bytes()])
    with pytest.raises(TpmSignatureError):
        _verify_synthetic(dataclasses.replace(ev, ak_public=pss), nonce, trust)


def test_required_pcr_mask(vectors: Path) -> None:
    ev, nonce, trust = _synthetic(vectors, "rsa")
    with pytest.raises(TpmPcrError):
        verify_tpm(ev, nonce, trust, NOW)  # default mask needs PCR0-23


def test_verifier_cache_gives_the_same_result_and_still_rejects(vectors: Path) -> None:
    from affidavit.evidence.tpm import TpmVerifier

    ev, trust = _gce(vectors, "gce-cos-85-nonce9009")
    verifier = TpmVerifier(trust)
    first = verifier.verify(ev, b"\x90\x09", NOW)
    assert (
        verifier.verify(ev, b"\x90\x09", NOW).claims
        == first.claims
        == verify_tpm(ev, b"\x90\x09", trust, NOW).claims
    )
    with pytest.raises(TpmAkError):  # a cached chain is not valid outside its window
        verifier.verify(ev, b"\x90\x09", datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(TpmAkError):  # nor under another trust configuration
        TpmVerifier(TpmTrust()).verify(ev, b"\x90\x09", NOW)
    assert ev.event_log is not None
    seq = secureboot_seq(ev.event_log)
    _, end = event_data_span(ev.event_log, seq)
    with pytest.raises(EventDataError):  # cached event checks are keyed by the data itself
        verifier.verify(dataclasses.replace(ev, event_log=flip(ev.event_log, end - 1)), b"\x90\x09", NOW)


def test_event_cache_tables_are_bounded_dicts() -> None:
    """EventCache's tables are affidavit.bounded.BoundedDict, whose thread safety tests/test_bounded.py
    checks (the old ``pop(next(iter(table)))`` raised when another thread changed the table)."""
    from affidavit.bounded import BoundedDict
    from affidavit.evidence.tpm.maa_json import EventCache

    assert isinstance(EventCache(max_entries=1)._status, BoundedDict)


def test_one_verifier_serves_threads_without_a_lock(vectors: Path) -> None:
    """The service shares one TpmVerifier across request threads (no lock): same claims from all."""
    from concurrent.futures import ThreadPoolExecutor

    from affidavit.evidence.tpm import TpmVerifier

    ev, trust = _gce(vectors, "gce-cos-85-nonce9009")
    verifier = TpmVerifier(trust, max_cache_entries=2)  # tiny: evictions on every call
    expected = verify_tpm(ev, b"\x90\x09", trust, NOW).claims
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: verifier.verify(ev, b"\x90\x09", NOW).claims, range(16)))
    assert all(r == expected for r in results)


def _with_unquoted_bank_event(log: bytes, pcr: int, etype: int, data: bytes) -> bytes:
    """The log with SHA-512 added to its Spec ID and, first, an event whose only digest is SHA-512
    (over ``data``): the quoted banks' replay does not see it."""
    import hashlib
    import struct

    size = struct.unpack_from("<I", log, 28)[0]
    spec = log[32 : 32 + size]
    count = struct.unpack_from("<I", spec, 24)[0]
    table_end = 28 + 4 * count
    spec = spec[:24] + struct.pack("<I", count + 1) + spec[28:table_end] + struct.pack("<HH", 0x000D, 64) + (
        spec[table_end:]
    )
    forged = struct.pack("<III", pcr, etype, 1) + struct.pack("<H", 0x000D) + hashlib.sha512(data).digest()
    forged += struct.pack("<I", len(data)) + data
    return log[:28] + struct.pack("<I", len(spec)) + spec + forged + log[32 + size :]


def test_event_only_in_an_unquoted_bank_is_not_trusted(vectors: Path) -> None:
    """An event carrying a digest only for a bank the quote does not cover extends no quoted PCR:
    nothing binds it, so neither the events document nor a claim may be read from it."""
    ev, nonce, trust = _synthetic(vectors, "rsa")
    assert ev.event_log is not None
    forged_log = _with_unquoted_bank_event(ev.event_log, 7, c.EV_EFI_ACTION, b"UEFI Debug Mode")
    assert parse_event_log(forged_log).banks == (c.ALG_SHA1, c.ALG_SHA256, 0x000D)
    try:
        result = _verify_synthetic(dataclasses.replace(ev, event_log=forged_log), nonce, trust)
    except EvidenceError:
        return  # refusing the log is as good as ignoring the event
    events = result.claims["events"]["Events"]
    assert all(e["PcrIndex"] != 7 or e["EventType"] != c.EV_EFI_ACTION or "Debug" not in json.dumps(e)
               for e in events)
    honest = _verify_synthetic(ev, nonce, trust).claims
    assert len(events) == len(honest["events"]["Events"])
    assert {k: v for k, v in result.claims.items() if k not in ("events", "bootEvents")} == {
        k: v for k, v in honest.items() if k not in ("events", "bootEvents")
    }


def test_absence_claims_need_the_sipa_pcrs_accounted_for(vectors: Path) -> None:
    """A Windows log with every PCR 12-14 record left out still replays PCRs 0-7 to the quote, and then
    shows no SIPA event at all; the quoted PCRs 12-14 are not at their start value, so the log hides
    what was measured there (boot debugging, safe mode): no claim may rest on those events' absence."""
    ev = _windows(vectors)
    assert isinstance(ev.ak_public, bytes) and ev.event_log is not None
    from affidavit.evidence.tpm import parse_public

    trust = TpmTrust(registered_aks=frozenset({_spki(parse_public(ev.ak_public).public_key)}))
    log = parse_event_log(ev.event_log)
    ends = [e.offset for e in log.events[1:]] + [len(ev.event_log) - log.trailing]
    kept = b"".join(
        ev.event_log[e.offset : end]
        for e, end in zip(log.events, ends, strict=True)
        if e.pcr not in (12, 13, 14)
    )
    result = verify_tpm(dataclasses.replace(ev, event_log=kept), b"", trust, NOW, allow_sha1_signature=True)
    assert result.claims["secureBootEnabled"] is True  # PCR7 is still bound
    for name in ("bootDebuggingDisabled", "notSafeMode", "notWinPE", "iommuEnabled", "vbsEnabled"):
        assert name not in result.claims, name
