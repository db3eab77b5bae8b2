"""Remote management of a running service: ``affidavit policy get|set|reset|history|rollback|diff`` and
``policy sign`` (offline), registered into the ``policy`` group; ``affidavit certificates`` uses the same
connection flags (:func:`connection_flags`, :func:`client_for`).

Authentication is a bearer token: ``--admin-token-file`` (the service's ``<data-dir>/admin-token``, or
``AFFIDAVIT_ADMIN_TOKEN_FILE``), or ``--oidc-token-file`` holding a JWT from the service's OIDC issuer.
Changes are sent as MAA's JWS envelopes: unsigned, or signed with ``--key``/``--cert`` (isolated mode).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from affidavit.cli.arguments import check_writable, read_input, read_text_input, service_url, write_output
from affidavit.cli.errors import CliError, UsageError
from affidavit.cli.output import print_fields, print_json, print_table


def attestation_type_arg(text: str) -> str:
    from affidavit.errors import AffidavitError
    from affidavit.service.common import attestation_type

    try:
        return attestation_type(text)
    except AffidavitError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, type=service_url, help="the service's base URL")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--admin-token-file", default=os.environ.get("AFFIDAVIT_ADMIN_TOKEN_FILE"),
                      help="file with the management bearer token (the service's <data-dir>/admin-token; "
                      "env AFFIDAVIT_ADMIN_TOKEN_FILE)")
    auth.add_argument("--oidc-token-file", help="file with a bearer JWT from the service's OIDC issuer")
    p.add_argument("--ca-file", help="CA bundle for the service's TLS certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the service's TLS certificate")
    p.add_argument("--json", action="store_true", help="print JSON")


def signer_flags(p: argparse.ArgumentParser, what: str = "the JWS") -> None:
    p.add_argument("--key", help=f"PEM RSA private key to sign {what} with (isolated mode)")
    p.add_argument("--cert", help="PEM certificate of that key, optionally followed by its chain")


def client_for(args: argparse.Namespace) -> Any:
    from affidavit.client.manage import ManagementClient

    token = None
    path = args.admin_token_file or args.oidc_token_file
    if path:
        token = read_text_input(path, "token file").strip()
        if not token:
            raise CliError(f"token file {path} is empty", code="bad_input")
    tls: bool | str = False if args.insecure else (args.ca_file or True)
    return ManagementClient(args.url, bearer_token=token, verify=tls)


def load_signer(args: argparse.Namespace) -> tuple[Any, list[Any]] | None:
    """(private key, certificate chain) from --key/--cert, or None when neither is given."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not args.key and not args.cert:
        return None
    if not (args.key and args.cert):
        raise UsageError("--key and --cert go together")
    try:
        key = load_pem_private_key(read_input(args.key, "--key"), password=None)
    except (ValueError, TypeError) as exc:
        message = f"--key {args.key}: not an unencrypted PEM private key ({exc})"
        raise CliError(message, code="bad_input") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CliError(f"--key {args.key}: policy JWS are RS256, so the key must be RSA", code="bad_input")
    try:
        chain = x509.load_pem_x509_certificates(read_input(args.cert, "--cert"))
    except ValueError:
        raise CliError(f"--cert {args.cert}: not a PEM certificate", code="bad_input") from None
    return key, chain


def jws_for(payload: dict[str, Any] | None, signer: tuple[Any, list[Any]] | None) -> str:
    from affidavit.tokens import sign_jws, unsigned_policy_jws
    from affidavit.tokens.b64 import b64url_encode

    if signer is not None:
        return sign_jws(payload, signer[0], signer[1])
    if payload is None:
        return "eyJhbGciOiJub25lIn0.."
    if set(payload) == {"AttestationPolicy"}:
        from affidavit.tokens.b64 import b64url_decode

        return unsigned_policy_jws(b64url_decode(payload["AttestationPolicy"]).decode("utf-8"))
    import json

    return "eyJhbGciOiJub25lIn0." + b64url_encode(json.dumps(payload).encode()) + "."


def policy_jws(text: str, signer: tuple[Any, list[Any]] | None) -> str:
    from affidavit.tokens.b64 import b64url_encode

    return jws_for({"AttestationPolicy": b64url_encode(text.encode("utf-8"))}, signer)


def _looks_like_jws(text: str) -> bool:
    t = text.strip()
    return t.count(".") == 2 and not any(c.isspace() for c in t) and t.startswith("ey")


def _policy_input(path: str, signer: tuple[Any, list[Any]] | None) -> tuple[str, str]:
    """(policy text, JWS to send) from a policy file or a ready JWS (``policy sign`` output)."""
    from affidavit.tokens import TokenError, parse_jws, policy_text_from_jws

    text = read_text_input(path, "policy file")
    if _looks_like_jws(text):
        if signer is not None:
            raise UsageError(f"{path} is already a JWS; --key/--cert sign policy texts")
        try:
            inner = policy_text_from_jws(parse_jws(text.strip()))
        except TokenError as exc:
            raise CliError(f"{path}: {exc.message}", code=exc.code) from None
        if inner is None:
            raise CliError(f"{path} is a JWS without a policy", code="bad_input")
        return inner, text.strip()
    _compile(text, path)
    return text, policy_jws(text, signer)


def _compile(text: str, where: str) -> Any:
    from affidavit.policy import PolicyParsingError, compile_policy

    try:
        return compile_policy(text)
    except PolicyParsingError as exc:
        raise PolicyParsingError(f"{where}: {exc.message}") from None


def _signer_text(claims: dict[str, Any]) -> str:
    jwk = claims.get("x-ms-policy-signer")
    if not isinstance(jwk, dict) or not jwk.get("x5c"):
        return "unsigned"
    import base64

    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    except (ValueError, TypeError):
        return "signed (unreadable certificate)"
    return f"signed by {cert.subject.rfc4514_string()}"


def register_policy_commands(sub: Any) -> None:
    get = sub.add_parser("get", help="print the policy a running service applies to a type")
    connection_flags(get)
    _type(get)
    get.add_argument("--out", help="write the policy text to this file")
    get.set_defaults(func=_get)

    put = sub.add_parser("set", help="set a type's policy on a running service")
    put.add_argument("file", help="the policy text, or a JWS made by `affidavit policy sign`")
    connection_flags(put)
    _type(put)
    signer_flags(put)
    put.set_defaults(func=_set)

    reset = sub.add_parser("reset", help="return a type to its default policy on a running service")
    connection_flags(reset)
    _type(reset)
    signer_flags(reset)
    reset.set_defaults(func=_reset)

    hist = sub.add_parser("history", help="list a type's policy changes (text, hash, time, caller, signer)")
    connection_flags(hist)
    _type(hist)
    hist.add_argument("--limit", type=_limit, default=20, help="how many of the newest changes (1-100; 20)")
    hist.add_argument("--show", metavar="HASH", help="print the text of the policy with this hash (prefix)")
    hist.set_defaults(func=_history)

    roll = sub.add_parser("rollback", help="set again the policy of an earlier hash, byte for byte")
    roll.add_argument("hash", help="the policy hash (x-ms-policy-hash) to return to, or a unique prefix")
    connection_flags(roll)
    _type(roll)
    signer_flags(roll, "the restored policy (default: resend the JWS it was set with)")
    roll.set_defaults(func=_rollback)

    sign = sub.add_parser("sign", help="sign a policy offline: a JWS for `policy set` or the Azure SDK")
    sign.add_argument("file", help="the policy text")
    sign.add_argument("--key", required=True, help="PEM RSA private key of a policy management certificate")
    sign.add_argument("--cert", required=True, help="PEM certificate of that key (and its chain)")
    sign.add_argument("--out", help="write the JWS here instead of standard output")
    sign.add_argument("--json", action="store_true", help="print JSON")
    sign.set_defaults(func=_sign)

    diff = sub.add_parser(
        "diff", help="evaluate a candidate policy on recent attestations (serve --shadow-samples) and list "
        "the outcomes that would flip")
    diff.add_argument("file", help="the candidate policy text (or a JWS)")
    connection_flags(diff)
    _type(diff)
    diff.set_defaults(func=_diff)


def _type(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", required=True, type=attestation_type_arg, dest="att_type",
                   help="attestation type: SgxEnclave, OpenEnclave, TdxVm or Tpm")


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"a number from 1 to 100, not {text!r}")
    return int(text)


def policy_text_of(claims: dict[str, Any]) -> str | None:
    """The policy text carried in a GET's ``x-ms-policy`` (None: nothing set and no default)."""
    from affidavit.client import ClientError
    from affidavit.tokens import TokenError, parse_jws, policy_text_from_jws

    jws = claims.get("x-ms-policy")
    if not jws:
        return None
    try:
        return policy_text_from_jws(parse_jws(str(jws)))
    except TokenError as exc:
        message = f"the service sent an unreadable policy: {exc.message}"
        raise ClientError(message, code="bad_response") from None


def _get(args: argparse.Namespace) -> int:
    from affidavit.policy import policy_hash

    check_writable(args.out, "--out")
    with client_for(args) as client:
        claims = client.get_policy(args.att_type)
    text = policy_text_of(claims)
    digest = policy_hash(text) if text else None
    if args.out:
        write_output(args.out, text or "", "--out")
    if args.json:
        print_json({"type": args.att_type, "text": text, "hash": digest, "jws": claims.get("x-ms-policy")})
    elif not args.out:
        sys.stdout.write((text or "") + ("" if (text or "").endswith("\n") or not text else "\n"))
        if not text:
            print(f"no policy: {args.att_type} denies every attestation until one is set", file=sys.stderr)
    else:
        print(f"policy of {args.att_type} (hash {digest}) written to {args.out}", file=sys.stderr)
    return 0


def _set(args: argparse.Namespace) -> int:
    from affidavit.policy import policy_hash

    signer = load_signer(args)
    text, jws = _policy_input(args.file, signer)
    with client_for(args) as client:
        claims = client.set_policy(args.att_type, jws)
    result = {"type": args.att_type, "result": claims.get("x-ms-policy-result"), "hash": policy_hash(text),
              "token_hash": claims.get("x-ms-policy-token-hash"), "signer": _signer_text(claims)}
    if args.json:
        print_json(result)
    else:
        print(f"policy of {args.att_type} set: hash {result['hash']} ({result['signer']})")
    return 0


def _reset(args: argparse.Namespace) -> int:
    signer = load_signer(args)
    with client_for(args) as client:
        claims = client.reset_policy(args.att_type, jws_for(None, signer))
    if args.json:
        print_json({"type": args.att_type, "result": claims.get("x-ms-policy-result")})
    else:
        print(f"policy of {args.att_type} reset to the default")
    return 0


def _history(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        answer = client.history(args.att_type, limit=args.limit)
    entries = answer["history"]
    if args.show:
        entry = _find(entries, args.show)
        if args.json:
            print_json(entry)
        else:
            sys.stdout.write(entry.get("text") or "")
        return 0
    if args.json:
        print_json(answer)
        return 0
    if not entries:
        print(f"no policy changes recorded for {args.att_type}")
        return 0
    rows = []
    for e in entries:
        signer = e.get("signer") or {}
        current = "*" if e.get("hash") and e.get("hash") == answer.get("current") else ""
        rows.append((e.get("id"), e.get("at"), e.get("action"), (e.get("hash") or "-") + current,
                     e.get("actor"), signer.get("subject", "-")))
    print_table(["ID", "AT", "ACTION", "HASH", "CALLER", "SIGNER"], rows)
    print("\n* the policy in force" if answer.get("current") else "\nthe default policy is in force")
    return 0


def _find(entries: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """The newest history entry that set a policy whose hash is ``wanted`` (or starts with it)."""
    matches = [e for e in entries if e.get("action") == "set" and isinstance(e.get("hash"), str)
               and e["hash"].startswith(wanted)]
    hashes = {e["hash"] for e in matches}
    if not matches:
        raise CliError(f"no policy with hash {wanted!r} in the recent history", code="not_found")
    if len(hashes) > 1:
        raise UsageError(f"hash prefix {wanted!r} is ambiguous: {', '.join(sorted(hashes))}")
    entry = matches[-1]
    if entry.get("text") is None:
        raise CliError(f"the history entry of {wanted} predates stored policy texts", code="not_found")
    return entry


def _rollback(args: argparse.Namespace) -> int:
    from affidavit.policy import policy_hash

    signer = load_signer(args)
    with client_for(args) as client:
        entry = _find(client.history(args.att_type, limit=100)["history"], args.hash)
        text = entry["text"]
        jws = policy_jws(text, signer) if signer is not None or not entry.get("jws") else entry["jws"]
        claims = client.set_policy(args.att_type, jws)
    restored = policy_hash(text)
    if restored != entry["hash"]:  # the store keeps texts byte for byte, so this would be a bug
        raise CliError(f"rollback restored hash {restored}, not {entry['hash']}", code="rollback_mismatch")
    result = {"type": args.att_type, "hash": restored, "from_entry": entry.get("id"),
              "result": claims.get("x-ms-policy-result"), "signer": _signer_text(claims)}
    if args.json:
        print_json(result)
    else:
        print(f"policy of {args.att_type} rolled back to {restored} (history entry {entry.get('id')}, "
              f"{result['signer']})")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from affidavit.policy import policy_hash

    check_writable(args.out, "--out")
    text = read_text_input(args.file, "policy file")
    _compile(text, args.file)
    signer = load_signer(args)
    assert signer is not None
    jws = policy_jws(text, signer)
    if args.out:
        write_output(args.out, jws + "\n", "--out")
    if args.json:
        print_json({"jws": jws, "hash": policy_hash(text), "signer": signer[1][0].subject.rfc4514_string()})
    elif not args.out:
        print(jws)
    else:
        print(f"signed policy (hash {policy_hash(text)}) written to {args.out}", file=sys.stderr)
    return 0


def _diff(args: argparse.Namespace) -> int:
    text = read_text_input(args.file, "policy file")
    if not _looks_like_jws(text):
        _compile(text, args.file)
    with client_for(args) as client:
        answer = client.diff(args.att_type, text)
    if args.json:
        print_json(answer)
        return 0
    print_fields([
        ("type", answer.get("attestationType")),
        ("current policy", answer.get("current_hash")),
        ("candidate", answer.get("candidate_hash")),
        ("samples", answer.get("samples")),
        ("would flip", answer.get("flips")),
        ("unchanged", answer.get("unchanged")),
    ])
    flipped = answer["flipped"]
    if flipped:
        print()
        print_table(["AT", "NOW", "CANDIDATE", "WHY"], [
            (f.get("at"), _verdict(f.get("current")), _verdict(f.get("candidate")),
             (f.get("candidate") or {}).get("reason", "")) for f in flipped
        ])
    if not answer.get("samples"):
        print("\nno recent attestations of this type to compare on", file=sys.stderr)
    return 0


def _verdict(side: Any) -> str:
    return "permit" if isinstance(side, dict) and side.get("authorized") else "deny"
