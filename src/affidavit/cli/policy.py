"""``affidavit policy``: check, evaluate, hash and sign policies offline; get, set, reset, list the history
of, roll back and diff the policies of a running service (``--url``)."""

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
    check.add_argument("file", type=Path, help="the policy text")
    check.add_argument("--lenient", action="store_true", help="accept published-but-invalid forms")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_check)

    ev = sub.add_parser("eval", help="evaluate a policy against incoming claims")
    ev.add_argument("file", type=Path, help="the policy text")
    ev.add_argument(
        "--claims",
        type=Path,
        required=True,
        help='JSON: [{"type","value","valueType","issuer"}, ...] or {type: value}',
    )
    ev.add_argument("--lenient", action="store_true", help="accept published-but-invalid forms")
    ev.add_argument("--explain", action="store_true", help="trace every rule: which conditions held, why not")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(func=_eval)

    h = sub.add_parser("hash", help="print the policy's x-ms-policy-hash")
    h.add_argument("file", type=Path, help="the policy text")
    h.add_argument("--json", action="store_true", help="print JSON")
    h.set_defaults(func=_hash)

    from affidavit.cli import manage

    manage.register_policy_commands(sub)


def _read_text(path: Path) -> str:
    from affidavit.cli.arguments import read_text_input

    return read_text_input(path, "policy file")


def _fail(exc: Exception, as_json: bool = False, extra: dict[str, Any] | None = None) -> int:
    from affidavit.cli.errors import report

    return report(exc, as_json=as_json, extra=extra)


def _check(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json
    from affidavit.policy import PolicyError, compile_policy

    try:
        policy = compile_policy(_read_text(args.file), lenient=args.lenient)
    except PolicyError as exc:
        return _fail(exc, args.json, {"valid": False, **_position(exc)})
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
    from affidavit.cli.arguments import read_input
    from affidavit.policy import PolicyEvaluationError, claims_from_list, claims_from_mapping

    raw = read_input(path, "claims file")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PolicyEvaluationError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, list):
        return claims_from_list(data)
    if isinstance(data, dict):
        return claims_from_mapping(data)
    raise PolicyEvaluationError(f"{path}: expected a list of claims or an object type -> value")


def _eval(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_fields, print_json, print_table
    from affidavit.policy import PolicyError, compile_policy, evaluate, explain

    text = _read_text(args.file)
    incoming = _load_claims(args.claims)
    trace = None
    try:
        policy = compile_policy(text, lenient=args.lenient)
        if args.explain:
            explanation = explain(policy, incoming, reveal_policy=True)
            outcome, trace = explanation.outcome, explanation
        else:
            outcome = evaluate(policy, incoming)
    except PolicyError as exc:
        return _fail(exc, args.json, _position(exc))
    reason = trace.denial_message(reveal_policy=True) if trace is not None else outcome.reason
    if args.json:
        doc = {
            "authorized": outcome.authorized,
            "reason": reason,
            "claims": outcome.claims,
            "properties": outcome.properties,
            "policy_hash": policy.hash,
            "warnings": list(policy.warnings),
        }
        if trace is not None:
            doc["trace"] = trace.to_dict()["rules"]
        print_json(doc)
        return 0
    print_fields([("authorized", str(outcome.authorized).lower()), ("reason", reason)])
    if trace is not None:
        print("\ntrace:")
        print_table(["RULE", "LINE:COL", "ACTION", "FIRED", "STOPPED AT"], [
            (f"{r.section} #{r.index}", f"{r.line}:{r.column}", r.action, "yes" if r.fired else "no",
             _stopped(r)) for r in trace.rules
        ])
    if outcome.claims:
        print("\nissued claims:")
        print_table(["type", "value"], [(k, json.dumps(v)) for k, v in outcome.claims.items()])
    if outcome.properties:
        print("\nproperties:")
        print_table(["name", "value"], [(k, json.dumps(v)) for k, v in outcome.properties.items()])
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _stopped(rule: Any) -> str:
    cond = rule.failed
    if cond is None:
        return "-"
    what = f"{cond.claim_type or 'claim'}" + (f" {cond.tests}" if cond.tests else "")
    present = ", ".join(cond.present) or "none"
    if cond.negated:
        return f"{cond.line}:{cond.column} {what} present (needs absent)"
    return f"{cond.line}:{cond.column} no {what} (present: {present})"


def _hash(args: argparse.Namespace) -> int:
    from affidavit.cli.output import print_json
    from affidavit.policy import policy_hash

    digest = policy_hash(_read_text(args.file))
    if args.json:
        print_json({"file": str(args.file), "hash": digest})
    else:
        print(digest)
    return 0
