"""How the CLI fails: one line on stderr (``error: CODE: message``), or with ``--json`` one JSON object
``{"error": {"code", "message"}}`` on stdout; exit 1 when something was refused or failed, 2 for usage.

Every exception a command lets escape is mapped here (``report``), so no command prints a traceback;
docs/cli.md lists the codes. ``AFFIDAVIT_DEBUG=1`` shows the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from affidavit.errors import AffidavitError

EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(AffidavitError):
    """A command cannot go on: a file it cannot read or write, a bad argument (``code="usage"``)."""

    code = "cli_error"


class UsageError(CliError):
    code = "usage"


class JsonAwareParser(argparse.ArgumentParser):
    """argparse, but a usage error raises :class:`UsageError` (one line, exit 2) instead of printing
    the usage block and exiting from deep inside parse_args."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def describe(exc: BaseException) -> tuple[str, str, int]:
    """(code, one-line message, exit status) for anything a command raised."""
    import httpx

    if isinstance(exc, AffidavitError):
        status = EXIT_USAGE if exc.code == "usage" else EXIT_FAILED
        return exc.code, exc.message, status
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "usage", f"not a usable URL: {exc}", EXIT_USAGE
    if isinstance(exc, httpx.HTTPError):
        return "service_unreachable", f"{type(exc).__name__}: {exc}", EXIT_FAILED
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        where = f"{exc.filename}: " if exc.filename else ""
        return "file_error", f"{where}{exc.strerror or exc}", EXIT_FAILED
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return "os_error", f"{where}{exc.strerror or exc}", EXIT_FAILED
    if isinstance(exc, UnicodeError):
        return "bad_input", f"not valid text: {exc}", EXIT_FAILED
    return "internal_error", f"{type(exc).__name__}: {exc} (a bug; AFFIDAVIT_DEBUG=1 shows more)", EXIT_FAILED


def one_line(text: str, limit: int = 2000) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def emit_error(code: str, message: str, *, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print an error the one documented way (stdout JSON with --json, else one stderr line)."""
    message = one_line(message)
    if as_json:
        doc: dict[str, Any] = dict(extra or {})
        doc["error"] = {"code": code, "message": message}
        json.dump(doc, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        print(f"error: {code}: {message}", file=sys.stderr, flush=True)


def report(exc: BaseException, *, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    code, message, status = describe(exc)
    emit_error(code, message, as_json=as_json, extra=extra)
    return status
