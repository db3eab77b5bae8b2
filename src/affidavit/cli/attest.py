"""``affidavit attest``: collect evidence on this machine, send it to a service, print the token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import check_writable, read_input, read_text_input, service_url, write_output
from affidavit.cli.output import print_json

# Where fresh quotes can come from (an entry's ``client_sources``): Gramine's /dev/attestation gives SGX
# quotes, the configfs-tsm interface TDX quotes; an Open Enclave report is always a file.
QUOTE_SOURCES = ("gramine", "tsm")
_SOURCE_HELP = {"gramine": "Gramine's /dev/attestation", "tsm": "the Linux configfs-tsm interface"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One ``affidavit attest <cli_name>`` per registered type (``affidavit.attestation_types``)."""
    from affidavit.attestation_types import MAA_SHAPE, all_types

    group = sub.add_parser("attest", help="send evidence to an attestation service and get a token")
    kinds = group.add_subparsers(dest="attest_kind", metavar="KIND", required=True)
    for entry in all_types():
        if entry.cli_name is None:
            continue
        p = kinds.add_parser(entry.cli_name, help=entry.cli_help)
        own = _OWN_COMMANDS.get(entry.cli_name)
        if own is not None:
            own(p)
            continue
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
                help="collect a fresh quote from " + " or ".join(_SOURCE_HELP[s] for s in sources),
            )
            p.add_argument("--source-path", help="where the source interface lives (default: the kernel's)")
        _common(p)
        p.set_defaults(func=_attest_quote, attestation_type=entry.name)
    p = kinds.add_parser("azure-cvm", help="an Azure CVM through its vTPM (POST /attest/AzureGuest)")
    add_azure_cvm_arguments(p)
    p.set_defaults(func=run_azure_cvm)


def _add_snp(p: argparse.ArgumentParser) -> None:
    """``affidavit attest snp``: a report file or configfs-tsm, plus the VCEK/VLEK chain and the VMPL."""
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


# Registered types whose command needs more than the generic --quote/--source (by ``cli_name``).
_OWN_COMMANDS = {"snp": _add_snp}


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
    elif getattr(args, "source", None) == "gramine":
        source = GramineSource(Path(args.source_path or "/dev/attestation"))
    else:
        source = ConfigfsTsmSource(Path(args.source_path or "/sys/kernel/config/tsm/report"))
    evidence = source.get_quote(report_data_for(runtime_bytes))

    tls: bool | str = False if args.insecure else (args.ca_file or True)
    draft = read_text_input(args.draft_policy, "draft policy") if args.draft_policy else None
    with AttestationClient(args.url, verify=tls) as client:
        result = client.attest(
            args.attestation_type, evidence, runtime_data=runtime, init_time_data=init, nonce=args.nonce,
            draft_policy=draft,
        )
    return emit_token(result.token, args)


def _attest_snp(args: argparse.Namespace) -> int:
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
    check_writable(args.out, "--out")  # before the attestation, so that no token is lost
    document = snp_document(
        report_file=Path(args.evidence_file) if args.evidence_file else None,
        tsm_root=Path(args.source_path or "/sys/kernel/config/tsm/report"),
        report_data=report_data_for(runtime_bytes), chain_pem=chain, vmpl=args.vmpl,
    )
    with AttestationClient(args.url, verify=tls) as client:  # a ClientError reaches cli.errors
        result = client.attest_snp(
            document, runtime_data=runtime, init_time_data=init, nonce=args.nonce, draft_policy=draft
        )
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


# ------------------------------------------------------------------------------------------ attest tpm


def add_tpm_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``affidavit attest tpm``."""
    from affidavit.client.tpm import DEFAULT_EVENTLOG, DEFAULT_TCTI

    parser.add_argument("--url", required=True, type=service_url,
                        help="service base URL, e.g. https://127.0.0.1:8443")
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
    """Collect evidence, attest, and print (or write) the token; errors surface as ClientError (and reach
    the one error path, ``cli.errors``)."""
    from affidavit.client.http import AttestationClient
    from affidavit.client.tpm import (
        API_VERSION,
        AkMaterial,
        TpmEvidenceSource,
        load_certificate,
        read_event_log,
    )
    from affidavit.client.tpm_tools import TpmTools, parse_handle, parse_pcr_list

    check_writable(args.out, "--out")  # before the attestation, so that no token is lost
    cert = load_certificate(args.ak_cert) if args.ak_cert else None  # files first: name what is missing
    log = None if args.no_eventlog else read_event_log(args.eventlog)
    indexes = parse_pcr_list(args.pcrs)
    handle = parse_handle(args.ak_handle)
    tools = TpmTools(args.tcti)
    ak_public = tools.ensure_ak(handle)
    source = TpmEvidenceSource(
        ak=AkMaterial(ak_public, cert),
        quoter=lambda data: tools.quote(handle, indexes, data),
        event_log=log,
    )
    verify: bool | str = False if args.insecure else (str(args.ca_file) if args.ca_file else True)
    rp = args.rp_data.encode("utf-8") if args.rp_data else None
    with AttestationClient(args.url, verify=verify, api_version=API_VERSION) as client:
        token = client.attest_tpm(source, rp_data=rp).token
    return emit_token(token, args)


# ------------------------------------------------------------------------------------- attest azure-cvm


def add_azure_cvm_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``affidavit attest azure-cvm`` (``client.azure_cvm`` does the work)."""
    from affidavit.client.azure_cvm import AK_HANDLE, DEFAULT_EVENTLOG, DEFAULT_TCTI, IMDS_URL

    parser.add_argument("--url", required=True, help="service base URL")
    parser.add_argument("--tcti", default=DEFAULT_TCTI, help=f"vTPM access (default {DEFAULT_TCTI})")
    parser.add_argument("--imds-url", default=IMDS_URL, help=f"Azure IMDS base URL (default {IMDS_URL})")
    parser.add_argument("--eventlog", type=Path, default=DEFAULT_EVENTLOG, help="TCG event log")
    parser.add_argument("--no-eventlog", action="store_true", help="send no event log")
    parser.add_argument("--pcrs", default="0-7", help="SHA-256 PCRs to quote (default 0-7, as on Linux)")
    parser.add_argument("--ak-handle", default=f"{AK_HANDLE:#x}", help="the vTPM AK (default 0x81000003)")
    parser.add_argument("--user-data", help="hex, up to 64 bytes, written to NV 0x01400002 before reading")
    parser.add_argument(
        "--refresh-wait",
        type=float,
        default=3.0,
        help="seconds to wait after writing user data for the paravisor (default 3)",
    )
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="client payload entry (repeatable), echoed in x-ms-runtime.client-payload",
    )
    parser.add_argument("--insecure", action="store_true", help="do not verify the service's TLS certificate")
    parser.add_argument("--ca-file", "--ca", dest="ca_file", type=Path, help="CA bundle for the service")
    parser.add_argument("--out", type=Path, help="write the token here instead of stdout")
    parser.add_argument("--json", action="store_true", help="print JSON: the token and its unverified claims")


def run_azure_cvm(args: argparse.Namespace) -> int:
    """Attest this Azure CVM through its vTPM and print (or write) the unsealed token."""
    import tempfile

    from affidavit.client import ClientError
    from affidavit.client.azure_cvm import attest

    with tempfile.TemporaryDirectory(prefix="affidavit-cvm-") as tmp:
        try:
            token = attest(args, Path(tmp))
        except ClientError as exc:
            if not args.json:
                raise
            print_json({"error": exc.to_dict()})
            return 1
    return emit_token(token, args)
