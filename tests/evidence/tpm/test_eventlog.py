"""Event log parsing and replay against every real log in the vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from affidavit.evidence.tpm import EventLogError, analyze_log, parse_event_log, replay
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.claims import secure_boot_state
from affidavit.evidence.tpm.coverage import MISMATCH, VERIFIED
from affidavit.evidence.tpm.replay import initial_value
from tests.conftest import VECTORS
from tests.evidence.tpm.vectors import (
    event_data_span,
    expected_sets,
    flip,
    log_bytes,
    secureboot_seq,
    summary,
)

SUMMARY = summary(VECTORS) if VECTORS.is_dir() else {}
EXPECTED = expected_sets(VECTORS) if VECTORS.is_dir() else []
# Runtime PCRs the firmware log cannot reproduce (tpm.md §0.4).
NOT_IN_LOG = {("go-attestation/sb_cert_eventlog", 10)}


@pytest.mark.parametrize("key", sorted(SUMMARY))
def test_replay_matches_summary(vectors: Path, key: str) -> None:
    entry = SUMMARY[key]
    log = parse_event_log(log_bytes(vectors, key))
    assert len(log.events) >= entry["events"]
    assert ("legacy" in entry["format"]) == (log.format == "sha1-legacy")
    got = {bank: {str(i): v.hex() for i, v in pcrs.items()} for bank, pcrs in replay(log).items()}
    assert got == entry["replayed_pcrs"]


@pytest.mark.parametrize("key,expected", EXPECTED, ids=[k for k, _ in EXPECTED])
def test_replay_matches_upstream_expected(
    vectors: Path, key: str, expected: dict[str, dict[int, str]]
) -> None:
    replayed = replay(parse_event_log(log_bytes(vectors, key)))
    compared = 0
    for bank, values in expected.items():
        for i, value in values.items():
            if i in replayed.get(bank, {}):
                assert replayed[bank][i].hex() == value, f"{bank}:{i}"
                compared += 1
            elif (key, i) not in NOT_IN_LOG:
                # a PCR without events must hold its start-up value
                assert value == initial_value(i, c.HASH_SIZES[c.HASH_IDS[bank]]).hex(), f"{bank}:{i}"
    assert compared or not any(expected.values())


@pytest.mark.parametrize("key", sorted(k for k, v in SUMMARY.items() if v.get("secureboot_from_log")))
def test_secure_boot_state_matches_summary(vectors: Path, key: str) -> None:
    analysis = analyze_log(log_bytes(vectors, key))
    state = secure_boot_state(zip(analysis.log.events, analysis.status, strict=True))
    assert bool(state) == SUMMARY[key]["secureboot_from_log"]["enabled"]


@pytest.mark.parametrize("key", sorted(SUMMARY))
def test_real_logs_have_no_forged_data(vectors: Path, key: str) -> None:
    assert analyze_log(log_bytes(vectors, key)).mismatches == []


def test_startup_locality_sets_pcr0(vectors: Path) -> None:
    log = parse_event_log((vectors / "tpm/go-tpm-tools/eventlogs/glinux-alex.bin").read_bytes())
    assert log.startup_locality == 3
    assert log.format == "crypto-agile"
    assert [c.bank_name(a) for a in log.banks] == ["sha1", "sha256"]


def test_legacy_log_with_trailing_windows_record(vectors: Path) -> None:
    log = parse_event_log((vectors / "tpm/go-attestation/option_rom_eventlog").read_bytes())
    assert log.format == "sha1-legacy"
    assert log.events[-1].pcr == 0xFFFFFFFF and log.events[-1].type == c.EV_NO_ACTION
    assert log.trailing == 0


def test_single_non_specid_no_action(vectors: Path) -> None:
    log = parse_event_log((vectors / "tpm/go-attestation/short_no_action_eventlog").read_bytes())
    assert len(log.events) == 1 and replay(log) == {"sha1": {}}


def test_specid_vendor_info_outside_event_size(vectors: Path) -> None:
    log = parse_event_log((vectors / "tpm/tpm2-tools/specid-vendordata.bin").read_bytes())
    assert (
        log.spec_id is not None
        and log.spec_id.vendor_info == bytes.fromhex("deadbeef")[: len(log.spec_id.vendor_info)]
    )
    assert log.events == ()


def test_zero_padding_is_ignored(vectors: Path) -> None:
    data = (vectors / "tpm/go-tpm-tools/eventlogs/cos-85-amd-sev.bin").read_bytes()
    padded = parse_event_log(data + bytes(500))
    assert padded.trailing == 500
    assert replay(padded) == replay(parse_event_log(data))


@pytest.mark.parametrize("name", ["binary_bios_measurements-bogus", "binary_bios_measurements-empty"])
def test_bogus_and_empty_logs_are_rejected(vectors: Path, name: str) -> None:
    with pytest.raises(EventLogError):
        parse_event_log((vectors / "tpm/keylime" / name).read_bytes())


def test_truncated_log_is_rejected(vectors: Path) -> None:
    data = (vectors / "tpm/keylime/binary_bios_measurements-secureboot").read_bytes()
    with pytest.raises(EventLogError):
        parse_event_log(data[:-7])


def test_forged_secureboot_data_is_flagged(vectors: Path) -> None:
    """Keylime's gap (tpm.md §0.6): altered data with genuine digests still replays; we flag it."""
    data = (vectors / "tpm/keylime/binary_bios_measurements-secureboot").read_bytes()
    seq = secureboot_seq(data)
    _, end = event_data_span(data, seq)
    forged = flip(data, end - 1)  # VariableData 01 -> 00
    original = analyze_log(data)
    analysis = analyze_log(forged)
    assert analysis.replayed == original.replayed  # replay alone cannot see it
    assert [e.seq for e in analysis.mismatches] == [seq]
    by_seq = dict(zip((e.seq for e in analysis.log.events), analysis.status, strict=True))
    assert by_seq[seq] == MISMATCH
    assert dict(zip((e.seq for e in original.log.events), original.status, strict=True))[seq] == VERIFIED
