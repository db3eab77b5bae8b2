"""The TPM evidence inside a TPM-protocol request's ``att_data`` (``affidavit.service.tpm_protocol``
documents the two shapes): decoded into :class:`ClientEvidence`, not yet verified. Pure; every failure is
a ``TpmFormatError`` (``tpm_malformed``)."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from affidavit.evidence import EvidenceError
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.errors import TpmFormatError
from affidavit.evidence.tpm.formats import b64_field as b64_decode
from affidavit.evidence.tpm.formats import parse_maa_pcrs
from affidavit.evidence.tpm.structures import parse_public
from affidavit.jose import JoseError, loads
from affidavit.jose.b64 import b64decode_lenient

MAX_CUSTOM_CLAIMS = 64


def json_member(value: object, what: str, error: type[Exception] = TpmFormatError) -> object:
    """A JSON member sent either inline or as (base64url of) JSON text; strict JSON (no duplicates).
    ``error``: the caller's error type (the TPM protocol's messages share this reader)."""
    if isinstance(value, str):
        text = value
        if not value.lstrip().startswith(("{", "[")):
            try:
                text = b64decode_lenient(value, what).decode("utf-8", "replace")
            except JoseError as exc:
                raise error(exc.message) from None
        try:
            return loads(text, what)
        except JoseError:
            raise error(f"{what} is not JSON") from None
    return value


@dataclass(frozen=True)
class ClientEvidence:
    """The TPM evidence of one request as the client sent it: decoded, not yet verified."""

    quote: bytes
    signature: bytes
    pcrs: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]
    event_log: bytes | None
    aik_cert: bytes | None
    aik_pub: bytes | dict[str, Any] | None
    custom_claims: tuple[tuple[str, Any, str], ...] = field(default=())

    def pcr_map(self) -> dict[str | int, Mapping[int, bytes]]:
        return {alg: dict(values) for alg, values in self.pcrs}


PCP_MAGIC_V1 = 0x53444150  # 'SDAP' as an MSVC multi-character constant, stored little-endian
PCP_MAGIC_V2 = 0x32444150  # '2DAP'
_PCP_HEADER = struct.Struct("<7I")
_RSASSA, _RSAPSS, _ALG_NULL, _ALG_SHA1 = 0x0014, 0x0016, 0x0010, 0x0004


@dataclass(frozen=True)
class PcpClaim:
    """A Windows platform claim, its signature rebuilt as a TPMT_SIGNATURE."""

    quote: bytes
    signature: bytes
    pcrs: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]
    log: bytes


def _signature_scheme(aik_pub: object) -> tuple[int, int]:
    """(sigAlg, hashAlg) the AK signs quotes with: its fixed scheme, else PCPTool's RSASSA-SHA1."""
    if isinstance(aik_pub, bytes):
        try:
            public = parse_public(aik_pub)
        except EvidenceError as exc:
            raise TpmFormatError(f"aik_pub: {exc.message}") from None
        if public.scheme in (_RSASSA, _RSAPSS) and public.scheme_hash != _ALG_NULL:
            return public.scheme, public.scheme_hash
    return _RSASSA, _ALG_SHA1


def parse_pcp_claim(blob: bytes, aik_pub: object = None) -> PcpClaim:
    """Split a ``PCP_PLATFORM_ATTESTATION_BLOB`` ('SDAP'/'2DAP'); strict about every size."""
    if len(blob) < _PCP_HEADER.size:
        raise TpmFormatError("current_claim platform blob is shorter than its header")
    magic, platform, header_size, cb_pcrs, cb_quote, cb_sig, cb_log = _PCP_HEADER.unpack_from(blob)
    if magic not in (PCP_MAGIC_V1, PCP_MAGIC_V2):
        raise TpmFormatError("current_claim is not a platform attestation blob")
    if platform != 2:
        raise TpmFormatError(f"current_claim is for TPM version {platform}; only TPM 2.0 is supported")
    bank = _ALG_SHA1
    if magic == PCP_MAGIC_V2:
        if header_size < _PCP_HEADER.size + 4 or len(blob) < _PCP_HEADER.size + 4:
            raise TpmFormatError("current_claim '2DAP' header is truncated")
        (bank,) = struct.unpack_from("<I", blob, _PCP_HEADER.size)
    elif header_size < _PCP_HEADER.size:
        raise TpmFormatError("current_claim header size is too small")
    size = c.HASH_SIZES.get(bank)
    if size is None:
        raise TpmFormatError(f"current_claim PCR bank {bank:#x} is not supported")
    if cb_pcrs != 24 * size:
        raise TpmFormatError(f"current_claim holds {cb_pcrs} bytes of PCRs, expected 24 x {size}")
    if header_size + cb_pcrs + cb_quote + cb_sig + cb_log != len(blob):
        raise TpmFormatError("current_claim sizes do not add up to its length")
    if not 0 < cb_sig <= 1024 or cb_quote == 0:
        raise TpmFormatError("current_claim carries no quote or an implausible signature")
    pos = header_size
    pcrs = tuple((i, blob[pos + i * size : pos + (i + 1) * size]) for i in range(24))
    pos += cb_pcrs
    quote = blob[pos : pos + cb_quote]
    pos += cb_quote
    raw_sig = blob[pos : pos + cb_sig]
    log = blob[pos + cb_sig :]
    sig_alg, hash_alg = _signature_scheme(aik_pub)
    signature = struct.pack(">HHH", sig_alg, hash_alg, len(raw_sig)) + raw_sig
    return PcpClaim(quote, signature, ((bank, pcrs),), log)


def _decode_cert(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        body = "".join(line for line in value.strip().splitlines() if not line.startswith("-----"))
        return b64_decode(body, "aik_cert")
    return b64_decode(value, "aik_cert")


def _decode_aik_pub(value: object) -> bytes | dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        parsed = json_member(value, "aik_pub")
        if not isinstance(parsed, dict):
            raise TpmFormatError("aik_pub must be a JWK object or base64url TPM2B_PUBLIC")
        return parsed
    return b64_decode(value, "aik_pub")


def _decode_custom_claims(value: object) -> tuple[tuple[str, Any, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CUSTOM_CLAIMS:
        raise TpmFormatError(
            f"custom_claims must be a list of at most {MAX_CUSTOM_CLAIMS} {{name, value, value_type}}"
        )
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise TpmFormatError("each custom claim needs a name")
        vtype = item.get("value_type", "String")
        val = item.get("value")
        if vtype == "Integer" and isinstance(val, int) and not isinstance(val, bool):
            pass
        elif vtype == "Boolean" and isinstance(val, bool):
            pass
        elif vtype == "String" and isinstance(val, str):
            pass
        else:
            raise TpmFormatError(
                f"custom claim {item['name']!r}: value does not match value_type {vtype!r}"
            )
        out.append((item["name"], val, vtype))
    return tuple(out)


def _tcg_log(logs: object) -> bytes | None:
    if logs is None:
        return None
    if not isinstance(logs, list):
        raise TpmFormatError("logs must be a list of {type, log}")
    found = None
    for entry in logs:
        if not isinstance(entry, dict):
            raise TpmFormatError("each logs entry must be an object")
        if entry.get("type", "TCG") == "TCG":
            if found is not None:
                raise TpmFormatError("more than one TCG log")
            found = b64_decode(entry.get("log"), "TCG log")
    return found


def extract_evidence(att_data: Mapping[str, Any]) -> ClientEvidence:
    """The TPM evidence of ``att_data``, in either the v1 or the v2 shape (see the module docstring)."""
    tpm = att_data.get("tpm_att_data")
    if not isinstance(tpm, dict):
        raise TpmFormatError("att_data.tpm_att_data is missing")
    if "current_attestation" in tpm:
        cur = tpm["current_attestation"]
        if not isinstance(cur, dict):
            raise TpmFormatError("current_attestation must be an object")
        log = _tcg_log(cur.get("logs"))
        claim = cur
        aik_cert, aik_pub = cur.get("aik_cert"), cur.get("aik_pub")
    elif "current_claim" in tpm:
        raw_log = tpm.get("srtm_boot_log")
        log = None if raw_log is None else b64_decode(raw_log, "srtm_boot_log")
        aik_cert, aik_pub = tpm.get("aik_cert"), tpm.get("aik_pub")
        current = tpm["current_claim"]
        if isinstance(current, str) and not current.lstrip().startswith("{"):
            blob = b64_decode(current, "current_claim")
            if blob[:4] in (b"PADS", b"PAD2"):
                pub = _decode_aik_pub(aik_pub)
                pcp = parse_pcp_claim(blob, pub)
                return ClientEvidence(
                    quote=pcp.quote,
                    signature=pcp.signature,
                    pcrs=pcp.pcrs,
                    event_log=log if log is not None else (pcp.log or None),
                    aik_cert=_decode_cert(aik_cert),
                    aik_pub=pub,
                    custom_claims=_decode_custom_claims(att_data.get("custom_claims")),
                )
        claim_obj = json_member(current, "current_claim")
        if not isinstance(claim_obj, dict):
            raise TpmFormatError("current_claim must be a platform claim or JSON {quote, signature, pcrs}")
        claim = claim_obj
    else:
        raise TpmFormatError("tpm_att_data has neither current_claim nor current_attestation")
    return ClientEvidence(
        quote=b64_decode(claim.get("quote"), "quote"),
        signature=b64_decode(claim.get("signature"), "signature"),
        pcrs=parse_maa_pcrs(claim.get("pcrs")),
        event_log=log,
        aik_cert=_decode_cert(aik_cert),
        aik_pub=_decode_aik_pub(aik_pub),
        custom_claims=_decode_custom_claims(att_data.get("custom_claims")),
    )


