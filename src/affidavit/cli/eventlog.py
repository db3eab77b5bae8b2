"""``affidavit eventlog show FILE [--json]``: a TCG event log's events and replayed PCRs per bank.

Exits 1 when the log cannot be parsed, or when an event's data does not match its digest (a forged
or corrupted log), after printing what could be read and naming the offending events.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("eventlog", help="inspect TCG (TPM) boot event logs")
    sub = parser.add_subparsers(dest="eventlog_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser("show", help="list events and replayed PCR values; flag forged event data")
    show.add_argument(
        "file", help="binary event log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements)"
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=show_handler)


def _event_row(e: Any, status: str) -> dict[str, Any]:
    from affidavit.evidence.tpm import constants as c
    from affidavit.evidence.tpm.coverage import MISMATCH

    return {
        "seq": e.seq,
        "pcr": e.pcr,
        "type": e.type,
        "type_name": e.type_name,
        "digests": {c.bank_name(a): d.hex() for a, d in e.digests.items()},
        "data_size": len(e.data),
        "data": e.data.hex(),
        "data_check": status,
        "digest_mismatch": status == MISMATCH,
    }


def _summary(e: Any) -> str:
    from affidavit.evidence.tpm import constants as c
    from affidavit.evidence.tpm.uefi import parse_variable

    variable_types = (
        c.EV_EFI_VARIABLE_DRIVER_CONFIG,
        c.EV_EFI_VARIABLE_BOOT,
        c.EV_EFI_VARIABLE_BOOT2,
        c.EV_EFI_VARIABLE_AUTHORITY,
    )
    var = parse_variable(e.data) if e.type in variable_types else None
    if var is not None:
        shown = var.data[:16].hex() + ("…" if len(var.data) > 16 else "")
        return f"{var.name} = {shown}"
    text = e.data.rstrip(b"\x00")
    if text and all(32 <= b < 127 for b in text[:64]):
        return text[:60].decode()
    return e.data[:16].hex() + ("…" if len(e.data) > 16 else "")


def show_handler(args: argparse.Namespace) -> int:
    from affidavit.cli.arguments import read_input
    from affidavit.cli.errors import report
    from affidavit.cli.output import print_fields, print_json, print_table
    from affidavit.evidence.tpm import EventLogError, analyze_log

    raw = read_input(args.file, "event log")
    try:
        analysis = analyze_log(raw)
    except EventLogError as exc:
        return report(exc, as_json=args.json, extra={"file": args.file, "size": len(raw)})
    log = analysis.log
    mismatches = analysis.mismatches
    events = [_event_row(e, s) for e, s in zip(log.events, analysis.status, strict=True)]
    pcrs = {bank: {str(i): v.hex() for i, v in values.items()} for bank, values in analysis.replayed.items()}
    if args.json:
        print_json(
            {
                "file": args.file,
                "format": log.format,
                "banks": list(log.bank_names),
                "startup_locality": log.startup_locality,
                "trailing_bytes": log.trailing,
                "events": events,
                "pcrs": pcrs,
                "digest_mismatches": [e.seq for e in mismatches],
            }
        )
    else:
        print_fields(
            [
                ("file", args.file),
                ("format", log.format),
                ("banks", ", ".join(log.bank_names)),
                ("events", len(log.events)),
                ("startup locality", log.startup_locality if log.startup_locality is not None else "-"),
                ("trailing bytes", log.trailing),
            ]
        )
        print()
        rows = [
            (e.seq, e.pcr if e.pcr < 32 else hex(e.pcr), e.type_name or hex(e.type), s, _summary(e))
            for e, s in zip(log.events, analysis.status, strict=True)
        ]
        print_table(["#", "PCR", "type", "data check", "data"], rows)
        for bank, values in analysis.replayed.items():
            print()
            print_table([f"PCR ({bank})", "replayed value"], [(i, v.hex()) for i, v in values.items()])
    if mismatches:
        names = ", ".join(f"#{e.seq} ({e.type_name or hex(e.type)}, PCR{e.pcr})" for e in mismatches)
        print(f"error: tpm_event_data_mismatch: event data does not match its digest: {names}",
              file=sys.stderr)
        return 1
    return 0
