"""Argument types shared by several commands."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

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
    """An ISO 8601 time (``affidavit.timefmt``; ``Z`` accepted); a time without zone is UTC."""
    from affidavit.timefmt import parse_time

    try:
        return parse_time(text, assume_utc=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


# RSA sizes offered wherever the CLI generates a token signing key (serve --key-size, keys rotate --bits).
RSA_KEY_SIZES = (2048, 3072, 4096)


def service_url(text: str) -> str:
    """An ``http://`` or ``https://`` base URL with a host; a bare ``host:port`` gets a hint."""
    from urllib.parse import urlsplit

    value = text.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"; did you mean http://{value}?" if "://" not in value else ""
        raise argparse.ArgumentTypeError(f"not an http(s):// URL: {text!r}{hint}")
    return value.rstrip("/")


def read_input(path: str | Path, what: str = "file") -> bytes:
    """The bytes of ``path`` (``-``: standard input), or a one-line ``file_error``."""
    import sys

    from affidavit.cli.errors import CliError

    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}", code="file_error") from None


def decode_hex_or_base64(text: bytes) -> bytes:
    """Evidence pasted as text: hex, or base64 / base64url (padding optional); whitespace is ignored.
    Raises ValueError when it is neither."""
    import base64
    import binascii
    import re

    compact = re.sub(rb"\s+", b"", text)
    try:
        if re.fullmatch(rb"[0-9a-fA-F]+", compact):
            return binascii.unhexlify(compact)
        t = compact.replace(b"-", b"+").replace(b"_", b"/")
        return base64.b64decode(t + b"=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither hex nor base64 text") from None


def read_text_input(path: str | Path, what: str = "file") -> str:
    from affidavit.cli.errors import CliError

    try:
        return read_input(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text", code="bad_input") from None


def check_writable(path: str | Path | None, what: str = "output file") -> None:
    """Refuse, before any work is done, an output path that cannot be written (missing directory, no
    permission), so that a result is never computed and then lost."""
    import os

    from affidavit.cli.errors import CliError

    if path is None or str(path) == "-":
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise CliError(f"{what} {path} is a directory", code="file_error")
    if not parent.is_dir():
        raise CliError(f"cannot write {what} {path}: no directory {parent}", code="file_error")
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise CliError(f"cannot write {what} {path}: permission denied", code="file_error")


def write_output(path: str | Path, data: str | bytes, what: str = "output file") -> None:
    from affidavit.cli.errors import CliError

    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        Path(path).write_bytes(raw)
    except OSError as exc:
        raise CliError(f"cannot write {what} {path}: {exc.strerror or exc}", code="file_error") from None


def existing_database(url: str) -> str:
    """For read-only commands: refuse a SQLite URL whose file does not exist instead of creating an empty
    database there (``keys list`` run from the wrong directory)."""
    from affidavit.cli.errors import CliError

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise CliError(
                f"no database at {path}: run from the directory holding the service's data dir, or pass "
                "--database-url (env AFFIDAVIT_DATABASE_URL)",
                code="not_found",
            )
    return url
