"""Decoders for UEFI event payloads (little-endian): variables, signature lists, images, GPT, blobs.

Each returns ``None`` for data that does not have the expected layout, never raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_GUID = struct.Struct("<IHH")


def guid(raw: bytes) -> str:
    """EFI GUID (mixed-endian) as upper-case text, the way MAA prints it."""
    a, b, c = _GUID.unpack_from(raw, 0)
    tail = raw[8:16].hex().upper()
    return f"{a:08X}-{b:04X}-{c:04X}-{tail[:4]}-{tail[4:]}"


@dataclass(frozen=True, slots=True)
class UefiVariable:
    guid: str
    name: str
    data: bytes


def parse_variable(data: bytes) -> UefiVariable | None:
    """UEFI_VARIABLE_DATA {GUID, u64 name chars, u64 data length, CHAR16 name[], u8 data[]}."""
    if len(data) < 32:
        return None
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    start = 32 + 2 * name_len
    if name_len > 1024 or start + data_len > len(data):
        return None
    try:
        name = data[32:start].decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    return UefiVariable(guid(data[:16]), name, data[start : start + data_len])


@dataclass(frozen=True, slots=True)
class SignatureList:
    """One EFI_SIGNATURE_LIST: entry ``i`` is (``owners[i]``, ``data[i]``), each data ``signature_size``
    bytes (kept as parallel tuples so encoders can treat the data in one pass)."""

    signature_type: str
    signature_size: int
    owners: tuple[str, ...]  # SignatureOwner GUIDs
    data: tuple[bytes, ...]  # SignatureData


def parse_signature_lists(data: bytes) -> list[SignatureList] | None:
    """EFI_SIGNATURE_LIST[] as found in PK/KEK/db/dbx."""
    out: list[SignatureList] = []
    owners: dict[bytes, str] = {}
    pos = 0
    while pos < len(data):
        if len(data) - pos < 28:
            return None
        list_size, header_size, sig_size = struct.unpack_from("<III", data, pos + 16)
        if list_size < 28 + header_size or pos + list_size > len(data) or sig_size < 16:
            return None
        body = pos + 28 + header_size
        end = pos + list_size
        if (end - body) % sig_size:
            return None
        # One C-level pass over the entries (a dbx has hundreds); owner GUIDs repeat, so each is
        # formatted once.
        entries = struct.iter_unpack(f"16s{sig_size - 16}s", data[body:end])
        raw_owners, items = zip(*entries, strict=True) if end > body else ((), ())
        for raw in set(raw_owners).difference(owners):
            owners[raw] = guid(raw)
        out.append(
            SignatureList(
                guid(data[pos : pos + 16]), sig_size - 16, tuple(map(owners.__getitem__, raw_owners)), items
            )
        )
        pos = end
    return out


@dataclass(frozen=True, slots=True)
class ImageLoad:
    location: int
    length: int
    link_time_address: int
    device_path: bytes


def parse_image_load(data: bytes) -> ImageLoad | None:
    if len(data) < 32:
        return None
    loc, length, link, dp_len = struct.unpack_from("<QQQQ", data, 0)
    if 32 + dp_len > len(data):
        return None
    return ImageLoad(loc, length, link, data[32 : 32 + dp_len])


def parse_firmware_blob(data: bytes) -> tuple[int, int] | None:
    """UEFI_PLATFORM_FIRMWARE_BLOB {u64 base, u64 length}."""
    if len(data) != 16:
        return None
    base, length = struct.unpack_from("<QQ", data, 0)
    return base, length


@dataclass(frozen=True, slots=True)
class GptPartition:
    type_guid: str
    unique_guid: str
    starting_lba: int
    ending_lba: int
    attributes: int
    name: str


@dataclass(frozen=True, slots=True)
class Gpt:
    signature: int
    revision: int
    header_size: int
    header_crc32: int
    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: str
    partition_entry_lba: int
    number_of_partition_entries: int
    size_of_partition_entry: int
    partition_entry_array_crc32: int
    partitions: tuple[GptPartition, ...]


def parse_gpt(data: bytes) -> Gpt | None:
    """UEFI_GPT_DATA {EFI_PARTITION_TABLE_HEADER (92), u64 NumberOfPartitions, EFI_PARTITION_ENTRY[]}."""
    if len(data) < 100:
        return None
    sig, rev, hsize, crc, _res, my, alt, first, last = struct.unpack_from("<QIIIIQQQQ", data, 0)
    disk = guid(data[56:72])
    entry_lba, n_entries, entry_size, array_crc = struct.unpack_from("<QIII", data, 72)
    (count,) = struct.unpack_from("<Q", data, 92)
    if entry_size < 128 or 100 + count * entry_size > len(data):
        return None
    parts: list[GptPartition] = []
    for i in range(count):
        p = 100 + i * entry_size
        start, end, attrs = struct.unpack_from("<QQQ", data, p + 32)
        name = data[p + 56 : p + 128].decode("utf-16-le", "replace").split("\x00", 1)[0]
        parts.append(
            GptPartition(guid(data[p : p + 16]), guid(data[p + 16 : p + 32]), start, end, attrs, name)
        )
    return Gpt(
        sig,
        rev,
        hsize,
        crc,
        my,
        alt,
        first,
        last,
        disk,
        entry_lba,
        n_entries,
        entry_size,
        array_crc,
        tuple(parts),
    )
