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
from affidavit.errors import AffidavitError

# Command groups, in the order --help lists them.
COMMAND_MODULES = (
    "serve",
    "attest",
    "quote",
    "eventlog",
    "policy",
    "token",
    "keys",
    "collateral",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="affidavit", description="Affidavit: remote attestation, wire-compatible with Azure Attestation."
    )
    parser.add_argument("--version", action="version", version=f"affidavit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"affidavit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except AffidavitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`affidavit ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
