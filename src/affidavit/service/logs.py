"""The service's log lines: JSON (one object a line, the default) or text, with time and level, secrets
redacted, plus the access log (one line per request) and the audit log (one line per management change).

Loggers: ``affidavit.access`` (request id, route, status, duration, attestation type, outcome, error
code, client address), ``affidavit.audit`` (caller, signer, action, attestation type, old and new policy
hash) and everything else (``affidavit.*``, uvicorn's). Fields beyond the message travel in
``extra={"fields": {...}}``.

Nothing a request carries in its headers or body is logged, and as a second line of defence every line is
scrubbed of the secret values this process knows (:func:`register_secrets`: the admin token, the metrics
token, the PCS API key, any configured value whose name says token, key, pin, password or secret, and the
password of the database URL) before it is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

ACCESS_LOGGER = "affidavit.access"
AUDIT_LOGGER = "affidavit.audit"
FORMATS = ("json", "text")
REDACTED = "[redacted]"
_SECRET_WORDS = ("token", "key", "pin", "password", "secret", "credential")
_MIN_SECRET = 6  # shorter values are not secrets worth scrubbing (and would mangle ordinary words)

_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values that must never appear in a log line (longest first, so overlaps scrub whole)."""
    global _secrets
    with _secrets_lock:
        merged = set(_secrets) | {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET}
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def config_secrets(config: Any) -> list[str]:
    """The secret values of a ``ServiceConfig``: every string field (and ``extra`` entry) whose name
    says it is a credential, the contents of ``*_file`` secrets already read, and the database password."""
    values: list[str] = []
    items: list[tuple[str, Any]] = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)]
    items += list(getattr(config, "extra", {}).items())
    for name, value in items:
        lowered = name.lower()
        if isinstance(value, str) and any(w in lowered for w in _SECRET_WORDS) and not lowered.endswith(
            ("_file", "_path", "_dir", "_size")
        ):
            values.append(value)
    url = getattr(config, "database_url", None)
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            values.append(password)
    return values


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


_second: tuple[int, str] = (-1, "")


def _time(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds; the part up to the second is formatted once a second."""
    global _second
    whole = int(record.created)
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((record.created - whole) * 1000):03d}Z"


def lean_records() -> None:
    """Skip what LogRecord gathers and no formatter here prints (thread, process names): the access log
    writes a record per request. The standard switches of the logging module, set in service processes."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


# datetimes and dataclasses as json's default=str writes them; non-str keys as json converts them
_ORJSON_LINE = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_line(obj: Mapping[str, Any]) -> str:
    """One log object as one line of JSON: orjson (a twentieth of json's time, and the access log writes a
    line per request), else ``json.dumps`` for what orjson refuses (integers beyond 64 bits). Compact
    separators; NaN and infinities are written as ``null`` (json would write non-JSON)."""
    try:
        return orjson.dumps(obj, default=str, option=_ORJSON_LINE).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return scrub(json_line(out))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger message key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname, record.name, record.getMessage()]
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            parts += [f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


def log_config(log_format: str = "json", level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn (each worker applies it): every logger, uvicorn's too,
    through one formatter on stderr. The access and audit loggers stay at INFO whatever ``level`` is."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler = {"class": "logging.StreamHandler", "formatter": "affidavit", "stream": "ext://sys.stderr"}
    named = {"level": level.upper(), "handlers": ["default"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"affidavit": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"default": handler},
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {
            "uvicorn": named,
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": "INFO", "handlers": ["default"], "propagate": False},
            AUDIT_LOGGER: {"level": "INFO", "handlers": ["default"], "propagate": False},
        },
    }


access_log = logging.getLogger(ACCESS_LOGGER)
audit_log = logging.getLogger(AUDIT_LOGGER)


def log_access(fields: Mapping[str, Any]) -> None:
    status = int(fields.get("status") or 0)
    level = logging.ERROR if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    # Built directly: Logger.log would also walk the stack for the caller's file and line, which no
    # formatter here prints, for every request.
    record = logging.LogRecord(ACCESS_LOGGER, level, "", 0, "request", None, None)
    record.fields = dict(fields)
    access_log.handle(record)


def audit(
    action: str,
    *,
    caller: str,
    signer: str | None = None,
    attestation_type: str | None = None,
    subject: str | None = None,
    old_hash: str | None = None,
    new_hash: str | None = None,
    request_id: str | None = None,
) -> None:
    """One audit line for a management change that was stored. The one place that writes them, so
    every management handler logs the same fields."""
    audit_log.info(
        "management change",
        extra={"fields": {
            "request_id": request_id,
            "action": action,
            "caller": caller,
            "signer": signer,
            "attestation_type": attestation_type,
            "subject": subject,
            "old_policy_hash": old_hash,
            "new_policy_hash": new_hash,
        }},
    )
