"""``affidavit policy``: check, evaluate and hash attestation policies offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("policy", help="check, evaluate and hash attestation policies")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="parse a policy; print its version, sections, rules and hash")
    check.add_argument("file", type=Path)
    check.add_argument("--lenient", action="store_true", help="accept published-but-invalid forms")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_check)

    ev = sub.add_parser("eval", help="evaluate a policy against incoming claims")
    ev.add_argument("file", type=Path)
    ev.add_argument(
        "--claims",
        type=Path,
        required=True,
        help='JSON: [{"type","value","valueType","issuer"}, ...] or {type: value}',
    )
    ev.add_argument("--lenient", action="store_true", help="accept published-but-invalid forms")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(func=_eval)

    h = sub.add_parser("hash", help="print the policy's x-ms-policy-hash")
    h.add_argument("file", type=Path)
    h.set_defaults(func=_hash)


def _read_text(path: Path) -> str:
    from affidavit.policy import PolicyParsingError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyParsingError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyParsingError(f"{path} is not UTF-8 text") from None


def _fail(exc: Exception) -> int:
    print(f"error: {getattr(exc, 'code', 'error')}: {getattr(exc, 'message', exc)}", file=sys.stderr)
    return 1


def _check(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json
    from affidavit.policy import PolicyError, compile_policy

    try:
        policy = compile_policy(_read_text(args.file), lenient=args.lenient)
    except PolicyError as exc:
        if args.json:
            print_json({"valid": False, "error": exc.to_dict(), **_position(exc)})
            return 1
        return _fail(exc)
    counts = {name: len(rules) for name, rules in policy.sections}
    if args.json:
        print_json(
            {
                "valid": True,
                "version": policy.version,
                "sections": counts,
                "rules": policy.rule_count,
                "hash": policy.hash,
                "warnings": list(policy.warnings),
            }
        )
        return 0
    if policy.empty:
        print("empty policy: every attestation is denied until a policy is set")
    print_fields(
        [
            ("version", policy.version or "-"),
            ("sections", ", ".join(f"{n} ({c} rules)" for n, c in counts.items()) or "-"),
            ("rules", policy.rule_count),
            ("hash", policy.hash),
        ]
    )
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _position(exc: Exception) -> dict[str, int]:
    line, column = getattr(exc, "line", 0), getattr(exc, "column", 0)
    return {"line": line, "column": column} if line else {}


def _load_claims(path: Path) -> list[Any]:
    from affidavit.policy import PolicyEvaluationError, claims_from_list, claims_from_mapping

    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise PolicyEvaluationError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise PolicyEvaluationError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, list):
        return claims_from_list(data)
    if isinstance(data, dict):
        return claims_from_mapping(data)
    raise PolicyEvaluationError(f"{path}: expected a list of claims or an object type -> value")


def _eval(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json, print_table
    from affidavit.policy import PolicyError, compile_policy, evaluate

    try:
        policy = compile_policy(_read_text(args.file), lenient=args.lenient)
        outcome = evaluate(policy, _load_claims(args.claims))
    except PolicyError as exc:
        if args.json:
            print_json({"error": exc.to_dict(), **_position(exc)})
            return 1
        return _fail(exc)
    if args.json:
        print_json(
            {
                "authorized": outcome.authorized,
                "reason": outcome.reason,
                "claims": outcome.claims,
                "properties": outcome.properties,
                "policy_hash": policy.hash,
                "warnings": list(policy.warnings),
            }
        )
        return 0
    print_fields([("authorized", str(outcome.authorized).lower()), ("reason", outcome.reason)])
    if outcome.claims:
        print("\nissued claims:")
        print_table(["type", "value"], [(k, json.dumps(v)) for k, v in outcome.claims.items()])
    if outcome.properties:
        print("\nproperties:")
        print_table(["name", "value"], [(k, json.dumps(v)) for k, v in outcome.properties.items()])
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _hash(args: argparse.Namespace) -> int:
    from affidavit.policy import PolicyError, policy_hash

    try:
        print(policy_hash(_read_text(args.file)))
    except PolicyError as exc:
        return _fail(exc)
    return 0
