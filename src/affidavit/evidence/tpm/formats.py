"""PCR values and attestations in the forms clients and tools produce.

- tpm2-tools ``tpm2_quote -o`` "serialized" PCR file: a little-endian memory dump of C structs
  (TPML_PCR_SELECTION with 16 padded slots, u32 n, n x TPML_DIGEST of 8 padded TPM2B_DIGESTs);
- tpm2-tools ``-F values``: the digests concatenated in selection order;
- MAA's request JSON ``pcrs: [{"algorithm": 11, "values": [{"index": 0, "digest": b64url}]}]`` (the TPM
  protocol's, ``evidence.tpm.request``);
- go-tpm-tools ``attest.Attestation`` (as decoded JSON) and go-attestation's dump JSON.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.errors import TpmFormatError
from affidavit.evidence.tpm.replay import PcrValues
from affidavit.evidence.tpm.structures import PcrSelection
from affidavit.jose import JoseError
from affidavit.jose.b64 import b64decode_lenient

_SEL_SLOTS = 16
_SEL_SIZE = 8  # u16 hash, u8 sizeofSelect, u8[4] select, 1 byte padding
_DIGEST_SLOTS = 8
_DIGEST_SIZE = 2 + 64
_TPML_DIGEST = 4 + _DIGEST_SLOTS * _DIGEST_SIZE


def _selection_from_le(data: bytes) -> tuple[PcrSelection, ...]:
    (count,) = struct.unpack_from("<I", data, 0)
    if count > _SEL_SLOTS:
        raise TpmFormatError(f"PCR file: {count} banks")
    out: list[PcrSelection] = []
    for k in range(count):
        alg, size = struct.unpack_from("<HB", data, 4 + k * _SEL_SIZE)
        if alg not in c.HASH_SIZES or size > 4:
            raise TpmFormatError(f"PCR file: bank 0x{alg:04x} / sizeofSelect {size}")
        bits = data[4 + k * _SEL_SIZE + 3 : 4 + k * _SEL_SIZE + 3 + size]
        out.append(PcrSelection(alg, tuple(i for i in range(size * 8) if bits[i // 8] >> (i % 8) & 1)))
    return tuple(out)


def _split(digests: Sequence[bytes], selection: Sequence[PcrSelection]) -> PcrValues:
    out: PcrValues = {}
    k = 0
    for sel in selection:
        size = c.HASH_SIZES[sel.hash_alg]
        bank = out.setdefault(sel.bank, {})
        for i in sel.pcrs:
            if k >= len(digests):
                raise TpmFormatError("PCR file: fewer digests than selected PCRs")
            if len(digests[k]) != size:
                raise TpmFormatError(f"PCR file: {sel.bank}:{i} digest is {len(digests[k])} bytes")
            bank[i] = digests[k]
            k += 1
    if k != len(digests):
        raise TpmFormatError("PCR file: more digests than selected PCRs")
    return out


def parse_tools_pcrs(data: bytes) -> tuple[tuple[PcrSelection, ...], PcrValues]:
    """tpm2-tools' default ("serialized") PCR output: the selection and the values."""
    head = 4 + _SEL_SLOTS * _SEL_SIZE
    if len(data) < head + 4:
        raise TpmFormatError("PCR file: too short")
    selection = _selection_from_le(data)
    (n,) = struct.unpack_from("<I", data, head)
    if n > 16 or len(data) != head + 4 + n * _TPML_DIGEST:
        raise TpmFormatError(f"PCR file: {len(data)} bytes do not hold {n} digest lists")
    digests: list[bytes] = []
    for j in range(n):
        base = head + 4 + j * _TPML_DIGEST
        (count,) = struct.unpack_from("<I", data, base)
        if count > _DIGEST_SLOTS:
            raise TpmFormatError(f"PCR file: digest list of {count}")
        for k in range(count):
            (size,) = struct.unpack_from("<H", data, base + 4 + k * _DIGEST_SIZE)
            if size > 64:
                raise TpmFormatError(f"PCR file: digest size {size}")
            start = base + 4 + k * _DIGEST_SIZE + 2
            digests.append(data[start : start + size])
    return selection, _split(digests, selection)


def parse_tools_pcr_values(data: bytes, selection: Sequence[PcrSelection]) -> PcrValues:
    """tpm2-tools ``-F values``: concatenated digests, split by the quote's selection."""
    digests: list[bytes] = []
    pos = 0
    for sel in selection:
        size = c.HASH_SIZES[sel.hash_alg]
        for _ in sel.pcrs:
            digests.append(data[pos : pos + size])
            pos += size
    if pos != len(data):
        raise TpmFormatError(f"PCR values file is {len(data)} bytes, the selection needs {pos}")
    return _split(digests, selection)


def b64_field(text: object, what: str) -> bytes:
    """A base64 field of a client's evidence: base64url or standard, padded or not (clients differ)."""
    try:
        return b64decode_lenient(text, what)
    except JoseError as exc:
        raise TpmFormatError(exc.message) from None


MAX_BANKS = 16
MAX_PCRS = 24  # PCR 0..23, the PC Client profile's


def parse_maa_pcrs(pcrs: Any) -> tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]:
    """MAA request ``pcrs`` list (``[{"algorithm": TPM_ALG_ID, "values": [{"index", "digest"}]}]``) ->
    ``((alg, ((index, digest), ...)), ...)`` in the client's bank order, indices sorted. At most 16 banks
    of known algorithms, each once; indices 0..23, each once; every digest the bank's size."""
    if not isinstance(pcrs, list) or not pcrs or len(pcrs) > MAX_BANKS:
        raise TpmFormatError("pcrs must be a non-empty list of banks")
    banks = []
    seen: set[int] = set()
    for bank in pcrs:
        if not isinstance(bank, dict):
            raise TpmFormatError("each pcrs entry must be an object")
        alg = bank.get("algorithm")
        if not isinstance(alg, int) or isinstance(alg, bool) or alg not in c.HASH_SIZES or alg in seen:
            raise TpmFormatError(f"pcrs bank algorithm {alg!r} is unknown or repeated")
        seen.add(alg)
        values = bank.get("values")
        if not isinstance(values, list) or len(values) > MAX_PCRS:
            raise TpmFormatError(f"pcrs values must be a list of at most {MAX_PCRS} entries")
        out: dict[int, bytes] = {}
        for item in values:
            index = item.get("index") if isinstance(item, dict) else None
            if type(index) is not int or not 0 <= index < MAX_PCRS or index in out:
                raise TpmFormatError("pcrs value index is out of range or repeated")
            digest = b64_field(item.get("digest"), f"PCR {index} digest")
            if len(digest) != c.HASH_SIZES[alg]:
                raise TpmFormatError(f"PCR {index} digest has the wrong size for bank {alg:#06x}")
            out[index] = digest
        banks.append((alg, tuple(sorted(out.items()))))
    return tuple(banks)


def go_tpm_tools_evidence(obj: Mapping[str, Any], event_log: bytes | None = None) -> dict[str, Any]:
    """Keyword arguments for ``TpmEvidence`` from go-tpm-tools' Attestation (hex-decoded JSON form)."""
    quotes = obj["quotes"]
    pcrs = {q["pcr_bank"]: {int(i): bytes.fromhex(h) for i, h in q["pcrs"].items()} for q in quotes}
    pairs = [
        (bytes.fromhex(q["quote_tpms_attest"]), bytes.fromhex(q["signature_tpmt_signature"])) for q in quotes
    ]
    return {
        "quote": pairs[0][0],
        "signature": pairs[0][1],
        "more_quotes": tuple(pairs[1:]),
        "pcrs": pcrs,
        "ak_public": bytes.fromhex(obj["ak_pub_tpmt_public"]),
        "ak_certificate": bytes.fromhex(obj["ak_cert_der"]) if obj.get("ak_cert_der") else None,
        "event_log": event_log,
    }


def go_attestation_evidence(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``TpmEvidence`` from go-attestation's dump JSON (Windows GCE vector)."""
    go_hash = {3: "sha1", 5: "sha256", 6: "sha384", 7: "sha512"}  # Go crypto.Hash values
    pcrs: dict[str, dict[int, bytes]] = {}
    for p in obj["Log"]["PCRs"]:
        pcrs.setdefault(go_hash[p["DigestAlg"]], {})[int(p["Index"])] = base64.b64decode(p["Digest"])
    return {
        "quote": base64.b64decode(obj["Quote"]["Quote"]),
        "signature": base64.b64decode(obj["Quote"]["Signature"]),
        "pcrs": pcrs,
        "ak_public": base64.b64decode(obj["AK"]["Public"]),
        "event_log": base64.b64decode(obj["Log"]["Raw"]),
    }
