"""Event log parsing and replay against every real log in the vectors."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from affidavit.evidence.tpm import EventLogError, analyze_log, parse_event_log, replay, sipa
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.claims import secure_boot_state
from affidavit.evidence.tpm.coverage import MISMATCH, VERIFIED
from affidavit.evidence.tpm.eventlog import MAX_EVENT_DATA, MAX_EVENTS, SPEC_ID_SIGNATURE
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


# ---------------------------------------------------------------------------------------------- bounds

def _spec_id_record() -> bytes:
    """A crypto-agile Spec ID header naming SHA-1 and SHA-256."""
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 2) + struct.pack("<HHHH", 4, 20, 11, 32)
    body += b"\x00"
    return struct.pack("<II20sI", 0, c.EV_NO_ACTION, bytes(20), len(body)) + body


def _agile_record(i: int, data: bytes = b"", *, sha1_only: bool = False) -> bytes:
    """One record: both banks (the parser's fast path) or SHA-1 alone (its general path)."""
    data = data or struct.pack("<I", i)
    digests = struct.pack("<H", 4) + hashlib.sha1(data).digest()
    if not sha1_only:
        digests += struct.pack("<H", 11) + hashlib.sha256(data).digest()
    count = 1 if sha1_only else 2
    return struct.pack("<III", i % 8, c.EV_IPL, count) + digests + struct.pack("<I", len(data)) + data


def _legacy_record(i: int, data: bytes = b"") -> bytes:
    data = data or struct.pack("<I", i)
    return struct.pack("<II20sI", i % 8, c.EV_IPL, hashlib.sha1(data).digest(), len(data)) + data


def test_real_logs_are_far_below_the_bounds(vectors: Path) -> None:
    largest = max((parse_event_log(log_bytes(vectors, key)) for key in SUMMARY), key=lambda g: len(g.events))
    assert 100 < len(largest.events) <= MAX_EVENTS // 4
    windows = parse_event_log((vectors / "tpm/go-attestation/option_rom_eventlog").read_bytes())
    biggest = max(len(e.data) for e in windows.events)
    assert 30_000 < biggest <= MAX_EVENT_DATA // 4
    tags = [e.data for e in windows.events if e.type == c.EV_EVENT_TAG]
    assert 1000 < max(len(sipa.walk(sipa.decode(t))) for t in tags) <= sipa.MAX_ENTRIES // 4


@pytest.mark.parametrize("shape", ["agile", "agile-general", "legacy"])
def test_more_than_max_events_is_refused_before_the_rest_is_read(shape: str) -> None:
    def record(i: int) -> bytes:
        if shape == "legacy":
            return _legacy_record(i)
        return _agile_record(i, sha1_only=shape == "agile-general")

    head = b"" if shape == "legacy" else _spec_id_record()
    at_limit = head + b"".join(record(i) for i in range(MAX_EVENTS))
    assert len(parse_event_log(at_limit).events) == MAX_EVENTS
    with pytest.raises(EventLogError, match=f"more than {MAX_EVENTS} events"):
        analyze_log(at_limit + record(MAX_EVENTS))


@pytest.mark.parametrize("shape", ["agile", "agile-general", "legacy"])
def test_an_event_over_max_event_data_is_refused(shape: str) -> None:
    def log(size: int) -> bytes:
        data = b"\x01" * size
        if shape == "legacy":
            return _legacy_record(0, data)
        return _spec_id_record() + _agile_record(0, data, sha1_only=shape == "agile-general")

    assert len(parse_event_log(log(MAX_EVENT_DATA)).events[0].data) == MAX_EVENT_DATA
    with pytest.raises(EventLogError, match=f"exceeds {MAX_EVENT_DATA}"):
        parse_event_log(log(MAX_EVENT_DATA + 1))


def _tlv(typ: int, body: bytes) -> bytes:
    return struct.pack("<II", typ, len(body)) + body


def test_a_sipa_payload_over_max_entries_is_refused_nested_ones_counted() -> None:
    debugging = _tlv(0x00040001, b"\x01")  # EVENT_BOOTDEBUGGING
    # A container (one entry) holding the rest: the nested entries count against the same budget.
    at_limit = _tlv(0x40010001, debugging * (sipa.MAX_ENTRIES - 1))
    expected = {"EVENT_TRUSTBOUNDARY": {"EVENT_BOOTDEBUGGING": [True] * (sipa.MAX_ENTRIES - 1)}}
    assert sipa.decode(at_limit) == expected
    with pytest.raises(EventLogError, match=f"more than {sipa.MAX_ENTRIES} entries"):
        sipa.decode(_tlv(0x40010001, debugging * sipa.MAX_ENTRIES))
    with pytest.raises(EventLogError):
        sipa.decode(debugging * (sipa.MAX_ENTRIES + 1))
