"""MAA incoming claims derived from a verified event log (tpm.md §3).

A claim is read only from events that (a) lie in a PCR whose replay matched the quote, with a digest
in a bank of that comparison, and (b) whose data is covered by their digest. Claims that rest on the
*absence* of an event (no boot debugging, not safe mode, ...) are emitted only when every PCR such an
event would be in is bound by the quote, and read past what the quote does not bind (an event's type, and
for most types its data): fixed firmware actions by their digest, SIPA tags from every record of PCRs
12-13 whose data is what was measured; a record there whose data is not withholds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm import sipa, uefi
from affidavit.evidence.tpm.analysis import LogAnalysis
from affidavit.evidence.tpm.coverage import NOT_EXTENDED, VERIFIED
from affidavit.evidence.tpm.eventlog import Event
from affidavit.evidence.tpm.maa_json import EventCache, events_json, pcrs_json, sipa_pairs
from affidavit.evidence.tpm.replay import PcrValues, initial_value

SIPA_PCRS = frozenset({12, 13, 14})
_NO_BANKS: frozenset[int] = frozenset()
# Where Windows measures the SIPA tags that claims read from their absence (boot debugging, safe mode,
# WinPE, the IOMMU policy): PCRs 12 and 13 in every real log (Windows GCE, option_rom vectors).
SIPA_MARKER_PCRS = frozenset({12, 13})


def secure_boot_state(events: Iterable[tuple[Event, str]]) -> bool | None:
    """PCR7 ``SecureBoot`` variable before the first PCR7 separator, exactly once, digest == H(data).

    ``None`` when the log does not say (no such event, or it is not covered by its digest).
    """
    found: list[bytes] = []
    for e, status in events:
        if e.pcr != 7:
            continue
        if e.type == c.EV_SEPARATOR:
            break
        if e.type != c.EV_EFI_VARIABLE_DRIVER_CONFIG:
            continue
        var = uefi.parse_variable(e.data)
        if var is None or var.guid != c.EFI_GLOBAL_VARIABLE or var.name != "SecureBoot":
            continue
        if status != VERIFIED:
            return None
        found.append(var.data)
    if len(found) != 1:
        return None
    return found[0] == b"\x01"


def _quoted_unextended(quoted: PcrValues, pcr: int) -> bool:
    """Whether a bank of the quote shows ``pcr`` at its start value: nothing was ever extended into it."""
    return any(
        pcr in values and values[pcr] == initial_value(pcr, len(values[pcr])) for values in quoted.values()
    )


def _action_digests(text: bytes) -> frozenset[bytes]:
    return frozenset(fn(t).digest() for fn in c.HASH_FUNCS.values() for t in (text, text + b"\x00"))


_DEBUG_MODE_DIGESTS = _action_digests(b"UEFI Debug Mode")
_DMA_OFF_DIGESTS = _action_digests(b"DMA Protection Disabled")


def _debug_mode_action(e: Event) -> bool:
    """The firmware's "UEFI Debug Mode" action, read from the digest too: the quote binds an event's
    digests, not its type nor (for most types) its data, so a relabelled or rewritten record still shows."""
    if e.pcr != 7:
        return False
    data_says = e.type == c.EV_EFI_ACTION and e.data.rstrip(b"\x00") == b"UEFI Debug Mode"
    return data_says or not _DEBUG_MODE_DIGESTS.isdisjoint(e.digests.values())


def _dma_protection_disabled(e: Event) -> bool:
    """The "DMA Protection Disabled" action, by its data or its digest (as ``_debug_mode_action``)."""
    data_says = e.type == c.EV_EFI_ACTION and e.data.rstrip(b"\x00") == b"DMA Protection Disabled"
    return data_says or not _DMA_OFF_DIGESTS.isdisjoint(e.digests.values())


# The SIPA tags the claims below read; a Windows log carries thousands of others.
_SIPA_CLAIM_SOURCES = frozenset(
    {
        "EVENT_BOOTDEBUGGING",
        "EVENT_SAFEMODE",
        "EVENT_WINPE",
        "EVENT_HYPERVISOR_IOMMU_POLICY",
        "EVENT_VBS_VSM_REQUIRED",
        "EVENT_VSM_IDK_INFO",
    }
)


def derive_claims(
    analysis: LogAnalysis | None,
    quoted: PcrValues,
    covered: frozenset[int],
    cache: EventCache | None = None,
) -> dict[str, Any]:
    """Claims from the log; ``covered``: PCRs whose log events replay to the quoted values."""
    claims: dict[str, Any] = {"pcrs": pcrs_json(quoted), "vbsReportPresent": False}
    if analysis is None:
        return claims
    log = analysis.log
    # An event is bound only through a bank whose replay of its PCR was compared with the quote: one
    # carrying digests for other banks alone (the log names the banks) extends no quoted value.
    bound_banks: dict[int, set[int]] = {}
    for bank, values in quoted.items():
        replayed = analysis.replayed.get(bank, {})
        for i in values:
            if i in replayed:
                bound_banks.setdefault(i, set()).add(c.HASH_IDS[bank])
    # EV_NO_ACTION records are never extended, so nothing binds them: left out, as MAA does.
    trusted = [
        (e, s)
        for e, s in zip(log.events, analysis.status, strict=True)
        if e.pcr in covered
        and s != NOT_EXTENDED
        and not bound_banks.get(e.pcr, _NO_BANKS).isdisjoint(e.digests)
    ]
    # The SIPA payloads decoded below (and for the events' ProcessedData), bounded together first.
    sipa.check_entries(
        (
            e.data
            for e, s in trusted
            if s == VERIFIED and (e.type == c.EV_EVENT_TAG or e.pcr in SIPA_MARKER_PCRS)
        ),
        cache.sipa_count if cache is not None else None,
    )
    verified_banks = [c.HASH_IDS[b] for b in quoted if b in analysis.replayed]
    events = events_json([e for e, _ in trusted], [s for _, s in trusted], verified_banks, cache)
    claims["events"] = events
    claims["bootEvents"] = events

    sb = secure_boot_state(trusted) if 7 in covered else None
    if sb is not None:
        claims["secureBootEnabled"] = sb

    sipa_values: dict[str, list[Any]] = {}
    # What the absence claims read: the tags of every record in PCRs 12-13 whose data is what was
    # measured, whatever type it claims (types are not bound); a record there whose data is not
    # (``hidden``) may be any tag, so those claims are then withheld.
    marker_values: dict[str, list[Any]] = {}
    hidden = False
    windows = False
    for e, status in trusted:
        marker = e.pcr in SIPA_MARKER_PCRS
        if marker and status != VERIFIED:
            hidden = True
        if status != VERIFIED or (e.type != c.EV_EVENT_TAG and not marker):
            continue
        pairs = cache.sipa_pairs(e.data) if cache is not None else sipa_pairs(e.data)
        tagged = e.type == c.EV_EVENT_TAG
        windows = windows or (tagged and bool(pairs))
        for name, value in pairs:
            if name in _SIPA_CLAIM_SOURCES:
                if tagged:
                    sipa_values.setdefault(name, []).append(value)
                marker_values.setdefault(name, []).append(value)
    sipa_bound = SIPA_PCRS <= covered
    uefi_debug = any(_debug_mode_action(e) for e, _ in trusted if e.pcr == 7)
    # "Not Windows" rests on the log: a client may leave out every record of PCRs 12-14, so it counts only
    # when each of them is bound by the log or quoted at its start value (nothing measured there).
    sipa_empty = all(i in covered or _quoted_unextended(quoted, i) for i in SIPA_PCRS)

    if 7 in covered and not hidden and (sipa_bound or (not windows and sipa_empty)):
        debugging = uefi_debug or any(v is True for v in marker_values.get("EVENT_BOOTDEBUGGING", []))
        claims["bootDebuggingDisabled"] = not debugging
    if windows and sipa_bound and not hidden:
        claims["notSafeMode"] = not any(v is True for v in marker_values.get("EVENT_SAFEMODE", []))
        claims["notWinPE"] = not any(v is True for v in marker_values.get("EVENT_WINPE", []))
        iommu = [
            v.get("Value")
            for v in marker_values.get("EVENT_HYPERVISOR_IOMMU_POLICY", [])
            if isinstance(v, dict)
        ]
        dma_off = any(_dma_protection_disabled(e) for e, _ in trusted)
        claims["iommuEnabled"] = bool(iommu) and all(v == 1 for v in iommu) and not dma_off
    if windows and sipa_bound:
        claims["vbsEnabled"] = any(v is True for v in sipa_values.get("EVENT_VBS_VSM_REQUIRED", [])) or bool(
            sipa_values.get("EVENT_VSM_IDK_INFO")
        )
    return claims
