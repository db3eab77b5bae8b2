"""The SEV-SNP extended-report certificate table (configfs-tsm ``auxblob``, ``SNP_GET_EXT_REPORT``).

24-byte entries ``{GUID (16 bytes, RFC 4122 byte order), u32 offset, u32 length}`` ending with an all-zero
entry; offsets count from the table's start; each blob is a DER certificate (or CRL) (sev-snp.md §3.3).
"""

from __future__ import annotations

import uuid

from affidavit.evidence.snp.errors import CERTIFICATE_MALFORMED, SnpError

GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes: "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes: "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes: "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes: "ark",
    uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea").bytes: "crl",
}
MAX_TABLE_BYTES = 64 * 1024
MAX_ENTRIES = 32


def parse_cert_table(data: bytes) -> dict[str, bytes]:
    """Role (vcek, vlek, ask, ark, crl) -> DER; unknown GUIDs are skipped; an empty table gives {}."""
    if not data:
        return {}
    if len(data) > MAX_TABLE_BYTES:
        raise SnpError(f"certificate table larger than {MAX_TABLE_BYTES} bytes", code=CERTIFICATE_MALFORMED)
    out: dict[str, bytes] = {}
    for i in range(MAX_ENTRIES + 1):
        pos = 24 * i
        if pos + 24 > len(data):
            raise SnpError("certificate table has no terminating entry", code=CERTIFICATE_MALFORMED)
        entry = data[pos : pos + 24]
        if not any(entry):
            return out
        guid = entry[:16]
        offset = int.from_bytes(entry[16:20], "little")
        length = int.from_bytes(entry[20:24], "little")
        if offset + length > len(data) or length == 0:
            raise SnpError("certificate table entry points outside the table", code=CERTIFICATE_MALFORMED)
        role = GUIDS.get(guid)
        if role is not None:
            out[role] = data[offset : offset + length]
    raise SnpError(f"certificate table has more than {MAX_ENTRIES} entries", code=CERTIFICATE_MALFORMED)


def build_cert_table(blobs: dict[str, bytes]) -> bytes:
    """The inverse (tests, simulated guests)."""
    by_role = {role: guid for guid, role in GUIDS.items()}
    header_size = 24 * (len(blobs) + 1)
    head, body = b"", b""
    for role, blob in blobs.items():
        offset = header_size + len(body)
        head += by_role[role] + offset.to_bytes(4, "little") + len(blob).to_bytes(4, "little")
        body += blob
    return head + bytes(24) + body
