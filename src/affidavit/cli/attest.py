"""``affidavit attest``: collect evidence on this machine, send it to a service, print the token."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import check_writable, read_input, read_text_input, service_url, write_output
from affidavit.cli.output import print_json

# Where each kind's fresh quotes can come from: Gramine's /dev/attestation gives SGX quotes, the
# configfs-tsm interface TDX quotes; an Open Enclave report is always a file.
_SOURCES = {"sgx": ("gramine",), "openenclave": (), "tdx": ("tsm",)}
_SOURCE_HELP = {"gramine": "Gramine's /dev/attestation", "tsm": "the Linux configfs-tsm interface"}


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
        sources = _SOURCES[kind]
        if sources:
            src.add_argument(
                "--source",
                choices=sources,
                help="collect a fresh quote from " + " or ".join(_SOURCE_HELP[s] for s in sources),
            )
            p.add_argument(
                "--source-path", help="where the source interface lives (default: the kernel's path)"
            )
        _common(p)
        p.set_defaults(func=_attest_quote)
    p = kinds.add_parser("snp", help="an AMD SEV-SNP report (POST /attest/SevSnpVm)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--report", dest="evidence_file",
                     help="a report captured in a file (raw 1184 bytes, or MAA's report JSON)")
    src.add_argument("--source", choices=("tsm",),
                     help="a fresh report from the Linux configfs-tsm interface (provider sev_guest), "
                          "with the VCEK/VLEK chain from its auxblob")
    p.add_argument("--source-path", help="configfs-tsm report directory (default: the kernel's)")
    p.add_argument("--chain", action="append", default=[], metavar="PEM",
                   help="VCEK/VLEK (and ASK, ARK) certificates to send as VcekCertChain (repeatable)")
    p.add_argument("--vmpl", type=int, help="request the report at this VMPL (configfs-tsm privlevel)")
    _common(p)
    p.set_defaults(func=_attest_snp)
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
    p.add_argument("--url", required=True, type=service_url, help="the attestation service's base URL")
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
    return None if path is None else read_input(path, "data file")


def _attest_quote(args: argparse.Namespace) -> int:
    from affidavit.client.http import AttestationClient, RuntimeData
    from affidavit.client.sources import (
        ConfigfsTsmSource,
        FileSource,
        GramineSource,
        QuoteSource,
        report_data_for,
    )

    check_writable(args.out, "--out")  # before the attestation, so that no token is lost
    runtime_bytes = _read(args.runtime_data or args.runtime_json)
    runtime = (
        None if runtime_bytes is None else RuntimeData(runtime_bytes, json=args.runtime_json is not None)
    )
    init_bytes = _read(args.init_time_data or args.init_time_json)
    init = None if init_bytes is None else RuntimeData(init_bytes, json=args.init_time_json is not None)

    source: QuoteSource
    if args.evidence_file:
        read_input(args.evidence_file, "evidence file")  # named here when it is missing
        source = FileSource(Path(args.evidence_file))
    elif args.source == "gramine":
        source = GramineSource(Path(args.source_path or "/dev/attestation"))
    else:
        source = ConfigfsTsmSource(Path(args.source_path or "/sys/kernel/config/tsm/report"))
    evidence = source.get_quote(report_data_for(runtime_bytes))

    tls: bool | str = False if args.insecure else (args.ca_file or True)
    draft = read_text_input(args.draft_policy, "draft policy") if args.draft_policy else None
    with AttestationClient(args.url, verify=tls) as client:
        if args.attest_kind == "sgx":
            result = client.attest_sgx(
                evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
            )
        elif args.attest_kind == "openenclave":
            result = client.attest_open_enclave(
                evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
            )
        else:
            result = client.attest_tdx(evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce)
    return emit_token(result.token, args)


def _attest_snp(args: argparse.Namespace) -> int:
    from affidavit.client import ClientError
    from affidavit.client.http import AttestationClient, RuntimeData
    from affidavit.client.snp import snp_document
    from affidavit.client.sources import report_data_for

    runtime_bytes = _read(args.runtime_data or args.runtime_json)
    runtime = (
        None if runtime_bytes is None else RuntimeData(runtime_bytes, json=args.runtime_json is not None)
    )
    init_bytes = _read(args.init_time_data or args.init_time_json)
    init = None if init_bytes is None else RuntimeData(init_bytes, json=args.init_time_json is not None)
    chain = b"".join(Path(p).read_bytes() for p in args.chain) or None
    tls: bool | str = False if args.insecure else (args.ca_file or True)
    draft = Path(args.draft_policy).read_text() if args.draft_policy else None
    try:
        document = snp_document(
            report_file=Path(args.evidence_file) if args.evidence_file else None,
            tsm_root=Path(args.source_path or "/sys/kernel/config/tsm/report"),
            report_data=report_data_for(runtime_bytes), chain_pem=chain, vmpl=args.vmpl,
        )
        with AttestationClient(args.url, verify=tls) as client:
            result = client.attest_snp(
                document, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
            )
    except ClientError as exc:
        from affidavit.cli.errors import report

        return report(exc, as_json=args.json)
    return emit_token(result.token, args)


def emit_token(token: str, args: Any) -> int:
    """Write the token where asked; with --json also show its (unverified) claims."""
    out = getattr(args, "out", None)
    if out:
        try:
            write_output(out, token + "\n", "--out")
        except Exception:
            print(token)  # never lose a token the service issued
            raise
    if getattr(args, "json", False):
        from affidavit.relying_party import decode_unverified

        print_json({"token": token, "claims_unverified": decode_unverified(token).claims})
    elif not out:
        print(token)
    else:
        print(f"token written to {out}", file=sys.stderr)
    return 0
