"""MAA's error contract: ``{"error":{"code","message"}}`` with a status the Azure SDK never retries.

Every error a layer raises on purpose maps to a 4xx here; only a bug reaches the 500 catch-all.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit import __version__
from affidavit.errors import AffidavitError

log = logging.getLogger("affidavit.service")

SERVICE_VERSION = f"{__version__}.affidavit"
JSON_MEDIA = "application/json; charset=utf-8"

# MAA's codes (maa-api.md §1).
INVALID_PARAMETER = "InvalidParameter"
INVALID_OPERATION = "InvalidOperation"
POLICY_EVALUATION = "PolicyEvaluationError"
POLICY_PARSING = "PolicyParsingError"
UNAUTHORIZED = "Unauthorized"
SERVICE_UNAVAILABLE = "ServiceUnavailable"


class ServiceError(AffidavitError):
    """A request the service refuses, with its HTTP status and MAA error code."""

    code = INVALID_PARAMETER

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int = 400,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.details = details  # extra members of the error object (Affidavit's draft-policy trace)


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    return JSONResponse(
        {"error": {**(details or {}), "code": code, "message": message}},
        status_code=status,
        media_type=JSON_MEDIA,
        headers={"x-ms-error-code": code, "x-ms-maa-service-version": SERVICE_VERSION},
    )


# The one error table (architecture.md, "Errors"): which HTTP status and MAA code every layer's error
# answers with. Rows are (layer error class path, status, MAA code), most specific class first; CODE_ROWS
# override a row for single codes. ``ServiceError`` carries its own status and MAA code. An error no row
# covers is 400 InvalidParameter; anything that is not an ``AffidavitError`` is a bug (500).
LAYER_ROWS: tuple[tuple[str, int, str], ...] = (
    ("affidavit.store:StoreError", 503, SERVICE_UNAVAILABLE),  # the database, not the request: retryable
    ("affidavit.evidence:EvidenceError", 400, INVALID_PARAMETER),
    ("affidavit.collateral:CollateralError", 400, INVALID_PARAMETER),
    ("affidavit.policy:PolicyParsingError", 400, POLICY_PARSING),
    ("affidavit.policy:PolicyError", 400, POLICY_EVALUATION),
    ("affidavit.tokens:TokenError", 400, INVALID_OPERATION),
)
CODE_ROWS: dict[tuple[str, str], tuple[int, str]] = {
    # upstream, not the quote: a retryable outage (503 + Retry-After, handle_affidavit_error)
    ("affidavit.collateral:CollateralError", "collateral_unavailable"): (503, SERVICE_UNAVAILABLE),
    # maa-api §7.2: a management JWS is InvalidOperation, "or InvalidParameter for a bad chain".
    ("affidavit.tokens:TokenError", "bad_certificate"): (400, INVALID_PARAMETER),
    ("affidavit.tokens:TokenError", "signer_expired"): (400, INVALID_PARAMETER),
    ("affidavit.tokens:TokenError", "signer_not_yet_valid"): (400, INVALID_PARAMETER),
}
DEFAULT_ROW = (400, INVALID_PARAMETER)


def _resolve(path: str) -> type[AffidavitError]:
    import importlib

    module, _, name = path.partition(":")
    cls: type[AffidavitError] = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AffidavitError)
    return cls


_ROWS: list[tuple[str, type[AffidavitError], int, str]] = []


def classify(exc: AffidavitError) -> tuple[int, str]:
    """The HTTP status and MAA code for an error raised by any layer (the table above)."""
    if isinstance(exc, ServiceError):
        return exc.status, exc.code
    if not _ROWS:
        _ROWS.extend((path, _resolve(path), status, code) for path, status, code in LAYER_ROWS)
    for path, cls, status, code in _ROWS:
        if isinstance(exc, cls):
            return CODE_ROWS.get((path, exc.code), (status, code))
    return DEFAULT_ROW


def as_service_error(exc: AffidavitError) -> ServiceError:
    """A layer's error as the ``ServiceError`` a client gets (same message, the table's status and code)."""
    status, code = classify(exc)
    return ServiceError(exc.message, code=code, status=status)


# What clients are told of an outage: never the host, port or driver message (those go to the log).
OUTAGE_MESSAGES = {
    "database": "the service's database is unavailable; retry later",
    "collateral": "Intel collateral for this platform cannot be fetched right now (the collateral service is "
    "unreachable and nothing valid is cached); retry later",
}
RETRY_AFTER = {"database": "5", "collateral": "30"}


async def handle_affidavit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AffidavitError)
    status, code = classify(exc)
    if status == 503 and code == SERVICE_UNAVAILABLE and not isinstance(exc, ServiceError):
        from affidavit.store import StoreError

        what = "database" if isinstance(exc, StoreError) else "collateral"
        if what == "database":  # one log line per outage (service.outage), not one per request
            state = getattr(request.app.state, "affidavit", None)
            outages = getattr(state, "outages", None)
            if outages is not None:
                outages.failed(what, exc, "; management calls answer 503")
            else:
                log.error("%s %s failed: %s", request.method, request.url.path, exc)
        response = error_response(status, code, OUTAGE_MESSAGES[what])
        response.headers["retry-after"] = RETRY_AFTER[what]
        return response
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(status, code, exc.message, getattr(exc, "details", None))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    status = int(getattr(exc, "status_code", 400))
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, INVALID_PARAMETER)
    message = {404: "no such resource", 405: f"method {request.method} not allowed here"}.get(
        status, str(getattr(exc, "detail", "bad request"))
    )
    return error_response(status, code, message)


async def handle_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away (or its body timed out, ``service.connections``) mid-request: nobody reads
    this answer, and it is not a bug."""
    return error_response(408, "RequestTimeout", "the request was not received in full")


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: a bug. Logged with its traceback; the client sees a clean 500 and no internals."""
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "InternalError", "internal error; see the service log")
