"""``affidavit token``: look inside a token, or verify it as a relying party would."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.output import print_fields, print_json

_EXPECT = re.compile(r"^(?P<claim>[^=<>]+?)(?P<op>>=|=)(?P<value>.*)$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("token", help="inspect or verify attestation tokens")
    cmds = group.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    show = cmds.add_parser("show", help="decode a token WITHOUT verifying it")
    show.add_argument("token", help="the token, or a file holding it")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    verify = cmds.add_parser("verify", help="verify signature, lifetime, issuer and expectations")
    verify.add_argument("token", help="the token, or a file holding it")
    verify.add_argument("--issuer", required=True, help="the service's base URL (the token's iss)")
    verify.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="CLAIM=VALUE",
        help="require a claim value (repeat a claim to allow several values; CLAIM>=N for a minimum)",
    )
    verify.add_argument("--nonce", help="require this nonce claim")
    verify.add_argument("--allow-debug", action="store_true", help="accept debuggable enclaves")
    verify.add_argument("--allow-unsecured", action="store_true", help="accept alg=none draft-policy tokens")
    verify.add_argument("--ca-file", help="CA bundle for the issuer's TLS certificate")
    verify.add_argument("--insecure", action="store_true", help="do not verify the issuer's TLS certificate")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)


def read_token(arg: str) -> str:
    path = Path(arg)
    if arg.count(".") != 2 or path.is_file():
        try:
            return path.read_text().strip()
        except OSError as exc:
            from affidavit.relying_party import RelyingPartyError

            raise RelyingPartyError(
                f"cannot read token file {arg}: {exc.strerror}", code="token_malformed"
            ) from None
    return arg.strip()


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_expectations(items: list[str], *, allow_debug: bool) -> Any:
    from affidavit.relying_party import Expectations, RelyingPartyError

    claims: dict[str, set[Any]] = {}
    minimums: dict[str, float] = {}
    for item in items:
        m = _EXPECT.match(item)
        if not m:
            raise RelyingPartyError(f"--expect {item!r}: use CLAIM=VALUE or CLAIM>=NUMBER", code="usage")
        claim, op, raw = m["claim"].strip(), m["op"], m["value"].strip()
        if op == ">=":
            number = _value(raw)
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise RelyingPartyError(f"--expect {item!r}: {raw!r} is not a number", code="usage")
            minimums[claim] = number
        else:
            claims.setdefault(claim, set()).add(_value(raw))
    return Expectations(
        allow_debug=allow_debug,
        claims={k: frozenset(v) for k, v in claims.items()},
        minimums=minimums,
    )


def _show(args: argparse.Namespace) -> int:
    from affidavit.relying_party import decode_unverified

    decoded = decode_unverified(read_token(args.token))
    if args.json:
        print_json({"verified": False, "header": decoded.header, "claims": decoded.claims})
        return 0
    print("UNVERIFIED: decoded only; the signature and claims have NOT been checked.\n")
    print("header:")
    print_fields((k, json.dumps(v)) for k, v in sorted(decoded.header.items()))
    print("\nclaims:")
    print_fields((k, json.dumps(v)) for k, v in sorted(decoded.claims.items()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from affidavit.relying_party import RelyingPartyError, TokenVerifier

    token = read_token(args.token)
    tls: bool | str = False if args.insecure else (args.ca_file or True)
    try:
        expectations = parse_expectations(args.expect, allow_debug=args.allow_debug)
        with TokenVerifier(args.issuer, verify=tls, allow_unsecured=args.allow_unsecured) as verifier:
            result = verifier.verify(token, nonce=args.nonce, expectations=expectations)
    except RelyingPartyError as exc:
        if args.json:
            print_json({"verified": False, "error": exc.to_dict()})
        else:
            print(f"REJECTED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"verified": True, "kid": result.kid, "header": result.header, "claims": result.claims})
    else:
        print(f"VERIFIED: signed by {args.issuer} (kid {result.kid})\n")
        print_fields((k, json.dumps(v)) for k, v in sorted(result.claims.items()))
    return 0
