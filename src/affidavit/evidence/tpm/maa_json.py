"""MAA's policy-1.2 JSON views of TPM evidence: ``events`` / ``bootEvents`` and ``pcrs``.

Field names and casing follow real MAA tokens (vectors/tpm/maa-tokens), since JmesPath policies
written for MAA query them. Types MAA decodes carry ``EventTypeString`` and ``ProcessedData``;
others carry only the numeric ``EventType``. ProcessedData is produced only from data the event's
digest covers (or, for images and firmware blobs, data that is descriptive by nature).
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Callable, Iterable
from typing import Any

from affidavit.bounded import BoundedDict
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm import sipa, uefi
from affidavit.evidence.tpm.coverage import EXTERNAL, VERIFIED, check_event
from affidavit.evidence.tpm.eventlog import Event
from affidavit.evidence.tpm.replay import PcrValues
from affidavit.jose import b64url

_SIG_LIST_VARIABLES = frozenset({"PK", "KEK", "db", "dbx", "dbt", "dbr", "MokList", "MokListX"})
_DEVICE_PATH_TYPES = {1: "Hardware", 2: "ACPI", 3: "Messaging", 4: "Media", 5: "BBS", 0x7F: "End"}


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_many(items: list[bytes], size: int) -> list[str]:
    """``[b64url(x) for x in items]`` for items of ``size`` bytes each, in one base64 pass.

    Each item is zero-padded to a multiple of 3 bytes, so its encoding starts on a 4-character boundary
    and its first ceil(4·size/3) characters are exactly its own unpadded encoding (base64 pads with zero
    bits too). A dbx holds hundreds of hashes: one pass instead of one call each.
    """
    if not size or not items:
        return [""] * len(items)
    pad = b"\0" * (-size % 3)
    width = (size + len(pad)) // 3 * 4
    keep = (4 * size + 2) // 3
    text = binascii.b2a_base64(pad.join(items) + pad, newline=False).translate(_URLSAFE).decode()
    return [text[i : i + keep] for i in range(0, len(text), width)]


def _signature_lists(data: bytes) -> list[dict[str, Any]] | None:
    lists = uefi.parse_signature_lists(data)
    if lists is None:
        return None
    out = []
    for sl in lists:
        encoded = b64url_many(list(sl.data), sl.signature_size)
        out.append(
            {
                "SignatureType": sl.signature_type,
                "SignatureTypeString": c.SIGNATURE_TYPE_NAMES.get(sl.signature_type, ""),
                "Signatures": [
                    {"SignatureData": d, "SignatureOwner": o} for d, o in zip(encoded, sl.owners, strict=True)
                ],
            }
        )
    return out


def _driver_config(e: Event) -> dict[str, Any] | None:
    var = uefi.parse_variable(e.data)
    if var is None:
        return None
    value: Any = None
    if var.name in _SIG_LIST_VARIABLES and var.data:
        value = _signature_lists(var.data)
    if not value:
        value = b64url(var.data)
    return {"UnicodeName": var.name, "VariableData": value, "VariableGuid": var.guid}


def _variable_boot(e: Event) -> dict[str, Any] | None:
    # MAA's JSON (vectors/tpm/maa-tokens) also holds boot variables as bare VariableData.
    var = uefi.parse_variable(e.data)
    return {"VariableData": b64url(e.data if var is None else var.data)}


def _authority(e: Event) -> dict[str, Any] | None:
    var = uefi.parse_variable(e.data)
    if var is None or len(var.data) < 16:
        return None
    return {"VariableData": {"SignatureData": b64url(var.data[16:]), "SignatureOwner": uefi.guid(var.data)}}


def _action(e: Event) -> dict[str, Any] | None:
    try:
        return {"Data": e.data.rstrip(b"\x00").decode("ascii")}
    except UnicodeDecodeError:
        return None


def _separator(e: Event) -> dict[str, Any] | None:
    return {f"CappedHash[{c.MAA_HASH_NAMES.get(a, hex(a))}]": b64url(d) for a, d in e.digests.items()}


def _firmware_blob(e: Event) -> dict[str, Any] | None:
    blob = uefi.parse_firmware_blob(e.data)
    return None if blob is None else {"BlobBase": blob[0], "BlobLength": blob[1]}


def _image(e: Event) -> dict[str, Any] | None:
    img = uefi.parse_image_load(e.data)
    if img is None:
        return None
    out: dict[str, Any] = {
        "ImageLengthInMemory": img.length,
        "ImageLinkTimeAddress": img.link_time_address,
        "ImageLocationInMemory": img.location,
    }
    if len(img.device_path) >= 4:
        t, sub = img.device_path[0], img.device_path[1]
        out["DevicePath"] = {
            "SubType": sub,
            "Type": {"String": _DEVICE_PATH_TYPES.get(t, "Unknown"), "Value": t},
        }
    return out


def _gpt(e: Event) -> dict[str, Any] | None:
    gpt = uefi.parse_gpt(e.data)
    if gpt is None:
        return None
    return {
        "Partitions": [
            {
                "Attributes": p.attributes,
                "EndingLBA": p.ending_lba,
                "PartitionName": p.name,
                "PartitionTypeGUID": p.type_guid,
                "StartingLBA": p.starting_lba,
                "UniquePartitionGUID": p.unique_guid,
            }
            for p in gpt.partitions
        ],
        "UEFIPartitionHeader": {
            "AlternateLBA": gpt.alternate_lba,
            "DiskGUID": gpt.disk_guid,
            "FirstUseableLBA": gpt.first_usable_lba,
            "Header": {
                "CRC32": gpt.header_crc32,
                "HeaderSize": gpt.header_size,
                "Revision": gpt.revision,
                "Signature": gpt.signature,
            },
            "LastUseableLBA": gpt.last_usable_lba,
            "MyLBA": gpt.my_lba,
            "NumberOfPartitionEntries": gpt.number_of_partition_entries,
            "PartitionEntryArrayCRC32": gpt.partition_entry_array_crc32,
            "PartitionEntryLBA": gpt.partition_entry_lba,
            "SizeOfPartitionEntry": gpt.size_of_partition_entry,
        },
    }


def _event_tag(e: Event) -> dict[str, Any] | None:
    return sipa.decode(e.data)


def sipa_pairs(data: bytes) -> tuple[tuple[str, Any], ...]:
    """Every (name, value) of an EV_EVENT_TAG payload's SIPA tree (none when it does not decode)."""
    return tuple(sipa.walk(sipa.decode(data)))


_PROCESSORS: dict[int, Callable[[Event], dict[str, Any] | None]] = {
    c.EV_EFI_VARIABLE_DRIVER_CONFIG: _driver_config,
    c.EV_EFI_VARIABLE_BOOT: _variable_boot,
    c.EV_EFI_VARIABLE_BOOT2: _variable_boot,
    c.EV_EFI_VARIABLE_AUTHORITY: _authority,
    c.EV_EFI_ACTION: _action,
    c.EV_SEPARATOR: _separator,
    c.EV_EFI_PLATFORM_FIRMWARE_BLOB: _firmware_blob,
    c.EV_EFI_BOOT_SERVICES_APPLICATION: _image,
    c.EV_EFI_BOOT_SERVICES_DRIVER: _image,
    c.EV_EFI_RUNTIME_SERVICES_DRIVER: _image,
    c.EV_EFI_GPT_EVENT: _gpt,
    c.EV_EVENT_TAG: _event_tag,
}


class EventCache:
    """Caller-owned memo of per-event work that is a pure function of an event's type, digests and
    data: its coverage status (``coverage.check_event``) and the data-derived part of its JSON
    (``RawData``, ``Digests``, ``EventTypeString``, ``ProcessedData``).

    Keys hold the data itself, so a hit is exact. Firmware variables (PK/KEK/db/dbx with hundreds of
    entries), separators and boot-loader commands repeat across a fleet. Cached values are shared
    between results: treat them as read-only. Bounded (``affidavit.bounded.BoundedDict``) by entries
    and by ``max_bytes`` of event data per memo: distinct 256 KiB events cost 0.7 MB each once cached
    (data, RawData, JSON), so entries alone would let 16,384 of them hold 11 GB. The oldest entries go
    first; stores are serialised (a weighted cache's running total), lookups are not.
    """

    def __init__(self, max_entries: int = 16384, max_bytes: int = 32 << 20) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._status: BoundedDict[tuple[Any, ...], str] = BoundedDict(max_entries, max_weight=max_bytes)
        self._json: BoundedDict[tuple[Any, ...], dict[str, Any]] = BoundedDict(
            max_entries, max_weight=max_bytes
        )
        self._sipa: BoundedDict[tuple[Any, ...], tuple[tuple[str, Any], ...]] = BoundedDict(
            max_entries, max_weight=max_bytes
        )
        self._sipa_count: BoundedDict[tuple[Any, ...], int] = BoundedDict(max_entries, max_weight=max_bytes)

    def _put(self, memo: BoundedDict[Any, Any], key: tuple[Any, ...], value: Any, data: bytes) -> None:
        """Store ``value``, weighed by the event data its key holds."""
        with self._lock:
            memo.put(key, value, len(data))

    def status(self, e: Event) -> str:
        key = (e.type, e.data, *e.digests.items())
        hit = self._status.get(key)
        if hit is None:
            hit = check_event(e)
            self._put(self._status, key, hit, e.data)
        return hit

    def sipa_pairs(self, data: bytes) -> tuple[tuple[str, Any], ...]:
        """``sipa_pairs(data)``, remembered: Windows logs carry hundreds of SIPA tags, most of them the
        same across boots and machines."""
        key = (data,)
        hit = self._sipa.get(key)
        if hit is None:
            hit = sipa_pairs(data)
            self._put(self._sipa, key, hit, data)
        return hit

    def sipa_count(self, data: bytes) -> int:
        """``sipa.count_entries(data)``, remembered: the per-log SIPA budget walks every payload's headers
        on every request, 40% of the largest real log's warm check when it was not remembered."""
        key = (data,)
        hit = self._sipa_count.get(key)
        if hit is None:
            hit = sipa.count_entries(data)
            self._put(self._sipa_count, key, hit, data)
        return hit

    def static(self, e: Event, status: str, banks: frozenset[int] | None) -> dict[str, Any]:
        key = (e.type, status, banks, e.data, *e.digests.items())
        hit = self._json.get(key)
        if hit is None:
            hit = _static_part(e, status, banks)
            self._put(self._json, key, hit, e.data)
        return hit


def _static_part(e: Event, status: str, banks: frozenset[int] | None) -> dict[str, Any]:
    return _fill({}, e, status, banks)


def _fill(out: dict[str, Any], e: Event, status: str, banks: frozenset[int] | None) -> dict[str, Any]:
    """Add the data-derived keys of ``e``'s JSON to ``out``."""
    out["EventType"] = e.type
    out["Digests"] = {
        c.MAA_HASH_NAMES.get(a, f"0x{a:04x}"): b64url(d)
        for a, d in e.digests.items()
        if banks is None or a in banks
    }
    out["RawData"] = b64url(e.data)
    proc = _PROCESSORS.get(e.type)
    if proc is not None and status in (VERIFIED, EXTERNAL):
        processed = proc(e)
        if processed is not None:
            out["EventTypeString"] = c.EVENT_TYPE_NAMES[e.type]
            out["ProcessedData"] = processed
    return out


def event_json(
    e: Event, status: str, banks: Iterable[int] | None = None, cache: EventCache | None = None
) -> dict[str, Any]:
    """One event in MAA's shape. ``banks`` limits ``Digests`` to the banks the quote verified."""
    allowed = None if banks is None else frozenset(banks)
    head = {"EventSeq": e.seq, "PcrIndex": e.pcr}
    if cache is None:  # built in place: no shared part to copy
        return _fill(head, e, status, allowed)
    return {**head, **cache.static(e, status, allowed)}


def events_json(
    events: Iterable[Event],
    statuses: Iterable[str],
    banks: Iterable[int] | None = None,
    cache: EventCache | None = None,
) -> dict[str, Any]:
    allowed = None if banks is None else frozenset(banks)
    return {"Events": [event_json(e, s, allowed, cache) for e, s in zip(events, statuses, strict=True)]}


def pcrs_json(pcrs: PcrValues) -> dict[str, Any]:
    """``{"PCRs": [{"Index": i, "Digests": {"SHA1": b64url, "SHA256": b64url}}]}``, index ascending."""
    by_index: dict[int, dict[str, str]] = {}
    for bank, values in pcrs.items():
        name = c.MAA_HASH_NAMES.get(c.HASH_IDS.get(bank, -1), bank.upper())
        for i, v in values.items():
            by_index.setdefault(i, {})[name] = b64url(v)
    return {"PCRs": [{"Index": i, "Digests": by_index[i]} for i in sorted(by_index)]}
