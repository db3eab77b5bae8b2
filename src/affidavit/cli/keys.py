"""``affidavit keys``: list and rotate the token signing keys kept in the database (docs/keys.md).

A rotation stores the new key as *next*: servers publish it in ``/certs`` at their next key-ring reload
and sign with it from ``--delay`` on (default 1 h: longer than the servers' reload interval plus the
relying parties' JWKS refetch interval); ``--now`` makes it current at once, for an emergency, accepting
that relying parties may briefly meet an unknown ``kid``. The old key stays in ``/certs`` until the tokens
it signed have expired (``--max-token-lifetime``), and the next rotation after that deletes it.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from affidavit.cli.arguments import RSA_KEY_SIZES, duration
from affidavit.cli.output import print_fields, print_json, print_table

DEFAULT_DATABASE_URL = "sqlite:///var/affidavit.db"
DEFAULT_ISSUER = "http://127.0.0.1:8080"
KEK_FILE = "key-encryption-key"


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

    ls = cmds.add_parser("list", help="show stored keys: where they live, their state and schedule")
    _common(ls)
    ls.set_defaults(func=_list)

    rot = cmds.add_parser("rotate", help="add a new key as next (current after --delay); retire the old one")
    _common(rot)
    rot.add_argument("--delay", type=duration, default="1h",
                     help="how long the new key is only published before it signs (default 1h; must exceed "
                          "the servers' --key-reload-interval plus relying parties' JWKS refetch interval)")
    rot.add_argument("--now", action="store_true",
                     help="emergency: the new key signs at once (relying parties may briefly miss its kid)")
    rot.add_argument("--algorithm", choices=("RS256", "ES256"), default=None,
                     help="algorithm of the new key (default: the current key's, else RS256)")
    rot.add_argument("--bits", type=int, choices=RSA_KEY_SIZES, default=None,
                     help="RSA size (default: the current key's, else 2048)")
    rot.add_argument(
        "--issuer",
        default=_env("ISSUER"),
        help="token issuer URL for the certificate (env AFFIDAVIT_ISSUER; default: the current key's, "
        f"else {DEFAULT_ISSUER})",
    )
    rot.add_argument("--key-encryption-key-file", type=Path, default=_env("KEY_ENCRYPTION_KEY_FILE"),
                     help="the servers' key-encryption key (env AFFIDAVIT_KEY_ENCRYPTION_KEY_FILE; default "
                          f"for SQLite: {KEK_FILE} beside the database)")
    rot.add_argument("--signing-key", default=_env("SIGNING_KEY"), metavar="pkcs11:token=...[;object=...]",
                     help="make the key on this PKCS#11 token (object= names an existing key, or the label "
                          "of the one generated); default: a software key sealed in the database")
    rot.add_argument("--pkcs11-module", default=_env("PKCS11_MODULE"),
                     help="PKCS#11 module, when the servers sign in an HSM (as serve's --pkcs11-module)")
    rot.add_argument("--pkcs11-pin-file", type=Path, default=_env("PKCS11_PIN_FILE"),
                     help="file holding the token's user PIN (as serve's --pkcs11-pin-file)")
    rot.set_defaults(func=_rotate)


def _time(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds")


def _describe(stored: Any, now: datetime, lifetime: timedelta) -> dict[str, Any]:
    from cryptography.x509.oid import NameOID

    from affidavit.store import from_stored

    key = from_stored(stored, private=False)
    state = stored.state(now)
    unpublished = None if stored.retired_at is None else stored.retired_at + lifetime
    if state == "retired" and unpublished is not None and now >= unpublished:
        state = "expired"
    cn = key.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "kid": stored.kid,
        "location": "database (encrypted)" if stored.location == "database" and stored.sealed is not None
        else "database (PLAINTEXT: start a server to seal it)" if stored.location == "database"
        else stored.location,
        "algorithm": key.algorithm,
        "state": state,
        "bits": key.bits,
        "published_at": _time(stored.created_at),
        "current_at": _time(stored.current_at),
        "retired_at": _time(stored.retired_at),
        "unpublished_at": _time(unpublished),
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
        cols = ("kid", "state", "algorithm", "location", "published_at", "current_at", "retired_at",
                "unpublished_at")
        print_table([c.upper() for c in cols], [[r[c] or "-" for c in cols] for r in rows])
    return 0


def _current(store: Any) -> Any:
    from affidavit.store import from_stored

    stored = store.current_signing_key()
    return None if stored is None else from_stored(stored, private=False)


def _issuer_of(key: Any) -> str | None:
    from cryptography import x509

    if key is None:
        return None
    try:
        san = key.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _kek(args: argparse.Namespace, store: Any) -> Any:
    """The KEK the servers use: the flag, else (SQLite) the file beside the database, created when the
    database holds no sealed key yet. A KEK other than the one existing keys are sealed under is refused:
    the servers could not open the new key."""
    from affidavit.store import TPM_CONTEXT_SECRET, StoreError, create_kek_file, read_kek_file

    if args.key_encryption_key_file is not None:
        kek = read_kek_file(args.key_encryption_key_file)
    else:
        parts = urlsplit(args.database_url)
        if parts.scheme != "sqlite" or not parts.path[1:] or parts.path[1:] == ":memory:":
            raise StoreError("give --key-encryption-key-file (the servers' key-encryption key)",
                             code="key_encryption")
        kek, _ = create_kek_file(Path(unquote(parts.path[1:])).parent / KEK_FILE)
    used = {k.kek_id for k in store.list_signing_keys() if k.kek_id is not None}
    secret = store.get_secret(TPM_CONTEXT_SECRET)  # every server start seals it under its KEK
    if secret is not None:
        used.add(secret.kek_id)
    if used and kek.id not in used:
        raise StoreError(f"the stored keys are sealed under key-encryption key {', '.join(sorted(used))}, "
                         f"not {kek.id}: give the servers' --key-encryption-key-file", code="key_encryption")
    return kek


def _actor() -> str:
    """Who rotated, for the store's history: the OS account and host (``cli`` alone named nobody)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = f"uid{os.getuid()}"
    return f"cli:{user}@{socket.gethostname()}"[:500]


def _rotate(args: argparse.Namespace) -> int:
    from affidavit.store import KeyMaker, open_store, rotate_keyring

    now = datetime.now(UTC)
    lifetime = timedelta(hours=args.max_token_lifetime)
    delay = timedelta(0) if args.now else duration(args.delay)
    hsm = None
    with open_store(args.database_url) as store:
        try:
            kek = None if args.signing_key else _kek(args, store)
            before = {k.kid for k in store.list_signing_keys()}
            old = _current(store)
            issuer = args.issuer or _issuer_of(old) or DEFAULT_ISSUER
            algorithm = args.algorithm or (old.algorithm if old is not None else "RS256")
            bits = args.bits or (old.bits if old is not None and old.algorithm == "RS256" else 2048)
            key = None
            if args.signing_key:
                hsm, key = _hsm_key(args, issuer, algorithm, bits, now)
            maker = KeyMaker(issuer, algorithm, bits, hsm)
            ring = rotate_keyring(store, issuer, bits, now=now, kek=kek, delay=delay,
                                  max_token_lifetime=lifetime, actor=_actor(), maker=maker, key=key)
            after = {k.kid: k for k in store.list_signing_keys()}
        finally:
            if hsm is not None:
                hsm.close()
    new = max(after.values(), key=lambda k: k.created_at)
    result: dict[str, Any] = {
        "new": new.kid,
        "state": new.state(now),
        "current_at": _time(new.current_at),
        "location": new.location,
        "algorithm": new.algorithm,
        "current": ring.current.kid,
        "retiring": None if old is None else old.kid,
        "deleted": sorted(before - set(after)),
        "published": [k.kid for k in ring.published(now)],
        "issuer": issuer,
    }
    if args.json:
        print_json(result)
    else:
        print_fields(
            [
                ("new key", f"{result['new']} ({result['state']})"),
                ("signs from", result["current_at"]),
                ("location", result["location"]),
                ("algorithm", result["algorithm"]),
                ("retiring", result["retiring"] or "-"),
                ("deleted (expired)", ", ".join(result["deleted"]) or "-"),
                ("published in /certs", ", ".join(result["published"])),
                ("issuer", issuer),
            ]
        )
    return 0


def _hsm_key(args: argparse.Namespace, issuer: str, algorithm: str, bits: int,
    now: datetime) -> tuple[Any, Any]:
    """The token and the new key on it: the URI's object= if the token holds it, else generated (so
    labelled, or with a generated label)."""
    from affidavit.store import KeyMaker, StoreError
    from affidavit.store.pkcs11 import Pkcs11Token, Pkcs11Uri, read_pin

    uri = Pkcs11Uri.parse(args.signing_key)
    pin = read_pin(args.pkcs11_pin_file) if args.pkcs11_pin_file and uri.pin_source is None else None
    hsm = Pkcs11Token(uri, module_path=args.pkcs11_module, pin=pin)
    try:
        maker = KeyMaker(issuer, algorithm, bits, hsm)
        if uri.object is not None:
            try:
                return hsm, maker.existing(uri.object, now)
            except StoreError as exc:
                if "no key pair" not in exc.message:
                    raise
        return hsm, maker.make(now, uri.object)
    except BaseException:
        hsm.close()
        raise
