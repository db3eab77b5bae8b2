"""Request decoding: bounded bodies, media types, lenient base64 and the attest request shapes.

Everything here turns untrusted bytes into dataclasses or raises :class:`ServiceError` (400/413/415);
no other exception escapes, which the hypothesis tests check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from affidavit import strict_json
from affidavit.jose import JoseError
from affidavit.jose.b64 import b64decode_lenient as jose_b64decode_lenient
from affidavit.service.errors import INVALID_PARAMETER, ServiceError

API_VERSIONS = frozenset({"2020-10-01", "2022-08-01", "2025-06-01"})


_ACCEPTED_QUERIES: set[bytes] = set()  # query strings already found acceptable (clients repeat theirs)
_MAX_ACCEPTED_QUERIES = 256


def check_api_version(request: Request) -> None:
    """Accept the versions the SDKs send (and none at all); refuse the rest."""
    raw = request.scope.get("query_string", b"")
    if raw in _ACCEPTED_QUERIES:
        return
    versions = request.query_params.getlist("api-version")
    if len(versions) <= 1 and (not versions or versions[0] in API_VERSIONS):
        if len(_ACCEPTED_QUERIES) >= _MAX_ACCEPTED_QUERIES:
            _ACCEPTED_QUERIES.clear()
        _ACCEPTED_QUERIES.add(raw)
        return
    if len(versions) > 1 or (versions and versions[0] not in API_VERSIONS):
        raise ServiceError(
            f"unsupported api-version {versions!r}; supported: {', '.join(sorted(API_VERSIONS))}",
            code=INVALID_PARAMETER,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ServiceError("invalid Content-Length") from None
        if size > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ServiceError:
    return ServiceError(f"request body larger than {limit} bytes", code="RequestEntityTooLarge", status=413)


def media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower()


def require_media(request: Request, *allowed: str) -> None:
    """Refuse (415) a body whose declared type is not one of ``allowed``; a missing type is tolerated."""
    got = media_type(request)
    if got is not None and got not in allowed:
        raise ServiceError(
            f"unsupported Content-Type {got!r}; expected {' or '.join(allowed)}",
            code="UnsupportedMediaType",
            status=415,
        )


def parse_json(body: bytes) -> Any:
    """Every request body and JSON field is read here: one strictness (:mod:`affidavit.strict_json`)."""
    try:
        return strict_json.loads(body.decode("utf-8"))
    except (strict_json.DuplicateMember, strict_json.NonFiniteNumber) as exc:
        raise ServiceError(f"request body is not valid JSON: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ServiceError("request body is not valid JSON") from None


def b64decode_lenient(text: object, what: str) -> bytes:
    """base64url or standard base64, padded or not (msrest sends url-safe without padding)."""
    try:
        return jose_b64decode_lenient(text, what)
    except JoseError as exc:
        raise ServiceError(exc.message) from None


@dataclass(frozen=True)
class DataField:
    """``runtimeData`` / ``initTimeData``: bytes (None when the SDK omitted them) and how to read them."""

    data: bytes | None
    json_value: Any | None  # the parsed JSON when dataType is JSON
    data_type: str  # "Binary" | "JSON"


@dataclass(frozen=True)
class AttestRequest:
    evidence: bytes
    runtime: DataField | None
    inittime: DataField | None
    draft_policy: str | None
    nonce: str | int | None  # an int only from a sidecar-quirks type (normalise_sidecar_body)


def _data_field(obj: Any, name: str) -> DataField | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ServiceError(f"{name} must be an object {{data, dataType}}")
    data_type = obj.get("dataType", "Binary")
    if not isinstance(data_type, str) or data_type.lower() not in ("binary", "json"):
        raise ServiceError(f"{name}.dataType must be Binary or JSON")
    data_type = "JSON" if data_type.lower() == "json" else "Binary"
    raw = obj.get("data")
    if raw is None:  # SDK 1.0.0's inittime_json bug sends no data: tolerated, nothing to bind
        return DataField(None, None, data_type)
    data = b64decode_lenient(raw, f"{name}.data")
    value = None
    if data_type == "JSON":
        value = parse_json(data)
        if value is None:
            raise ServiceError(f"{name}.data of dataType JSON must not be null")
    return DataField(data, value, data_type)


def normalise_sidecar_body(body: bytes) -> tuple[bytes, str | int | None]:
    """confidential-sidecar's quirks (``AttestationType.sidecar_quirks``): a numeric ``nonce`` (returned
    as sent, removed from the body) and ``{"data": "", "dataType": ""}`` meaning "not given"."""
    try:
        obj = parse_json(body)
    except ServiceError:
        return body, None  # parse_attest_request reports it
    if not isinstance(obj, dict):
        return body, None
    nonce = obj.get("nonce")
    if isinstance(nonce, bool) or not (nonce is None or isinstance(nonce, str | int)):
        raise ServiceError("nonce must be a string or a number", code=INVALID_PARAMETER)
    obj.pop("nonce", None)
    for name in ("runtimeData", "initTimeData"):
        value = obj.get(name)
        if isinstance(value, dict) and not value.get("data"):
            obj.pop(name)
    return json.dumps(obj).encode(), nonce


def parse_attest_request(body: bytes, evidence_field: str) -> AttestRequest:
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise ServiceError("request body must be a JSON object")
    if evidence_field not in obj:
        raise ServiceError(f"missing {evidence_field!r}")
    evidence = b64decode_lenient(obj[evidence_field], evidence_field)
    if not evidence:
        raise ServiceError(f"{evidence_field!r} is empty")
    draft = obj.get("draftPolicyForAttestation")
    if draft is not None and not isinstance(draft, str):
        raise ServiceError("draftPolicyForAttestation must be a string")
    nonce = obj.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise ServiceError("nonce must be a string")
    return AttestRequest(
        evidence=evidence,
        runtime=_data_field(obj.get("runtimeData"), "runtimeData"),
        inittime=_data_field(obj.get("initTimeData"), "initTimeData"),
        draft_policy=draft,
        nonce=nonce,
    )
