"""``affidavit certificates list|add|remove``: the policy management certificates of a running service
in isolated mode (maa-api §8). Changes are JWS signed with a registered certificate's key (``--key``,
``--cert``) naming the certificate to add or remove."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from affidavit.cli.manage import client_for, connection_flags, jws_for, load_signer
from affidavit.cli.output import print_json, print_table


def register(sub: Any) -> None:
    group = sub.add_parser("certificates", help="list, add or remove policy management certificates")
    cmds = group.add_subparsers(dest="certificates_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("list", help="the certificates a running service accepts policy signatures from")
    connection_flags(ls)
    ls.set_defaults(func=_list)

    for name, add in (("add", True), ("remove", False)):
        p = cmds.add_parser(name, help=f"{name} a policy management certificate (signed by a registered one)")
        p.add_argument("certificate", help=f"PEM certificate to {name}")
        connection_flags(p)
        p.add_argument("--key", required=True, help="PEM RSA private key of a registered certificate")
        p.add_argument("--cert", required=True, help="PEM of that registered certificate (and its chain)")
        p.set_defaults(func=_modify, add=add)


def _describe(cert: Any) -> dict[str, Any]:
    from affidavit.tokens import certificate_thumbprint

    return {
        "thumbprint": certificate_thumbprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
    }


def _list(args: argparse.Namespace) -> int:
    from cryptography import x509

    with client_for(args) as client:
        claims = client.certificates()
    keys = (claims.get("x-ms-policy-certificates") or {}).get("keys") or []
    rows = []
    for jwk in keys:
        try:
            rows.append(_describe(x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))))
        except (KeyError, IndexError, TypeError, ValueError):
            rows.append({"thumbprint": "?", "subject": "(unreadable entry)", "not_after": "-"})
    if args.json:
        print_json(rows)
    elif not rows:
        print("no policy management certificates (the service runs in aad mode, or has none)")
    else:
        print_table(["THUMBPRINT", "SUBJECT", "NOT AFTER"], [list(r.values()) for r in rows])
    return 0


def _modify(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from affidavit.cli.arguments import read_input
    from affidavit.cli.errors import CliError

    try:
        cert = x509.load_pem_x509_certificate(read_input(args.certificate, "certificate"))
    except ValueError:
        raise CliError(f"{args.certificate} is not a PEM certificate", code="bad_input") from None
    der = cert.public_bytes(Encoding.DER)
    payload = {"policyCertificate": {"kty": "RSA", "x5c": [base64.b64encode(der).decode()]}}
    signer = load_signer(args)
    with client_for(args) as client:
        claims = client.modify_certificate(jws_for(payload, signer), add=args.add)
    result = {**_describe(cert), "result": claims.get("x-ms-policycertificates-result")}
    if args.json:
        print_json(result)
    else:
        verb = "added" if args.add else "removed"
        print(f"certificate {result['thumbprint']} ({result['subject']}) {verb}: {result['result']}")
    return 0
