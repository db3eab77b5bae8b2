"""TCG PC Client event log parsing (little-endian): the SHA-1 legacy format and the crypto-agile one.

Tolerates what real firmware produces (trailing zero padding, a Spec ID event whose size omits the
vendor info, a lone non-Spec-ID EV_NO_ACTION) and nothing else: every size is bounded by the buffer.

Bounded before any replay, data check or SIPA decoding: at most ``MAX_EVENTS`` records and
``MAX_EVENT_DATA`` bytes of data per record. The largest real logs in the test vectors have 158 records
(a Dell host; the largest Windows one, a physical machine with option ROMs, has 61) and 36,363 bytes in
one record (a Windows SIPA tag); a 1 MiB log of minimal records would otherwise hold about 14,000
crypto-agile or 29,000 SHA-1 records, each replayed, checked and rendered to JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.errors import EventLogError

SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
MAX_PCR = 31  # higher indices occur only on EV_NO_ACTION records (Windows logs PCR 0xFFFFFFFF)
MAX_EVENTS = 4096  # records after the Spec ID header: 26x the largest real log seen (158); servers with many
# devices and boot entries log more than the vectors do; a log at the limit parses, replays and checks in
# 20-40 ms of CPU
MAX_EVENT_DATA = 256 * 1024  # bytes of data in one record: 7x the largest real one seen (36,363)
_LEGACY_HEADER = struct.Struct("<II20sI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_II = struct.Struct("<II")


class Event(NamedTuple):
    """One measured event. ``digests`` maps a hash algorithm id to the digest extended into that bank.

    A NamedTuple rather than a dataclass: real logs have hundreds of events, and construction cost
    dominates parsing.
    """

    seq: int  # record number in the log (the Spec ID header, when present, is record 0)
    pcr: int
    type: int
    digests: dict[int, bytes]
    data: bytes
    offset: int

    @property
    def type_name(self) -> str | None:
        return c.EVENT_TYPE_NAMES.get(self.type)


@dataclass(frozen=True, slots=True)
class SpecId:
    """TCG_EfiSpecIDEvent: the crypto-agile header naming every bank and its digest size."""

    platform_class: int
    version: tuple[int, int, int]  # major, minor, errata
    uintn_size: int
    algorithms: tuple[tuple[int, int], ...]  # (TPM_ALG_ID, digest size)
    vendor_info: bytes


@dataclass(frozen=True)
class EventLog:
    format: str  # "crypto-agile" | "sha1-legacy"
    spec_id: SpecId | None
    banks: tuple[int, ...]  # hash algorithm ids, in Spec ID order
    events: tuple[Event, ...]  # every record after the Spec ID header
    startup_locality: int | None
    trailing: int  # ignored bytes after the last event (zero padding)
    size: int

    @property
    def bank_names(self) -> tuple[str, ...]:
        return tuple(c.bank_name(a) for a in self.banks)


def _fail(message: str, offset: int) -> EventLogError:
    return EventLogError(f"event log: {message} (at offset {offset})")


def _parse_spec_id(data: bytes, offset: int) -> tuple[SpecId, int]:
    """Parse the Spec ID payload; returns it and how many bytes past ``data`` the vendor info ran."""
    if len(data) < 16 + 4 + 4 + 4:
        raise _fail("Spec ID event too short", offset)
    platform_class, minor, major, errata, uintn, count = struct.unpack_from("<IBBBBI", data, 16)
    if major != 2:
        raise _fail(f"Spec ID version {major}.{minor} is not 2.x", offset)
    if not 1 <= count <= 16:
        raise _fail(f"Spec ID lists {count} algorithms", offset)
    pos = 28
    if pos + 4 * count > len(data):
        raise _fail("Spec ID algorithm table truncated", offset)
    algs: list[tuple[int, int]] = []
    for _ in range(count):
        alg, size = struct.unpack_from("<HH", data, pos)
        pos += 4
        if size == 0 or size > 64:
            raise _fail(f"Spec ID digest size {size} for algorithm 0x{alg:04x}", offset)
        known = c.HASH_SIZES.get(alg)
        if known is not None and known != size:
            raise _fail(f"Spec ID gives {c.bank_name(alg)} {size} bytes, not {known}", offset)
        if any(a == alg for a, _ in algs):
            raise _fail(f"Spec ID lists {c.bank_name(alg)} twice", offset)
        algs.append((alg, size))
    vendor = b""
    overrun = 0
    if pos < len(data):
        vsize = data[pos]
        vendor = data[pos + 1 : pos + 1 + vsize]
        overrun = max(0, pos + 1 + vsize - len(data))
    spec = SpecId(platform_class, (major, minor, errata), uintn, tuple(algs), vendor)
    return spec, overrun


def _check_record(seq: int, size: int, pos: int) -> None:
    """Refuse record ``seq`` past ``MAX_EVENTS``, or its data past ``MAX_EVENT_DATA``."""
    if seq > MAX_EVENTS:
        raise _fail(f"more than {MAX_EVENTS} events", pos)
    if size > MAX_EVENT_DATA:
        raise _fail(f"event data of {size} bytes exceeds {MAX_EVENT_DATA}", pos)


def _all_zero(buf: bytes, start: int) -> bool:
    return buf.count(0, start) == len(buf) - start


def parse_event_log(data: bytes) -> EventLog:
    """Parse a TCG event log (``binary_bios_measurements`` / WBCL), either format."""
    buf = bytes(data)
    n = len(buf)
    if n < _LEGACY_HEADER.size:
        raise _fail(f"{n} bytes is too short for an event log", 0)
    pcr, etype, digest, size = _LEGACY_HEADER.unpack_from(buf, 0)
    first_data_at = _LEGACY_HEADER.size
    if size > n - first_data_at:
        raise _fail(f"first event claims {size} bytes of data, {n - first_data_at} left", 0)
    first_data = buf[first_data_at : first_data_at + size]
    if pcr == 0 and etype == c.EV_NO_ACTION and first_data.startswith(SPEC_ID_SIGNATURE):
        if digest != bytes(20):
            raise _fail("Spec ID event digest is not zero", 0)
        spec, overrun = _parse_spec_id(first_data, 0)
        end = first_data_at + size
        # tpm2-tools' specid-vendordata fixture: the vendor info lies outside EventSize; skip it.
        if overrun and end + overrun <= n and n - end < 16:
            end += overrun
        return _parse_agile(buf, end, spec)
    return _parse_legacy(buf)


def _parse_legacy(buf: bytes) -> EventLog:
    n = len(buf)
    pos = 0
    seq = 0
    events: list[Event] = []
    locality: int | None = None
    hsize = _LEGACY_HEADER.size
    unpack = _LEGACY_HEADER.unpack_from
    sha1 = c.ALG_SHA1
    while pos < n:
        if n - pos < hsize:
            if _all_zero(buf, pos):
                break
            raise _fail(f"{n - pos} trailing bytes are not a complete event", pos)
        pcr, etype, digest, size = unpack(buf, pos)
        if pcr == 0 and etype == 0 and size == 0 and _all_zero(buf, pos):
            break
        if pcr > MAX_PCR and etype != c.EV_NO_ACTION:
            raise _fail(f"PCR index {pcr}", pos)
        _check_record(seq + 1, size, pos)
        start = pos + hsize
        if size > n - start:
            raise _fail(f"event data of {size} bytes overruns the log", pos)
        edata = buf[start : start + size]
        if etype == c.EV_NO_ACTION and pcr == 0 and edata[:16] == STARTUP_LOCALITY_SIGNATURE and size == 17:
            locality = edata[16]
        events.append(Event(seq, pcr, etype, {sha1: digest}, edata, pos))
        seq += 1
        pos = start + size
    return EventLog("sha1-legacy", None, (sha1,), tuple(events), locality, n - pos, n)


def _parse_agile(buf: bytes, pos: int, spec: SpecId) -> EventLog:
    n = len(buf)
    sizes = dict(spec.algorithms)
    nbanks = len(sizes)
    events: list[Event] = []
    locality: int | None = None
    seq = 1
    u32 = _U32.unpack_from
    u16 = _U16.unpack_from
    ii = _II.unpack_from
    # Fast path: the usual record carries every Spec ID bank, in Spec ID order, so its header has a
    # fixed layout that one struct call reads; anything else goes through the general loop below.
    fixed = struct.Struct("<III" + "".join(f"H{size}s" for _, size in spec.algorithms) + "I")
    fixed_unpack = fixed.unpack_from
    fixed_size = fixed.size
    order = tuple(a for a, _ in spec.algorithms)
    no_action = c.EV_NO_ACTION
    while pos < n:
        if n - pos >= fixed_size:
            head = fixed_unpack(buf, pos)
            pcr, etype, count = head[0], head[1], head[2]
            if count == nbanks and head[3:-1:2] == order and (pcr <= MAX_PCR or etype == no_action):
                size = head[-1]
                p = pos + fixed_size
                if seq > MAX_EVENTS or size > MAX_EVENT_DATA:
                    _check_record(seq, size, pos)
                if size <= n - p:
                    edata = buf[p : p + size]
                    if (
                        etype == no_action
                        and pcr == 0
                        and size == 17
                        and edata[:16] == STARTUP_LOCALITY_SIGNATURE
                    ):
                        locality = edata[16]
                    events.append(
                        Event(seq, pcr, etype, dict(zip(order, head[4:-1:2], strict=True)), edata, pos)
                    )
                    seq += 1
                    pos = p + size
                    continue
        if n - pos < 12:
            if _all_zero(buf, pos):
                break
            raise _fail(f"{n - pos} trailing bytes are not a complete event", pos)
        pcr, etype = ii(buf, pos)
        (count,) = u32(buf, pos + 8)
        if count == 0 and pcr == 0 and etype == 0 and _all_zero(buf, pos):
            break
        if pcr > MAX_PCR and etype != c.EV_NO_ACTION:
            raise _fail(f"PCR index {pcr}", pos)
        if not 0 < count <= nbanks:
            raise _fail(f"event has {count} digests, the Spec ID lists {nbanks} banks", pos)
        p = pos + 12
        digests: dict[int, bytes] = {}
        for _ in range(count):
            if p + 2 > n:
                raise _fail("digest list truncated", pos)
            (alg,) = u16(buf, p)
            dsize = sizes.get(alg)
            if dsize is None:
                raise _fail(f"digest algorithm 0x{alg:04x} is not in the Spec ID", pos)
            if alg in digests:
                raise _fail(f"two {c.bank_name(alg)} digests in one event", pos)
            p += 2
            if p + dsize > n:
                raise _fail("digest truncated", pos)
            digests[alg] = buf[p : p + dsize]
            p += dsize
        if p + 4 > n:
            raise _fail("event size truncated", pos)
        (size,) = u32(buf, p)
        _check_record(seq, size, pos)
        p += 4
        if size > n - p:
            raise _fail(f"event data of {size} bytes overruns the log", pos)
        edata = buf[p : p + size]
        if etype == c.EV_NO_ACTION and pcr == 0 and edata[:16] == STARTUP_LOCALITY_SIGNATURE and size == 17:
            locality = edata[16]
        events.append(Event(seq, pcr, etype, digests, edata, pos))
        seq += 1
        pos = p + size
    banks = tuple(a for a, _ in spec.algorithms)
    return EventLog("crypto-agile", spec, banks, tuple(events), locality, n - pos, n)
