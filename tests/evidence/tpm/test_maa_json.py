"""Our MAA-shaped event JSON against a real MAA token's parsed events, and the claims we derive."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.coverage import UNVERIFIED, check_event
from affidavit.evidence.tpm.eventlog import Event
from affidavit.evidence.tpm.maa_json import EventCache, event_json, pcrs_json
from tests.conftest import VECTORS

TOKEN = VECTORS / "tpm/maa-tokens/report_boot_outputEvents.decoded.json"


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _maa_events() -> list[dict[str, Any]]:
    if not TOKEN.exists():
        return []
    return json.loads(TOKEN.read_text())["payload"]["x-ms-policy"]["outputEvents"]["Events"]


def _event(m: dict[str, Any]) -> Event:
    digests = {c.HASH_IDS[k.lower()]: _b64(v) for k, v in m["Digests"].items()}
    return Event(m["EventSeq"], m["PcrIndex"], m["EventType"], digests, _b64(m["RawData"]), 0)


MAA = _maa_events()
# #16: MAA gives an empty EV_NONHOST_INFO `"ProcessedData": null`; we leave empty data undecoded.
# #31: an EV_EFI_VARIABLE_AUTHORITY whose digest does not cover its data: we decode no unverified data.
SKIP = {16, 31}


@pytest.mark.parametrize("m", [m for m in MAA if m["EventSeq"] not in SKIP], ids=lambda m: str(m["EventSeq"]))
def test_event_matches_maa(m: dict[str, Any]) -> None:
    e = _event(m)
    ours = event_json(e, check_event(e))
    assert ours == m


def test_skipped_events_are_the_documented_cases() -> None:
    by_seq = {m["EventSeq"]: m for m in MAA}
    assert by_seq[16]["ProcessedData"] is None and by_seq[16]["RawData"] == ""
    e = _event(by_seq[31])
    assert check_event(e) == UNVERIFIED
    assert "ProcessedData" not in event_json(e, UNVERIFIED)


def test_cache_gives_identical_json() -> None:
    cache = EventCache(max_entries=8)
    for m in MAA * 2:
        e = _event(m)
        status = check_event(e)
        assert cache.status(e) == status
        assert event_json(e, status, cache=cache) == event_json(e, status)


def test_pcrs_json_shape() -> None:
    out = pcrs_json({"sha1": {1: b"\x01" * 20, 0: b"\x00" * 20}, "sha256": {0: b"\xff" * 32}})
    assert out == {
        "PCRs": [
            {"Index": 0, "Digests": {"SHA1": "A" * 27, "SHA256": "_" * 42 + "8"}},
            {"Index": 1, "Digests": {"SHA1": "AQEBAQEBAQEBAQEBAQEBAQEBAQE"}},
        ]
    }


def test_windows_claims_from_maa_events() -> None:
    """The SIPA values behind MAA's Windows claims decode as the token's policy saw them."""
    from affidavit.evidence.tpm import sipa

    values: dict[str, list[Any]] = {}
    for m in MAA:
        if m["EventType"] == c.EV_EVENT_TAG:
            for name, value in sipa.walk(sipa.decode(_b64(m["RawData"]))):
                values.setdefault(name, []).append(value)
    claims = json.loads(Path(str(TOKEN).replace("outputEvents", "claims")).read_text())["payload"][
        "x-ms-policy"
    ]
    assert (True in values["EVENT_BOOTDEBUGGING"]) == claims["BootDebuggingEnabled"]
    assert all(v is True for v in values["EVENT_CODEINTEGRITY"]) == claims["CodeIntegrityEnabled"]
    assert (True in values["EVENT_TESTSIGNING"]) == claims["TestSigningEnabled"]
    assert values["EVENT_VSM_IDK_INFO"] and claims["VSMEnabled"]


def _all_logs() -> list[str]:
    from tests.evidence.tpm.vectors import summary

    return sorted(summary(VECTORS)) if (VECTORS / "tpm").is_dir() else []


@pytest.mark.parametrize("key", _all_logs())
def test_cached_claims_equal_uncached_claims_on_every_real_log(key: str) -> None:
    """The per-event caches (JSON parts, SIPA pairs) never change a claim, warm or cold."""
    from affidavit.evidence.tpm import analyze_log
    from affidavit.evidence.tpm.claims import derive_claims
    from tests.evidence.tpm.vectors import log_bytes

    data = log_bytes(VECTORS, key)
    try:
        plain = analyze_log(data)
    except Exception:  # noqa: BLE001 - logs the parser refuses are covered elsewhere
        return
    quoted = {bank: dict(values) for bank, values in plain.replayed.items()}
    covered = frozenset(i for values in quoted.values() for i in values)
    expected = derive_claims(plain, quoted, covered)
    cache = EventCache()
    for _ in range(2):
        assert derive_claims(analyze_log(data, cache), quoted, covered, cache) == expected


def test_the_event_cache_is_bounded_by_the_bytes_it_holds() -> None:
    """130 distinct events of 256 KiB (a few requests' worth): the memos keep at most 32 MiB of data,
    whatever their entry limit, and what they keep still answers."""
    import hashlib
    import os

    cache = EventCache()
    events = []
    for i in range(130):
        data = os.urandom(16) + bytes(256 * 1024 - 16)
        e = Event(i, 4, c.EV_IPL, {c.ALG_SHA256: hashlib.sha256(data).digest()}, data, 0)
        events.append(e)
        assert cache.status(e) == check_event(e)
        cache.static(e, cache.status(e), None)
        cache.sipa_pairs(data)
    for memo in (cache._status, cache._json, cache._sipa):
        held = sum(len(part) for key in memo for part in key if isinstance(part, bytes) and len(part) > 64)
        assert 0 < held <= 32 << 20
    assert cache.status(events[-1]) == check_event(events[-1])
