"""``affidavit attest``: collect evidence on this machine, send it to a service, print the token."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.output import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("attest", help="send evidence to an attestation service and get a token")
    kinds = group.add_subparsers(dest="attest_kind", metavar="KIND", required=True)
    for kind, help_text in (
        ("sgx", "an SGX DCAP quote (POST /attest/SgxEnclave)"),
        ("openenclave", "an Open Enclave report (POST /attest/OpenEnclave)"),
        ("tdx", "a TDX quote (POST /attest/TdxVm)"),
    ):
        p = kinds.add_parser(kind, help=help_text)
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--quote", "--report", dest="evidence_file", help="evidence captured in a file")
        src.add_argument(
            "--source",
            choices=("gramine", "tsm"),
            help="collect a fresh quote: Gramine's /dev/attestation or the Linux configfs-tsm interface",
        )
        p.add_argument("--source-path", help="where the source interface lives (default: the kernel's path)")
        _common(p)
        p.set_defaults(func=_attest_quote)
    try:
        tpm = importlib.import_module("affidavit.client.tpm")
    except ModuleNotFoundError as exc:
        if exc.name != "affidavit.client.tpm":
            raise
    else:
        p = kinds.add_parser("tpm", help="a TPM quote and boot log (MAA's TPM protocol, POST /attest/Tpm)")
        tpm.add_arguments(p)
        p.set_defaults(func=tpm.run)
    from affidavit.client import azure_cvm

    p = kinds.add_parser("azure-cvm", help="an Azure CVM through its vTPM (POST /attest/AzureGuest)")
    azure_cvm.add_arguments(p)
    p.set_defaults(func=azure_cvm.run)


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
    elif args.source == "gramine":
        source = GramineSource(Path(args.source_path or "/dev/attestation"))
    else:
        source = ConfigfsTsmSource(Path(args.source_path or "/sys/kernel/config/tsm/report"))
    evidence = source.get_quote(report_data_for(runtime_bytes))

    tls: bool | str = False if args.insecure else (args.ca_file or True)
    draft = Path(args.draft_policy).read_text() if args.draft_policy else None
    with AttestationClient(args.url, verify=tls) as client:
        try:
            if args.attest_kind == "sgx":
                result = client.attest_sgx(
                    evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
                )
            elif args.attest_kind == "openenclave":
                result = client.attest_open_enclave(
                    evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
                )
            else:
                result = client.attest_tdx(
                    evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce
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
