"""``affidavit quote``: decode a DCAP quote, or verify it against offline collateral.

Quote files may be raw bytes, hex or base64(url) text, and may be Open Enclave reports (the 16-byte OE
header is detected and stripped). Exit codes: 0 verified (whatever the TCB status), 1 rejected or unreadable.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import decode_hex_or_base64, duration
from affidavit.timefmt import parse_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("quote", help="inspect or verify Intel SGX/TDX DCAP quotes")
    sub = parser.add_subparsers(dest="quote_command", metavar="ACTION", required=True)

    inspect = sub.add_parser("inspect", help="print the decoded quote (no verification)")
    inspect.add_argument("quote", help="quote file (raw, hex or base64; OE reports accepted)")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=_inspect)

    verify = sub.add_parser("verify", help="verify a quote against Intel collateral")
    verify.add_argument("quote", help="quote file (raw, hex or base64; OE reports accepted)")
    verify.add_argument("--collateral", required=True, help="collateral JSON (offline form)")
    verify.add_argument("--at", help="verification time, ISO-8601 (default: now)")
    verify.add_argument(
        "--collateral-grace",
        type=duration,
        default=timedelta(0),
        metavar="DURATION",
        help="accept collateral this long past its nextUpdate, flagged as expired (e.g. 12h, 7d)",
    )
    verify.add_argument(
        "--trust-root",
        action="append",
        default=[],
        metavar="PEM",
        help="trusted root certificate or key, PEM (repeatable; default: the Intel SGX Root CA)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)


def _read_evidence(path: str) -> tuple[bytes, bytes, bool]:
    """(submitted evidence bytes, the quote inside, whether it was an OE report)."""
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.openenclave import is_oe_report, unwrap

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read {path}: {exc.strerror}", code="file_error") from None
    if not _looks_binary(data):
        try:
            data = decode_hex_or_base64(data)
        except ValueError:
            raise EvidenceError(
                f"{path} is neither a binary quote nor hex/base64 text", code="quote_malformed"
            ) from None
    if is_oe_report(data):
        return data, unwrap(data), True
    return data, data, False


def _looks_binary(data: bytes) -> bool:
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        return True
    return b"\0" in data


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    from affidavit.cli.errors import report

    return report(exc, as_json=getattr(args, "json", False), extra={"verified": False})


def _inspect(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.dcap import parse_quote, platform_of

    try:
        _, raw, oe = _read_evidence(args.quote)
        quote = parse_quote(raw)
        try:
            platform: dict[str, Any] | None = vars(platform_of(quote))
        except EvidenceError as exc:
            platform = {"error": exc.to_dict()}
    except EvidenceError as exc:
        return _fail(args, exc)
    doc = quote.to_dict()
    doc["open_enclave_report"] = oe
    doc["platform"] = platform
    if args.json:
        print_json(doc)
        return 0
    h = doc["header"]
    fields: list[tuple[str, Any]] = [
        ("version", h["version"]),
        ("tee", doc["tee"]),
        ("body", doc["body_type"]),
        ("open enclave report", oe),
        ("qe svn / pce svn", f"{h['qe_svn']} / {h['pce_svn']}"),
        ("cert data type", doc["cert_data_type"]),
    ]
    if platform is not None and "error" not in platform:
        fields += [("fmspc", platform["fmspc"]), ("pck ca", platform["ca"])]
    fields += [(k, v) for k, v in doc["body"].items()]
    fields += [("qe " + k, doc["qe_report"][k]) for k in ("mrenclave", "mrsigner", "isv_prod_id", "isv_svn")]
    print_fields(fields)
    return 0


def _parse_time(text: str | None) -> datetime:
    from affidavit.evidence import EvidenceError

    if text is None:
        return datetime.now(UTC)
    try:
        return parse_time(text, assume_utc=True)
    except ValueError:
        raise EvidenceError(f"--at {text!r} is not an ISO-8601 time", code="invalid_time") from None


def _verify(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral

    try:
        now = _parse_time(args.at)
        evidence, raw, oe = _read_evidence(args.quote)
        try:
            collateral_text = Path(args.collateral).read_bytes()
        except OSError as exc:
            raise EvidenceError(
                f"cannot read {args.collateral}: {exc.strerror}", code="file_error"
            ) from None
        collateral = load_collateral(collateral_text)
        trust = TrustAnchors.intel()
        if args.trust_root:
            anchors = []
            for path in args.trust_root:
                try:
                    anchors.append(TrustAnchors.from_pem(Path(path).read_bytes()))
                except OSError as exc:
                    raise EvidenceError(
                        f"cannot read {path}: {exc.strerror}", code="file_error"
                    ) from None
            trust = anchors[0]
            for a in anchors[1:]:
                trust = trust.merged(a)
        result = DcapVerifier(trust).verify(raw, collateral, now, collateral_grace=args.collateral_grace)
    except EvidenceError as exc:
        return _fail(args, exc)
    doc = result.to_dict()
    doc["verified"] = True
    doc["verified_at"] = now.isoformat()
    doc["open_enclave_report"] = oe
    if oe:
        import hashlib

        doc["collateral_hashes"]["quotehash"] = hashlib.sha256(evidence).hexdigest()
    if args.json:
        print_json(doc)
        return 0
    print_fields(
        [
            ("status", doc["status"]),
            ("advisory ids", ", ".join(doc["advisory_ids"]) or "-"),
            ("tee", doc["tee"]),
            ("fmspc", doc["fmspc"]),
            ("platform tcb", doc["platform_tcb_status"]),
            ("qe tcb", doc["qe_tcb_status"]),
            ("tdx module tcb", doc["tdx_module_tcb_status"] or "-"),
            ("tcb date", doc["tcb_date"]),
            ("tcb evaluation #", doc["tcb_evaluation_data_number"]),
            ("collateral expired", "yes (within grace)" if doc["collateral_expired"] else "no"),
            ("verified at", doc["verified_at"]),
        ]
        + [(k, v) for k, v in doc["claims"].items()]
    )
    return 0
