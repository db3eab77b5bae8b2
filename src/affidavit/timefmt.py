"""The one ISO 8601 time parser and formatter (pure: text in, an aware UTC ``datetime`` out).

Accepted (ASCII digits only): ``YYYY-MM-DD``, optionally followed by ``T`` (or a space) and
``HH:MM[:SS[.fraction]]``, then a zone: ``Z``, ``±HH:MM`` or ``±HHMM``. A fraction has 1 to 9 digits
(cut to microseconds). Every result is converted to UTC. A time without a zone (a date alone has none) is
refused unless the caller says it means UTC (``assume_utc=True``: the CLI's ``--at``). Anything else,
including dates out of range, raises ``ValueError``; callers wrap it in their layer's error.

The database form (:func:`db_time`) is fixed width, so string order is time order on every backend.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

MAX_CHARS = 64  # longer text is refused before the expression runs

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?",
    re.ASCII,
)
_DB_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_time(text: str, *, assume_utc: bool = False) -> datetime:
    """``text`` as an aware UTC datetime; ``ValueError`` when it is not one of the forms above."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise ValueError("not an ISO 8601 time")
    m = _ISO.fullmatch(text)
    if m is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if zone is None and not assume_utc:
        raise ValueError(f"no time zone in {text!r}")
    tz = UTC
    if zone is not None and zone != "Z":
        digits = zone[1:].replace(":", "")  # four digits: the expression says so
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= timedelta(hours=24) or int(digits[2:]) >= 60:
            raise ValueError(f"time zone offset out of range: {zone!r}")
        tz = timezone(-offset if zone[0] == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                        int(second or 0), micro, tzinfo=tz)
        return when.astimezone(UTC)
    except OverflowError:  # the UTC instant falls outside year 1..9999
        raise ValueError(f"time out of range: {text!r}") from None


def format_time(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC (whole seconds), as Intel's and MAA's documents write times."""
    return _utc(when).isoformat(timespec="seconds") + "Z"


def db_time(when: datetime) -> str:
    """Fixed-width UTC text with microseconds (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) for database columns."""
    return _utc(when).isoformat(timespec="microseconds") + "Z"


def parse_db_time(text: str) -> datetime:
    """The inverse of :func:`db_time`; ``ValueError`` for any other text."""
    return datetime.strptime(text, _DB_FORMAT).replace(tzinfo=UTC)


def _utc(when: datetime) -> datetime:
    """``when`` in UTC without its zone (so ``isoformat`` writes no offset; its years have four digits,
    which strftime's ``%Y`` does not promise)."""
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return when.astimezone(UTC).replace(tzinfo=None)
