"""The batched encoders behind the cold path give exactly what the obvious per-item code gives."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm import parse_event_log
from affidavit.evidence.tpm.coverage import check_event
from affidavit.evidence.tpm.eventlog import Event
from affidavit.evidence.tpm.maa_json import b64url_many, event_json
from affidavit.evidence.tpm.uefi import guid, parse_signature_lists, parse_variable
from affidavit.jose import b64url
from tests.conftest import VECTORS


def _reference_b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@given(
    st.integers(min_value=0, max_value=70).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.binary(min_size=n, max_size=n), max_size=20))
    )
)
def test_b64url_many_equals_one_by_one(case: tuple[int, list[bytes]]) -> None:
    size, items = case
    assert b64url_many(items, size) == [_reference_b64url(x) for x in items]
    assert [b64url(x) for x in items] == [_reference_b64url(x) for x in items]


def _reference_lists(data: bytes) -> list[tuple[str, list[tuple[str, bytes]]]] | None:
    """EFI_SIGNATURE_LIST[] the slow, obvious way."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 28:
            return None
        list_size, header_size, sig_size = struct.unpack_from("<III", data, pos + 16)
        if list_size < 28 + header_size or pos + list_size > len(data) or sig_size < 16:
            return None
        body = pos + 28 + header_size
        if (list_size - 28 - header_size) % sig_size:
            return None
        sigs = []
        for start in range(body, pos + list_size, sig_size):
            sigs.append((guid(data[start : start + 16]), data[start + 16 : start + sig_size]))
        out.append((guid(data[pos : pos + 16]), sigs))
        pos += list_size
    return out


def _as_reference(data: bytes) -> list[tuple[str, list[tuple[str, bytes]]]] | None:
    lists = parse_signature_lists(data)
    if lists is None:
        return None
    for sl in lists:
        assert all(len(d) == sl.signature_size for d in sl.data)
    return [(sl.signature_type, list(zip(sl.owners, sl.data, strict=True))) for sl in lists]


def _signature_list(owner: bytes, items: list[bytes], size: int, header: bytes = b"") -> bytes:
    body = b"".join(owner + x for x in items)
    return (
        bytes(range(16))
        + struct.pack("<III", 28 + len(header) + len(body), len(header), 16 + size)
        + header
        + body
    )


@given(st.binary(max_size=400))
def test_signature_lists_of_any_bytes(data: bytes) -> None:
    assert _as_reference(data) == _reference_lists(data)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),
            st.integers(min_value=0, max_value=6),
            st.binary(min_size=16, max_size=16),
            st.binary(max_size=5),
        ),
        max_size=4,
    )
)
def test_signature_lists_well_formed(specs: list[tuple[int, int, bytes, bytes]]) -> None:
    data = b"".join(
        _signature_list(owner, [bytes([i]) * size for i in range(count)], size, header)
        for size, count, owner, header in specs
    )
    parsed = _as_reference(data)
    assert parsed == _reference_lists(data)
    assert parsed is not None and len(parsed) == len(specs)


def _driver_config_events() -> list[tuple[Path, Event]]:
    found = []
    for path in sorted((VECTORS / "tpm").rglob("*")):
        if not path.is_file() or path.suffix not in {".bin", ""} or path.stat().st_size > 2_000_000:
            continue
        try:
            log = parse_event_log(path.read_bytes())
        except Exception:  # noqa: BLE001 - not every vector file is an event log
            continue
        found += [(path, e) for e in log.events if e.type == c.EV_EFI_VARIABLE_DRIVER_CONFIG]
    return found


def test_real_secure_boot_databases_decode_entry_by_entry() -> None:
    """Every PK/KEK/db/dbx in the real logs: ProcessedData lists each entry's owner and data exactly."""
    events = _driver_config_events()
    checked = 0
    for _, e in events:
        var = parse_variable(e.data)
        out = event_json(e, check_event(e))
        value = out.get("ProcessedData", {}).get("VariableData")
        reference = _reference_lists(var.data) if var is not None and var.data else None
        if not isinstance(value, list) or reference is None:
            continue
        assert [sl["SignatureType"] for sl in value] == [t for t, _ in reference]
        for sl, (_, sigs) in zip(value, reference, strict=True):
            assert [(s["SignatureOwner"], s["SignatureData"]) for s in sl["Signatures"]] == [
                (o, _reference_b64url(d)) for o, d in sigs
            ]
            checked += len(sigs)
    assert checked > 300  # at least one real dbx
