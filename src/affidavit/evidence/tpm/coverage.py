"""Does an event's digest cover its data? Replay proves digests only; data a policy reads must be
checked against them, or a forged log (altered data, genuine digests) would pass (tpm.md §0.6).

Each event gets a status:
- ``verified``: the digest in every bank is the hash of the data (or of the part the spec names);
- ``mismatch``: the event type's digest must cover its data and does not -> the log is forged;
- ``unverified``: a type whose digest covers the data only on some firmware (GRUB/shim EV_IPL,
  old-shim authority events, S-CRTM version strings, Windows tags); its data is not trusted;
- ``external``: the digest covers something outside the log (an image, a firmware volume);
- ``not_extended``: EV_NO_ACTION, never extended into a PCR.

Boot variables (EV_EFI_VARIABLE_BOOT/BOOT2) are accepted with digest = H(VariableData), as many
firmwares measure them: their name and GUID are then not covered. The Secure Boot configuration
(EV_EFI_VARIABLE_DRIVER_CONFIG) must be covered whole.
"""

from __future__ import annotations

import struct

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.eventlog import Event

VERIFIED = "verified"
MISMATCH = "mismatch"
UNVERIFIED = "unverified"
EXTERNAL = "external"
NOT_EXTENDED = "not_extended"

# Digest = H(event data), always (PC Client FW Profile; confirmed on every vector log).
STRICT_TYPES = frozenset(
    {
        c.EV_SEPARATOR,
        c.EV_ACTION,
        c.EV_EFI_ACTION,
        c.EV_EFI_GPT_EVENT,
        c.EV_EFI_GPT_EVENT2,
        c.EV_EFI_VARIABLE_DRIVER_CONFIG,
        c.EV_EFI_VARIABLE_BOOT,
        c.EV_EFI_VARIABLE_BOOT2,
    }
)
# Digest covers the data on most, not all, firmware.
OPTIONAL_TYPES = frozenset(
    {
        c.EV_S_CRTM_VERSION,
        c.EV_EFI_VARIABLE_AUTHORITY,
        c.EV_IPL,
        c.EV_EVENT_TAG,
        c.EV_COMPACT_HASH,
        c.EV_PLATFORM_CONFIG_FLAGS,
        c.EV_NONHOST_INFO,
        c.EV_NONHOST_CONFIG,
        c.EV_OMIT_BOOT_DEVICE_EVENTS,
        c.EV_TABLE_OF_DEVICES,
        c.EV_EFI_HCRTM_EVENT,
        c.EV_EFI_SPDM_FIRMWARE_CONFIG,
    }
)
_VARIABLE_TYPES = frozenset({c.EV_EFI_VARIABLE_BOOT, c.EV_EFI_VARIABLE_BOOT2, c.EV_EFI_VARIABLE_AUTHORITY})


def _covers(event: Event, payload: bytes) -> bool:
    if not event.digests:
        return False
    for alg, digest in event.digests.items():
        fn = c.HASH_FUNCS.get(alg)
        if fn is None or fn(payload).digest() != digest:
            return False
    return True


def _variable_data(data: bytes) -> bytes | None:
    if len(data) < 32:
        return None
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    start = 32 + 2 * name_len
    if start + data_len > len(data):
        return None
    return data[start : start + data_len]


def _candidates(event: Event) -> list[bytes]:
    """The payloads the spec (and real firmware) hash for this event type, besides the data itself."""
    data = event.data
    out: list[bytes] = []
    if event.type in _VARIABLE_TYPES:
        vd = _variable_data(data)
        if vd is not None:
            out.append(vd)
    elif event.type == c.EV_IPL:
        # GRUB: "grub_cmd: <cmd>\0" / "kernel_cmdline: ..." -> H(text after the first space[, NUL-less]).
        head, sep, rest = data.partition(b" ")
        if sep and head.endswith(b":"):
            out += [rest.rstrip(b"\x00"), rest]
        out.append(data.rstrip(b"\x00"))
        return [p for p in out if p != data]
    elif event.type in (c.EV_S_CRTM_VERSION, c.EV_EVENT_TAG, c.EV_PLATFORM_CONFIG_FLAGS):
        out.append(data.rstrip(b"\x00"))
    return out


_FUNCS = c.HASH_FUNCS


def check_event(event: Event) -> str:
    """Classify one event (see the module docstring)."""
    t = event.type
    if t == c.EV_NO_ACTION:
        return NOT_EXTENDED
    strict = t in STRICT_TYPES
    if not strict and t not in OPTIONAL_TYPES:
        return EXTERNAL
    if strict and event.digests:
        # fast path: the data itself, every bank
        data = event.data
        for alg, digest in event.digests.items():
            fn = _FUNCS.get(alg)
            if fn is None or fn(data).digest() != digest:
                break
        else:
            return VERIFIED
    payloads = _candidates(event) if strict else _candidates(event) + [event.data]
    for payload in payloads:
        if _covers(event, payload):
            return VERIFIED
    return MISMATCH if strict else UNVERIFIED
