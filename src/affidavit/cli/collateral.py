"""``affidavit collateral``: fetch offline bundles from Intel PCS / a PCCS, import them, list the cache.

``fetch`` runs where a network exists and writes a bundle (the offline JSON form, one file per
platform); ``import`` verifies a bundle's items and stores them in the service's collateral cache
(the same database as the service); ``list`` shows what the cache holds and until when it is valid.
``import`` also takes AMD KDS files (VCEK DER or PEM, ``cert_chain`` PEM, the ARK-signed CRL), verified
against the pinned AMD roots before they are stored, for SevSnpVm without KDS access.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import iso_time, service_url
from affidavit.cli.output import print_json, print_table

DEFAULT_DATABASE_URL = "sqlite:///var/affidavit.db"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get("AFFIDAVIT_" + name) or default


def _fmspc(text: str) -> str:
    try:
        if len(bytes.fromhex(text)) == 6:
            return text.upper()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"an FMSPC is 12 hex digits, not {text!r}")


def _database(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=_env("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="the service database holding the collateral cache: sqlite:///path or postgresql://... "
        f"(env AFFIDAVIT_DATABASE_URL; default {DEFAULT_DATABASE_URL})",
    )


def _trust(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-root",
        dest="trust_roots",
        type=Path,
        action="append",
        default=[],
        help="PEM root certificate(s) collateral must chain to (repeatable; default: the Intel SGX Root CA)",
    )
    p.add_argument("--at", type=iso_time, default=None, help="verify as of this time (ISO 8601; default now)")


def register(sub: Any) -> None:
    group = sub.add_parser("collateral", help="fetch, import and list Intel SGX/TDX and AMD collateral")
    cmds = group.add_subparsers(dest="collateral_command", metavar="ACTION", required=True)

    fetch = cmds.add_parser("fetch", help="download collateral from Intel PCS or a PCCS into a bundle")
    fetch.add_argument("--fmspc", type=_fmspc, action="append", required=True, help="FMSPC (repeatable)")
    fetch.add_argument(
        "--ca",
        choices=("processor", "platform"),
        action="append",
        help="PCK CA type of the platforms (repeatable; default: both)",
    )
    fetch.add_argument("--tee", choices=("sgx", "tdx"), default="sgx", help="SGX or TDX collateral (sgx)")
    fetch.add_argument("--out", type=Path, required=True, help="bundle directory, or a file ending in .json")
    fetch.add_argument(
        "--pcs-url",
        type=service_url,
        default=_env("PCS_URL", "https://api.trustedservices.intel.com"),
        help="Intel PCS or PCCS base URL (env AFFIDAVIT_PCS_URL)",
    )
    fetch.add_argument(
        "--api-key", default=_env("PCS_API_KEY"), help="PCS subscription key (env AFFIDAVIT_PCS_API_KEY)"
    )
    fetch.add_argument(
        "--update", choices=("standard", "early"), default="standard", help="TCB update (standard)"
    )
    fetch.add_argument(
        "--root-ca-crl-url", default=None, help="where the root CA CRL is (default: per PCS/PCCS)"
    )
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    fetch.add_argument("--retries", type=int, default=2, help="retries of transient failures (2)")
    _trust(fetch)
    fetch.add_argument("--json", action="store_true", help="print JSON")
    fetch.set_defaults(func=_fetch)

    imp = cmds.add_parser("import", help="verify a bundle and store it in the collateral cache")
    imp.add_argument("bundle", type=Path,
                     help="bundle directory or JSON file; other files in it (or a non-JSON file) are AMD KDS "
                          "files: VCEK (DER/PEM), cert_chain PEM, ARK-signed CRL (DER/PEM)")
    _database(imp)
    _trust(imp)
    imp.add_argument("--snp-trust-root", dest="snp_trust_roots", action="append", default=[], metavar="PEM",
                     help="AMD ARK certificates AMD files must chain to (repeatable; default: AMD's Milan, "
                          "Genoa and Turin roots shipped with Affidavit)")
    imp.add_argument("--snp-crl-kind", choices=("vcek", "vlek"), default=None,
                     help="the chain the ARK-signed CRLs among the AMD files are for: KDS's "
                          "/vcek/v1/{product}/crl or /vlek/v1/{product}/crl (they look alike; without "
                          "it such a CRL is refused)")
    imp.add_argument("--json", action="store_true", help="print JSON")
    imp.set_defaults(func=_import)

    ls = cmds.add_parser(
        "list", help="what the collateral cache holds, for which platforms, valid until when"
    )
    _database(ls)
    ls.add_argument("--at", type=iso_time, default=None, help="judge validity as of this time (default: now)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)


def _anchors(args: argparse.Namespace) -> list[Any]:
    from affidavit.collateral.provider import anchor_keys

    if not args.trust_roots:
        return anchor_keys(None)
    return [k for path in args.trust_roots for k in anchor_keys(path)]


def _fetch(args: argparse.Namespace) -> int:
    import asyncio

    from affidavit.collateral import CollateralError
    from affidavit.collateral.bundle import write_bundle
    from affidavit.collateral.items import CollateralSet
    from affidavit.collateral.pcs import PcsClient, PcsConfig
    from affidavit.collateral.verify import verify_item

    config = PcsConfig(
        base_url=args.pcs_url,
        api_key=args.api_key,
        update=args.update,
        timeout=args.timeout,
        retries=args.retries,
        root_ca_crl_url=args.root_ca_crl_url,
    )
    cas = args.ca or ["processor", "platform"]

    async def run() -> list[CollateralSet]:
        client = PcsClient(config)
        try:
            return list(
                await asyncio.gather(*(client.fetch(f, ca, args.tee) for f in args.fmspc for ca in cas))
            )
        finally:
            await client.aclose()

    sets = asyncio.run(run())
    anchors, now = _anchors(args), args.at or datetime.now(UTC)
    for s in sets:  # a bundle holds only collateral that verifies now
        for item in s.items:
            try:
                verify_item(item, anchors, now, s.root_ca_crl if item is not s.root_ca_crl else None)
            except CollateralError as exc:
                raise CollateralError(
                    f"{args.pcs_url} served bad collateral: {exc.message}", code=exc.code
                ) from exc
    written = write_bundle(sets, args.out)
    rows = [_set_row(s, p) for s, p in zip(sets, written, strict=True)]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["FILE", "TEE", "FMSPC", "CA", "TCB EVAL", "VALID UNTIL"], [list(r.values()) for r in rows]
        )
    return 0


def _set_row(s: Any, path: Path) -> dict[str, Any]:
    return {
        "file": str(path),
        "tee": s.tee,
        "fmspc": s.fmspc,
        "ca": s.ca,
        "tcb_evaluation_data_number": s.tcb_info.number,
        "valid_until": _iso(s.next_update),
    }


def _iso(when: datetime) -> str:
    from affidavit.timefmt import format_time

    return format_time(when)


def _amd_files(bundle: Path) -> list[Path]:
    """The files of ``bundle`` that are not Intel JSON bundles (nor hidden): AMD KDS files."""
    if bundle.is_file():
        return [] if bundle.suffix == ".json" else [bundle]
    if not bundle.is_dir():
        return []
    return sorted(p for p in bundle.rglob("*") if p.is_file() and p.suffix != ".json"
                  and not p.name.startswith("."))


def _one_crl_per_kind(parsed: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """``parsed`` with every file refused whose CRL shares its key with a different CRL of another file:
    one ``--snp-crl-kind`` over a directory holding both KDS CRLs would file one under the wrong chain."""
    from affidavit.collateral import CollateralError
    from affidavit.collateral.amd import AMD_CRL

    bodies: dict[Any, set[str]] = {}
    for _, found in parsed:
        if not isinstance(found, CollateralError):
            for item in found.items:
                if item.key.kind == AMD_CRL:
                    bodies.setdefault(item.key, set()).add(item.body)
    clash = {key for key, seen in bodies.items() if len(seen) > 1}
    if not clash:
        return parsed
    out: list[tuple[Path, Any]] = []
    for path, found in parsed:
        keys = set() if isinstance(found, CollateralError) else {i.key for i in found.items} & clash
        if keys:
            found = CollateralError(
                f"another file holds a different CRL for {', '.join(sorted(map(str, keys)))}: import the "
                "VCEK and VLEK CRLs separately, each with its --snp-crl-kind", code="collateral_invalid")
        out.append((path, found))
    return out


def _import(args: argparse.Namespace) -> int:
    from affidavit.cli.arguments import read_input
    from affidavit.collateral import CollateralError
    from affidavit.collateral.amd import amd_file_items, with_chains
    from affidavit.collateral.bundle import read_bundle
    from affidavit.collateral.cache import CollateralCache
    from affidavit.service.snp_route import load_trust

    amd_files = _amd_files(args.bundle)
    entries = [] if amd_files and args.bundle.is_file() else read_bundle(args.bundle)
    amd_trust = load_trust(args.snp_trust_roots)
    parsed: list[tuple[Path, Any]] = []  # (file, AmdFile or the CollateralError it raised)
    for path in amd_files:
        try:
            parsed.append((path, amd_file_items(read_input(path, "AMD collateral file"), amd_trust,
                                                crl_kind=args.snp_crl_kind)))
        except CollateralError as exc:
            parsed.append((path, exc))
    parsed = _one_crl_per_kind(parsed)
    wall = datetime.now(UTC)
    now = args.at or wall
    chains = [i for _, f in parsed if not isinstance(f, CollateralError) for i in f.items]
    cache = CollateralCache.open(args.database_url, _anchors(args), amd_trust=with_chains(amd_trust, chains))
    rows: list[dict[str, Any]] = []
    failed = 0

    def offer(path: Path, items: Any) -> None:
        nonlocal failed
        for item in items:
            try:
                result = (
                    "stored"
                    if cache.offer(item, now, wall)
                    else "kept the cached (newer or same) document"
                )
            except CollateralError as exc:
                failed += 1
                result = f"rejected: {exc}"
            rows.append({"file": str(path), "item": str(item.key), "result": result})

    try:
        for entry in entries:
            if entry.collateral is None:
                failed += 1
                rows.append({"file": str(entry.path), "item": "-", "result": f"unreadable: {entry.error}"})
                continue
            offer(entry.path, entry.collateral.items)
        for path, found in parsed:
            if isinstance(found, CollateralError):
                failed += 1
                rows.append({"file": str(path), "item": "-", "result": f"unreadable: {found.message}"})
                continue
            offer(path, found.items)
            rows.extend({"file": str(path), "item": "-", "result": note} for note in found.notes)
    finally:
        cache.close()
    if not entries and not amd_files:
        raise CollateralError(f"no collateral files in {args.bundle}", code="collateral_not_found")
    if args.json:
        print_json(rows)
    else:
        print_table(["FILE", "ITEM", "RESULT"], [list(r.values()) for r in rows])
    return 1 if failed else 0


def _list(args: argparse.Namespace) -> int:
    from affidavit.cli.arguments import existing_database
    from affidavit.collateral.db import CollateralDb

    now = args.at or datetime.now(UTC)
    db = CollateralDb(existing_database(args.database_url))
    try:
        stored = db.all()
    finally:
        db.close()
    rows = []
    for item, stored_at in stored:
        k = item.key
        rows.append(
            {
                "kind": k.kind,
                "tee": k.tee or "-",
                "fmspc": k.name if k.kind == "tcb_info" else "-",
                "ca": k.name if k.kind == "pck_crl" else "-",
                "tcb_evaluation_data_number": item.number if k.kind in ("tcb_info", "qe_identity") else None,
                "issued": _iso(item.issue_date),
                "next_update": _iso(item.next_update),
                "status": "valid" if now <= item.next_update else "expired",
                "stored_at": _iso(stored_at),
            }
        )
    if args.json:
        print_json(rows)
    else:
        headers = ["KIND", "TEE", "FMSPC", "CA", "TCB EVAL", "ISSUED", "NEXT UPDATE", "STATUS", "STORED"]
        print_table(headers, [["-" if v is None else v for v in r.values()] for r in rows])
    return 0
