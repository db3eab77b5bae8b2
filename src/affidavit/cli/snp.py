"""``affidavit snp``: decode an AMD SEV-SNP report, or verify it offline against its VCEK/VLEK.

REPORT files may be the raw 1184 bytes, hex or base64(url) text, or MAA's SevSnpVm ``report`` JSON
document (``SnpReport`` + ``VcekCertChain``; its chain is then used unless ``--vek``/``--chain`` say
otherwise). Exit codes: 0 verified, 1 rejected or unreadable; ``--json`` prints one object with
``verified``, ``reason``/``code`` on failure and ``claims`` (MAA's ``x-ms-sevsnpvm-*`` names and types).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from affidavit.timefmt import parse_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("snp", help="inspect or verify AMD SEV-SNP attestation reports")
    sub = parser.add_subparsers(dest="snp_command", metavar="ACTION", required=True)

    inspect = sub.add_parser("inspect", help="print the decoded report (no verification)")
    inspect.add_argument("report", help="report file (raw, hex, base64, or MAA's report JSON)")
    inspect.add_argument("--product", choices=("Milan", "Genoa", "Turin"),
                         help="TCB layout for v2 reports (v3+ name their product)")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=_inspect)

    verify = sub.add_parser("verify", help="verify a report against its VCEK/VLEK and AMD's roots")
    verify.add_argument("report", help="report file (raw, hex, base64, or MAA's report JSON)")
    verify.add_argument("--vek", metavar="CERT", help="the VCEK or VLEK, PEM or DER")
    verify.add_argument("--chain", action="append", default=[], metavar="PEM",
                        help="ASK/ASVK and ARK certificates, PEM (repeatable; default: the shipped ones)")
    verify.add_argument("--trust-root", action="append", default=[], metavar="PEM",
                        help="pinned ARK certificates, PEM (repeatable; default: AMD's Milan, Genoa and "
                             "Turin roots shipped with Affidavit)")
    verify.add_argument("--crl", action="append", default=[], metavar="FILE",
                        help="AMD CRL (DER or PEM) to check revocation against (repeatable)")
    verify.add_argument("--at", help="verification time, ISO-8601 (default: now)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)


def _read(path: str, what: str) -> bytes:
    from affidavit.cli.arguments import read_input

    return read_input(path, what)


def read_report(path: str) -> tuple[Any, bytes | None]:
    """(parsed report, the chain PEM of an MAA document or None) from any of the accepted forms."""
    from affidavit.cli.arguments import decode_hex_or_base64
    from affidavit.evidence.snp import REPORT_SIZE, SnpError, parse_report
    from affidavit.evidence.snp.maa import parse_document

    data = _read(path, "report")
    if len(data) == REPORT_SIZE:
        return parse_report(data), None
    text = data.strip()
    if text.startswith(b"{"):
        doc = parse_document(text)
        return doc.report, doc.chain
    try:
        raw = decode_hex_or_base64(text)
    except ValueError:
        raise SnpError(
            f"{path} is neither a report nor hex/base64 text nor MAA's JSON", code="snp_report_malformed"
        ) from None
    if raw.lstrip().startswith(b"{"):  # the base64 of MAA's document (the request's `report` field)
        doc = parse_document(raw)
        return doc.report, doc.chain
    return parse_report(raw), None


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    """The one CLI error path (``cli.errors``: ``error: CODE: message``, or JSON with ``error``), plus
    this command's ``verified``/``code``/``reason`` members in JSON."""
    from affidavit.cli.errors import report

    code = getattr(exc, "code", "error")
    message = getattr(exc, "message", str(exc))
    extra = {"verified": False, "code": code, "reason": message}
    return report(exc, as_json=bool(getattr(args, "json", False)), extra=extra)


def _inspect(args: argparse.Namespace) -> int:
    from affidavit.cli.errors import CliError
    from affidavit.cli.output import print_fields, print_json
    from affidavit.evidence.snp import SnpError

    try:
        report, chain = read_report(args.report)
    except (SnpError, CliError) as exc:
        return _fail(args, exc)
    doc = report.to_dict(args.product)
    doc["certificate_chain_included"] = chain is not None
    if args.json:
        print_json(doc)
        return 0
    rows = []
    for key, value in doc.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        rows.append((key.replace("_", " "), "-" if value is None else value))
    print_fields(rows)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from affidavit.cli.errors import CliError
    from affidavit.cli.output import print_fields, print_json
    from affidavit.evidence.snp import AmdTrust, SnpError, verify_report

    try:
        now = _parse_time(args.at)
        report, sent_chain = read_report(args.report)
        vek = _read(args.vek, "VEK") if args.vek else None
        chain: list[bytes] | None = [_read(p, "chain") for p in args.chain] or None
        if vek is None and chain is None:
            chain = [sent_chain] if sent_chain is not None else None
        elif vek is None and sent_chain is not None:
            vek = sent_chain
        if vek is None and chain is None:
            raise SnpError("no VEK: give --vek (or a report JSON with VcekCertChain)",
                           code="snp_vek_missing")
        trust = None
        if args.trust_root:
            trust = AmdTrust.from_pem([_read(p, "trust root") for p in args.trust_root])
        crls = [_read(p, "CRL") for p in args.crl]
        result = verify_report(report, vek, chain, trust, now, crl=crls or None)
    except (SnpError, CliError) as exc:
        return _fail(args, exc)
    doc: dict[str, Any] = {"verified": True, "verified_at": now.isoformat(), **result.to_dict()}
    if args.json:
        print_json(doc)
        return 0
    print_fields(
        [("verified", "yes"), ("product", result.product), ("signing key", result.signing_key),
         ("report version", result.report.version),
         ("reported tcb", " ".join(f"{k}={v}" for k, v in result.reported_tcb.to_dict().items())),
         ("verified at", doc["verified_at"])]
        + [(k, json.dumps(v) if isinstance(v, bool) else v) for k, v in result.claims.items()]
    )
    return 0


def _parse_time(text: str | None) -> datetime:
    from affidavit.evidence.snp import SnpError

    if text is None:
        return datetime.now(UTC)
    try:
        return parse_time(text, assume_utc=True)
    except ValueError:
        raise SnpError(f"--at {text!r} is not an ISO-8601 time", code="invalid_time") from None
