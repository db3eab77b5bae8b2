"""``affidavit attest``: collect evidence on this machine, send it to a service, print the token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.output import print_json

QUOTE_SOURCES = ("gramine", "tsm")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One ``affidavit attest <cli_name>`` per registered type (``affidavit.attestation_types``)."""
    from affidavit.attestation_types import MAA_SHAPE, all_types

    group = sub.add_parser("attest", help="send evidence to an attestation service and get a token")
    kinds = group.add_subparsers(dest="attest_kind", metavar="KIND", required=True)
    for entry in all_types():
        if entry.cli_name is None:
            continue
        p = kinds.add_parser(entry.cli_name, help=entry.cli_help)
        if "tpm" in entry.client_sources:
            add_tpm_arguments(p)
            p.set_defaults(func=run_tpm)
            continue
        if entry.request_shape != MAA_SHAPE:
            continue
        sources = tuple(s for s in entry.client_sources if s in QUOTE_SOURCES)
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--quote", "--report", dest="evidence_file", help="evidence captured in a file")
        if sources:
            src.add_argument(
                "--source",
                choices=sources,
                help="collect fresh evidence: Gramine's /dev/attestation or the Linux configfs-tsm interface",
            )
            p.add_argument("--source-path", help="where the source interface lives (default: the kernel's)")
        _common(p)
        p.set_defaults(func=_attest_quote, attestation_type=entry.name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the attestation service's base URL")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--runtime-data", help="file of runtime data (bound via report data; sent as Binary)")
    data.add_argument("--runtime-json", help="file of runtime data that is JSON (sent as JSON)")
    init = p.add_mutually_exclusive_group()
    init.add_argument("--init-time-data", help="file of init-time data (Binary)")
    init.add_argument("--init-time-json", help="file of init-time data that is JSON")
    p.add_argument("--nonce", help="a nonce the service echoes into the token")
    p.add_argument("--draft-policy", help="file with a policy to evaluate instead of the stored one")
    p.add_argument("--out", help="write the token to this file instead of standard output")
    p.add_argument("--ca-file", help="CA bundle for the service's TLS certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the service's TLS certificate")
    p.add_argument("--json", action="store_true", help="print JSON: the token and its (unverified) claims")


def _read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def _attest_quote(args: argparse.Namespace) -> int:
    from affidavit.client import ClientError
    from affidavit.client.http import AttestationClient, RuntimeData
    from affidavit.client.sources import (
        ConfigfsTsmSource,
        FileSource,
        GramineSource,
        QuoteSource,
        report_data_for,
    )

    runtime_bytes = _read(args.runtime_data or args.runtime_json)
    runtime = (
        None if runtime_bytes is None else RuntimeData(runtime_bytes, json=args.runtime_json is not None)
    )
    init_bytes = _read(args.init_time_data or args.init_time_json)
    init = None if init_bytes is None else RuntimeData(init_bytes, json=args.init_time_json is not None)

    source: QuoteSource
    if args.evidence_file:
        source = FileSource(Path(args.evidence_file))
    elif getattr(args, "source", None) == "gramine":
        source = GramineSource(Path(args.source_path or "/dev/attestation"))
    else:
        source = ConfigfsTsmSource(Path(args.source_path or "/sys/kernel/config/tsm/report"))
    evidence = source.get_quote(report_data_for(runtime_bytes))

    tls: bool | str = False if args.insecure else (args.ca_file or True)
    draft = Path(args.draft_policy).read_text() if args.draft_policy else None
    with AttestationClient(args.url, verify=tls) as client:
        try:
            result = client.attest(
                args.attestation_type, evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce,
                draft_policy=draft,
            )
        except ClientError as exc:
            if args.json:
                print_json({"error": exc.to_dict()})
            else:
                print(f"attestation refused: {exc}", file=sys.stderr)
            return 1
    return emit_token(result.token, args)


def emit_token(token: str, args: Any) -> int:
    """Write the token where asked; with --json also show its (unverified) claims."""
    if getattr(args, "out", None):
        Path(args.out).write_text(token + "\n")
    if getattr(args, "json", False):
        from affidavit.relying_party import decode_unverified

        print_json({"token": token, "claims_unverified": decode_unverified(token).claims})
    elif not getattr(args, "out", None):
        print(token)
    else:
        print(f"token written to {args.out}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ attest tpm


def add_tpm_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``affidavit attest tpm``."""
    from affidavit.client.tpm import DEFAULT_EVENTLOG, DEFAULT_TCTI

    parser.add_argument("--url", required=True, help="service base URL, e.g. https://127.0.0.1:8443")
    parser.add_argument(
        "--tcti",
        default=DEFAULT_TCTI,
        help=f"TPM access (tpm2-tools TCTI string; default {DEFAULT_TCTI}; "
        "a simulator: swtpm:host=127.0.0.1,port=2321)",
    )
    parser.add_argument(
        "--eventlog", type=Path, default=DEFAULT_EVENTLOG, help=f"TCG event log (default {DEFAULT_EVENTLOG})"
    )
    parser.add_argument("--no-eventlog", action="store_true", help="send no event log")
    parser.add_argument(
        "--ak-cert", type=Path, help="AK certificate (PEM or DER) issued by a CA the service trusts"
    )
    parser.add_argument(
        "--ak-handle",
        default="0x81000100",
        help="persistent handle of the AK; created under the EK and persisted there when "
        "absent (default 0x81000100)",
    )
    parser.add_argument("--pcrs", default="0-23", help="PCRs to quote on every active bank (default 0-23)")
    parser.add_argument("--rp-data", help="relying-party data (text) echoed in the token as rp_data/nonce")
    parser.add_argument("--insecure", action="store_true", help="do not verify the service's TLS certificate")
    parser.add_argument("--ca-file", "--ca", dest="ca_file", type=Path,
                        help="CA bundle for the service's TLS certificate")
    parser.add_argument("--out", type=Path, help="write the token here instead of stdout")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: the token and its (unverified) claims, or the error")


def run_tpm(args: argparse.Namespace) -> int:
    """Collect evidence, attest, and print (or write) the token; errors surface as ClientError."""
    from affidavit.client import ClientError
    from affidavit.client.http import AttestationClient
    from affidavit.client.tpm import (
        API_VERSION,
        AkMaterial,
        TpmEvidenceSource,
        load_certificate,
        read_event_log,
    )
    from affidavit.client.tpm_tools import TpmTools, parse_handle, parse_pcr_list

    tools = TpmTools(args.tcti)
    handle = parse_handle(args.ak_handle)
    ak_public = tools.ensure_ak(handle)
    cert = load_certificate(args.ak_cert) if args.ak_cert else None
    log = None if args.no_eventlog else read_event_log(args.eventlog)
    indexes = parse_pcr_list(args.pcrs)
    source = TpmEvidenceSource(
        ak=AkMaterial(ak_public, cert),
        quoter=lambda data: tools.quote(handle, indexes, data),
        event_log=log,
    )
    verify: bool | str = False if args.insecure else (str(args.ca_file) if args.ca_file else True)
    rp = args.rp_data.encode("utf-8") if args.rp_data else None
    try:
        with AttestationClient(args.url, verify=verify, api_version=API_VERSION) as client:
            token = client.attest_tpm(source, rp_data=rp).token
    except ClientError as exc:
        if not args.json:
            raise
        print_json({"error": exc.to_dict()})
        return 1
    return emit_token(token, args)
