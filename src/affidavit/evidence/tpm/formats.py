"""PCR values and attestations in the forms clients and tools produce.

- tpm2-tools ``tpm2_quote -o`` "serialized" PCR file: a little-endian memory dump of C structs
  (TPML_PCR_SELECTION with 16 padded slots, u32 n, n x TPML_DIGEST of 8 padded TPM2B_DIGESTs);
- tpm2-tools ``-F values``: the digests concatenated in selection order;
- MAA's request JSON ``pcrs: [{"algorithm": 11, "values": [{"index": 0, "digest": b64url}]}]``;
- go-tpm-tools ``attest.Attestation`` (as decoded JSON) and go-attestation's dump JSON.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.errors import TpmFormatError
from affidavit.evidence.tpm.replay import PcrValues
from affidavit.evidence.tpm.structures import PcrSelection

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


def _b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise TpmFormatError("invalid base64url") from None


def parse_maa_pcrs(pcrs: Any) -> PcrValues:
    """MAA request ``pcrs`` list -> PCR values (duplicate banks or indices rejected)."""
    if not isinstance(pcrs, list):
        raise TpmFormatError("pcrs must be a list")
    out: PcrValues = {}
    for bank in pcrs:
        if not isinstance(bank, dict) or not isinstance(bank.get("algorithm"), int):
            raise TpmFormatError("each pcrs entry needs an integer algorithm")
        name = c.HASH_NAMES.get(bank["algorithm"])
        if name is None or name in out:
            raise TpmFormatError(f"PCR bank {bank['algorithm']} unknown or repeated")
        values: dict[int, bytes] = {}
        if not isinstance(bank.get("values", []), list):
            raise TpmFormatError("PCR values must be a list")
        for v in bank.get("values") or []:
            if (
                not isinstance(v, dict)
                or not isinstance(v.get("index"), int)
                or not isinstance(v.get("digest"), str)
            ):
                raise TpmFormatError("each PCR value needs an integer index and a base64url digest")
            if v["index"] in values or not 0 <= v["index"] < 32:
                raise TpmFormatError(f"PCR index {v['index']} invalid or repeated")
            values[v["index"]] = _b64(v["digest"])
        out[name] = values
    return out


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
