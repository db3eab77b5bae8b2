"""Claims that rest on the absence of an event (boot debugging, safe mode, DMA protection off).

Neither an event's type nor, for types whose digest need not cover the data, its data is bound by the
quote: only its digests are. A client that relabels or rewrites the record of an event that was measured
must not turn a claim around. The logs are built here (one SHA-256 bank) and replay to the "quoted"
values by construction, as a real machine's would.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from affidavit.evidence.tpm import Event, EventLog, EventLogError, analyze_log, sipa
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.claims import derive_claims

BOOTDEBUGGING, SAFEMODE, BOOTCOUNTER, TRUSTBOUNDARY = 0x00040001, 0x00050005, 0x00020002, 0x40010001


def _tlv(kind: int, data: bytes) -> bytes:
    return struct.pack("<II", kind, len(data)) + data


def _sipa(*items: tuple[int, bytes]) -> bytes:
    return _tlv(TRUSTBOUNDARY, b"".join(_tlv(k, v) for k, v in items))


def _event(pcr: int, etype: int, data: bytes, measured: bytes | None = None) -> tuple[int, int, bytes, bytes]:
    """(pcr, type, data, what the digest is over: the data unless ``measured`` says otherwise)."""
    return pcr, etype, data, data if measured is None else measured


def _claims(records: list[tuple[int, int, bytes, bytes]]) -> dict:
    events = tuple(
        Event(seq, pcr, etype, {c.ALG_SHA256: hashlib.sha256(measured).digest()}, data, 0)
        for seq, (pcr, etype, data, measured) in enumerate(records, start=1)
    )
    log = EventLog("crypto-agile", None, (c.ALG_SHA256,), events, None, 0, 0)
    analysis = analyze_log(log)
    quoted = {"sha256": dict(analysis.replayed["sha256"])}
    for i in range(24):  # PCRs without events are quoted at their start value
        quoted["sha256"].setdefault(i, bytes(32) if not 17 <= i <= 22 else b"\xff" * 32)
    return derive_claims(analysis, quoted, frozenset(quoted["sha256"]) & frozenset(e.pcr for e in events))


SEPARATOR = b"\x00" * 4
DEBUGGING_ON = _sipa((BOOTDEBUGGING, b"\x01"))
SAFE_MODE_ON = _sipa((SAFEMODE, b"\x01"))
WINDOWS = _sipa((BOOTCOUNTER, b"\x07"))


def _windows(pcr12: tuple[int, int, bytes, bytes], pcr13: tuple[int, int, bytes, bytes]) -> list:
    return [
        _event(7, c.EV_SEPARATOR, SEPARATOR),
        pcr12,
        pcr13,
        _event(14, c.EV_EVENT_TAG, WINDOWS),
    ]


def test_honest_windows_log_with_boot_debugging() -> None:
    tags = _event(12, c.EV_EVENT_TAG, DEBUGGING_ON), _event(13, c.EV_EVENT_TAG, SAFE_MODE_ON)
    claims = _claims(_windows(*tags))
    assert claims["bootDebuggingDisabled"] is False
    assert claims["notSafeMode"] is False


def test_sipa_event_relabelled_as_another_type_still_counts() -> None:
    """EV_SEPARATOR's digest covers its data, so the relabelled record is 'verified': its data is still
    the SIPA payload that was measured."""
    relabelled = _event(12, c.EV_SEPARATOR, DEBUGGING_ON), _event(13, c.EV_SEPARATOR, SAFE_MODE_ON)
    claims = _claims(_windows(*relabelled))
    assert claims.get("bootDebuggingDisabled") is not True
    assert claims.get("notSafeMode") is not True


def test_sipa_event_with_rewritten_data_withholds_the_absence_claims() -> None:
    """An EV_EVENT_TAG whose data no longer matches its digest is only 'unverified' (the log is not
    refused): what was measured there is unknown, so nothing may rest on its absence."""
    harmless = _sipa((BOOTDEBUGGING, b"\x00"))
    claims = _claims(_windows(
        _event(12, c.EV_EVENT_TAG, harmless, measured=DEBUGGING_ON),
        _event(13, c.EV_EVENT_TAG, _sipa((SAFEMODE, b"\x00")), measured=SAFE_MODE_ON),
    ))
    for name in ("bootDebuggingDisabled", "notSafeMode", "notWinPE", "iommuEnabled"):
        assert name not in claims, name


def test_uefi_debug_mode_is_read_from_the_digest() -> None:
    """'UEFI Debug Mode' is a fixed string whose EV_EFI_ACTION digest is known: a record relabelled to a
    type whose data need not match (here an authority event) with its data rewritten still shows it."""
    records = [
        _event(7, c.EV_EFI_VARIABLE_AUTHORITY, b"nothing to see", measured=b"UEFI Debug Mode"),
        _event(7, c.EV_SEPARATOR, SEPARATOR),
    ]
    assert _claims(records).get("bootDebuggingDisabled") is not True
    honest = [_event(7, c.EV_EFI_ACTION, b"UEFI Debug Mode"), _event(7, c.EV_SEPARATOR, SEPARATOR)]
    assert _claims(honest)["bootDebuggingDisabled"] is False
    assert _claims([_event(7, c.EV_SEPARATOR, SEPARATOR)])["bootDebuggingDisabled"] is True


def test_dma_protection_disabled_is_read_from_the_digest() -> None:
    iommu_on = _sipa((0x0005000C, b"\x01"))  # EVENT_HYPERVISOR_IOMMU_POLICY = 1
    pcr12, pcr13 = _event(12, c.EV_EVENT_TAG, iommu_on), _event(13, c.EV_EVENT_TAG, iommu_on)
    assert _claims(_windows(pcr12, pcr13))["iommuEnabled"] is True
    relabelled = _event(7, c.EV_EFI_VARIABLE_AUTHORITY, b"nothing", measured=b"DMA Protection Disabled")
    assert _claims([relabelled, *_windows(pcr12, pcr13)])["iommuEnabled"] is False


def test_a_logs_sipa_payloads_share_one_entry_budget() -> None:
    """Each payload far under ``sipa.MAX_ENTRIES``, the log's together over it: refused before any is
    decoded. Hidden types count too: they are read even though they are not rendered."""
    hidden = _tlv(0x00020008, b"\x01")  # EVENT_MORBIT_NOT_CANCELABLE, decoded but never emitted
    fill = sipa.MAX_ENTRIES // 2 - 3  # each tag: its container, BOOTCOUNTER and the fill; PCR14's WINDOWS: 2

    def log(extra: int) -> list[tuple[int, int, bytes, bytes]]:
        tag12 = _event(12, c.EV_EVENT_TAG, _sipa((BOOTCOUNTER, b"\x01")) + hidden * fill)
        tag13 = _event(13, c.EV_EVENT_TAG, _sipa((BOOTCOUNTER, b"\x02")) + hidden * (fill + extra))
        return _windows(tag12, tag13)

    assert sum(sipa.count_entries(r[2]) for r in log(0) if r[1] == c.EV_EVENT_TAG) == sipa.MAX_ENTRIES
    assert _claims(log(0))["notSafeMode"] is True
    with pytest.raises(EventLogError, match=f"more than {sipa.MAX_ENTRIES} entries"):
        _claims(log(1))
