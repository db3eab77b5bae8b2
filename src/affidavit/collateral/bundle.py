"""Offline collateral bundles: what `affidavit collateral fetch` writes and `import` reads.

A bundle is a directory of JSON files, one per platform (TEE, FMSPC, PCK CA type), or a single such
file. Each file is one collateral object in the offline JSON form of ``shared/vectors/sgx`` (dcap-qvl's
``QuoteCollateralV3``: nine string fields, exact signed JSON texts, hex DER CRLs, PEM issuer chains), so
the service's ``DirectoryProvider`` serves a bundle as it is and any DCAP tool can read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from affidavit import strict_json
from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralSet

_MAX_FILE_BYTES = 16 * 1024 * 1024


def bundle_file_name(collateral: CollateralSet) -> str:
    """``<tee>-<FMSPC>-<ca>.json``, e.g. ``sgx-00906ED50000-processor.json``."""
    return f"{collateral.tee}-{collateral.fmspc}-{collateral.ca}.json"


def write_bundle(sets: list[CollateralSet], out: Path) -> list[Path]:
    """Write ``sets`` to ``out``: a directory, or a single file when ``out`` ends in ``.json``."""
    if not sets:
        raise CollateralError("nothing to write: no collateral fetched")
    if out.suffix == ".json":
        if len(sets) != 1:
            raise CollateralError(f"{out} is a single-file bundle but {len(sets)} platforms were fetched")
        targets = [(out, sets[0])]
    else:
        targets = [(out / bundle_file_name(s), s) for s in sets]
    written = []
    for path, collateral in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(collateral.to_json(), indent=1) + "\n")
        os.replace(tmp, path)  # readers never see half a file
        written.append(path)
    return written


@dataclass(frozen=True)
class BundleEntry:
    """One file of a bundle: its collateral, or why it could not be read."""

    path: Path
    collateral: CollateralSet | None
    error: CollateralError | None = None


def read_bundle(path: Path) -> list[BundleEntry]:
    """Every ``*.json`` file under ``path`` (or ``path`` itself), parsed into items (not yet verified)."""
    if not path.exists():
        raise CollateralError(f"bundle {path} does not exist", code="collateral_not_found")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.json") if p.is_file())
    entries = []
    for f in files:
        try:
            if f.stat().st_size > _MAX_FILE_BYTES:
                raise CollateralError(f"larger than {_MAX_FILE_BYTES} bytes", code="collateral_invalid")
            try:
                obj = strict_json.loads(f.read_bytes())
            except (ValueError, RecursionError) as exc:
                raise CollateralError("not JSON", code="collateral_invalid") from exc
            entries.append(BundleEntry(f, CollateralSet.from_json(obj)))
        except CollateralError as exc:
            entries.append(BundleEntry(f, None, exc))
        except OSError as exc:
            entries.append(BundleEntry(f, None, CollateralError(f"cannot read: {exc}")))
    return entries
