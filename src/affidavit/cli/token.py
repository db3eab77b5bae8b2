"""``affidavit token``: look inside a token, or verify it as a relying party would."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from affidavit import strict_json
from affidavit.cli.arguments import read_input, read_text_input, service_url
from affidavit.cli.errors import UsageError, emit_error
from affidavit.cli.output import print_fields, print_json

_EXPECT = re.compile(r"^(?P<claim>[^=<>\s]+)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>.*)$", re.S)
_WORD_EXPECT = re.compile(r"^(?P<claim>[^=<>\s]+)\s+(?P<op>contains|in)\s+(?P<value>.+)$", re.S)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("token", help="inspect or verify attestation tokens")
    cmds = group.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    show = cmds.add_parser("show", help="decode a token WITHOUT verifying it")
    show.add_argument("token", help="the token, a file holding it, or - for standard input")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    verify = cmds.add_parser("verify", help="verify signature, lifetime, issuer and expectations")
    verify.add_argument("token", help="the token, a file holding it, or - for standard input")
    verify.add_argument("--issuer", required=True, type=service_url,
                        help="the service's base URL (the token's iss; its keys unless --jwks)")
    verify.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="EXPECTATION",
        help="require a claim: CLAIM=VALUE (repeat to allow several values), CLAIM<N, CLAIM<=N, CLAIM>N, "
        "CLAIM>=N, 'CLAIM contains VALUE' (a list element or substring), 'CLAIM in A,B,C'; hex compares "
        "case-insensitively; every expectation is checked and every failure reported",
    )
    verify.add_argument("--nonce", help="require this nonce (as sent, or base64url of it as TPM rp_data)")
    verify.add_argument("--jwks", help="verify offline against this JWKS file (the issuer's /certs)")
    verify.add_argument("--allow-debug", action="store_true", help="accept debuggable enclaves")
    verify.add_argument("--allow-unsecured", action="store_true",
                        help="accept alg=none draft-policy tokens (reported as UNSIGNED)")
    verify.add_argument("--ca-file", help="CA bundle for the issuer's TLS certificate")
    verify.add_argument("--insecure", action="store_true", help="do not verify the issuer's TLS certificate")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=_verify)


def read_token(arg: str) -> str:
    """The token itself, or read from a file (``-``: standard input)."""
    if arg == "-" or arg.count(".") != 2 or Path(arg).is_file():
        return read_text_input(arg, "token file").strip()
    return arg.strip()


def parse_expectations(items: list[str], *, allow_debug: bool) -> Any:
    """``--expect`` strings as :class:`affidavit.relying_party.Expectations`; a malformed one is a usage
    error (exit 2)."""
    from affidavit.relying_party import ClaimTest, Expectations

    equal: dict[str, list[str]] = {}
    tests: list[ClaimTest] = []
    for item in items:
        m = _WORD_EXPECT.match(item.strip()) or _EXPECT.match(item.strip())
        if not m:
            raise UsageError(
                f"--expect {item!r}: use CLAIM=VALUE, CLAIM<=N (<, >, >=), 'CLAIM contains V', 'CLAIM in A,B'"
            )
        claim, op, raw = m["claim"].strip(), m["op"], m["value"].strip()
        if op in ("<", "<=", ">", ">="):
            try:
                number = float(raw)
            except ValueError:
                number = float("nan")
            if number != number or abs(number) == float("inf"):
                raise UsageError(f"--expect {item!r}: {raw!r} is not a number")
            tests.append(ClaimTest(claim, op, raw))
        elif op == "=":
            equal.setdefault(claim, []).append(raw)
        elif op == "in":
            tests.append(ClaimTest(claim, "in", tuple(v.strip() for v in raw.split(",") if v.strip())))
        else:
            tests.append(ClaimTest(claim, op, raw))
    tests[:0] = [ClaimTest(claim, "=", tuple(values)) for claim, values in equal.items()]
    return Expectations(allow_debug=allow_debug, tests=tuple(tests))


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


def _jwks_keys(path: str) -> Any:
    from affidavit.relying_party import RelyingPartyError, keys_from_jwks

    try:
        doc = strict_json.loads(read_input(path, "JWKS file"))
    except (ValueError, RecursionError):
        raise RelyingPartyError(f"{path} is not JSON", code="jwks_invalid") from None
    keys = keys_from_jwks(doc)
    if not keys:
        raise RelyingPartyError(f"{path} holds no usable key", code="jwks_invalid")
    return keys


def _verify(args: argparse.Namespace) -> int:
    from affidavit.relying_party import ExpectationFailed, RelyingPartyError, TokenVerifier, verify_token

    expectations = parse_expectations(args.expect, allow_debug=args.allow_debug)
    token = read_token(args.token)
    tls: bool | str = False if args.insecure else (args.ca_file or True)
    try:
        if args.jwks:
            result = verify_token(
                token, _jwks_keys(args.jwks), issuer=args.issuer, now=time.time(), nonce=args.nonce,
                allow_unsecured=args.allow_unsecured, expectations=expectations,
            )
        else:
            with TokenVerifier(args.issuer, verify=tls, allow_unsecured=args.allow_unsecured) as verifier:
                result = verifier.verify(token, nonce=args.nonce, expectations=expectations)
    except ExpectationFailed as exc:
        failures = [{"claim": f.claim, "expected": f.expected, "actual": f.actual} for f in exc.failures]
        emit_error(exc.code, exc.message, as_json=args.json, extra={"verified": False, "failures": failures})
        return 1
    except RelyingPartyError as exc:
        emit_error(exc.code, exc.message, as_json=args.json, extra={"verified": False})
        return 1
    signed = not result.unsecured
    if args.json:
        print_json({"verified": True, "signed": signed, "kid": result.kid if signed else None,
                    "header": result.header, "claims": result.claims})
        return 0
    if signed:
        source = f"the JWKS in {args.jwks}" if args.jwks else args.issuer
        print(f"VERIFIED: signed by {source} (kid {result.kid})\n")
    else:
        print("UNSIGNED: an alg=none (draft-policy) token, accepted because of --allow-unsecured; nobody "
              "vouches for these claims\n")
    print_fields((k, json.dumps(v)) for k, v in sorted(result.claims.items()))
    return 0
