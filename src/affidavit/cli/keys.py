"""``affidavit keys``: list and rotate the token signing keys kept in the database.

Servers pick a rotation up when they next reload their key ring; the old key stays in ``/certs`` until
the tokens it signed have expired (``--max-token-lifetime``), and the next rotation after that deletes it.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from affidavit.cli.arguments import RSA_KEY_SIZES
from affidavit.cli.output import print_fields, print_json, print_table

DEFAULT_DATABASE_URL = "sqlite:///var/affidavit.db"
DEFAULT_ISSUER = "http://127.0.0.1:8080"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get("AFFIDAVIT_" + name) or default


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=_env("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="sqlite:///path or postgresql://... "
        f"(env AFFIDAVIT_DATABASE_URL; default {DEFAULT_DATABASE_URL})",
    )
    p.add_argument(
        "--max-token-lifetime",
        type=float,
        default=8.0,
        metavar="HOURS",
        help="how long a retired key stays published (the longest token lifetime; default 8)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    group = sub.add_parser("keys", help="list or rotate token signing keys")
    cmds = group.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("list", help="show stored keys and whether /certs publishes them")
    _common(ls)
    ls.set_defaults(func=_list)

    rot = cmds.add_parser("rotate", help="make a new current key; retire the old one")
    _common(rot)
    rot.add_argument("--bits", type=int, choices=RSA_KEY_SIZES, default=2048, help="RSA size (2048)")
    rot.add_argument(
        "--issuer",
        default=_env("ISSUER"),
        help="token issuer URL for the certificate (env AFFIDAVIT_ISSUER; default: the current key's, "
        f"else {DEFAULT_ISSUER})",
    )
    rot.set_defaults(func=_rotate)


def _describe(stored: Any, now: datetime, lifetime: timedelta) -> dict[str, Any]:
    from cryptography.x509.oid import NameOID

    from affidavit.store import from_stored

    key = from_stored(stored)
    if stored.retired_at is None:
        status = "current"
    elif now < stored.retired_at + lifetime:
        status = "published"
    else:
        status = "expired"
    cn = key.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "kid": stored.kid,
        "status": status,
        "bits": key.bits,
        "created_at": stored.created_at.isoformat(timespec="seconds"),
        "retired_at": None if stored.retired_at is None else stored.retired_at.isoformat(timespec="seconds"),
        "subject": str(cn[0].value) if cn else "",
    }


def _list(args: argparse.Namespace) -> int:
    from affidavit.store import open_store

    now = datetime.now(UTC)
    lifetime = timedelta(hours=args.max_token_lifetime)
    from affidavit.cli.arguments import existing_database

    with open_store(existing_database(args.database_url)) as store:
        rows = [_describe(k, now, lifetime) for k in store.list_signing_keys()]
    if args.json:
        print_json(rows)
    elif not rows:
        print("no signing keys (the service creates one on first start; or run `affidavit keys rotate`)")
    else:
        cols = ("kid", "status", "bits", "created_at", "retired_at", "subject")
        print_table([c.upper() for c in cols], [[r[c] for c in cols] for r in rows])
    return 0


def _current_issuer(store: Any) -> str | None:
    from cryptography import x509

    from affidavit.store import from_stored

    stored = store.current_signing_key()
    if stored is None:
        return None
    cert = from_stored(stored).certificate
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _rotate(args: argparse.Namespace) -> int:
    from affidavit.store import open_store, rotate_keyring

    now = datetime.now(UTC)
    lifetime = timedelta(hours=args.max_token_lifetime)
    with open_store(args.database_url) as store:
        before = {k.kid for k in store.list_signing_keys()}
        old = store.current_signing_key()
        issuer = args.issuer or _current_issuer(store) or DEFAULT_ISSUER
        ring = rotate_keyring(store, issuer, args.bits, now=now, max_token_lifetime=lifetime)
        after = {k.kid for k in store.list_signing_keys()}
    result = {
        "current": ring.current.kid,
        "retired": None if old is None else old.kid,
        "deleted": sorted(before - after),
        "published": [k.kid for k in ring.published(now)],
        "issuer": issuer,
        "bits": args.bits,
    }
    if args.json:
        print_json(result)
    else:
        print_fields(
            [
                ("new current key", result["current"]),
                ("retired", result["retired"] or "-"),
                ("deleted (expired)", ", ".join(result["deleted"]) or "-"),
                ("published in /certs", ", ".join(result["published"])),
                ("issuer", issuer),
                ("bits", args.bits),
            ]
        )
    return 0
