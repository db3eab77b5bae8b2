"""The ``affidavit`` command.

Each sub-command group lives in its own module under ``affidavit.cli`` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning the exit code. Heavy imports happen inside those callables so that
``affidavit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from affidavit import __version__
from affidavit.cli.errors import EXIT_USAGE, JsonAwareParser, report

# Command groups, in the order --help lists them.
COMMAND_MODULES = (
    "serve",
    "attest",
    "quote",
    "snp",
    "eventlog",
    "policy",
    "token",
    "keys",
    "collateral",
    "certificates",
)


def build_parser() -> argparse.ArgumentParser:
    parser = JsonAwareParser(
        prog="affidavit", description="Affidavit: remote attestation, wire-compatible with Azure Attestation."
    )
    parser.add_argument("--version", action="version", version=f"affidavit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"affidavit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line (or one JSON object), never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return EXIT_USAGE
        return int(func(args) or 0)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`affidavit ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        if os.environ.get("AFFIDAVIT_DEBUG"):
            import traceback

            traceback.print_exc()
        return report(exc, as_json=as_json)


if __name__ == "__main__":
    sys.exit(main())
