"""Argument types shared by several commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 10 * 365 * 86400


def duration(text: str | timedelta) -> timedelta:
    """``90``, ``90s``, ``30m``, ``12h`` or ``7d``."""
    if isinstance(text, timedelta):
        return text
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], None)
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (like 90s, 30m, 12h, 7d): {text!r}") from None
    if not 0 <= seconds <= MAX_SECONDS:  # also refuses NaN and infinity
        raise argparse.ArgumentTypeError(f"a duration from 0 to 10 years, please: {text!r}")
    return timedelta(seconds=seconds)


def iso_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` accepted); a time without zone is UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
