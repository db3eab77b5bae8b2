"""Offline bundles and `affidavit collateral fetch | import | list`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.cli import main
from affidavit.collateral import CollateralError, DirectoryProvider
from affidavit.collateral.bundle import read_bundle, write_bundle
from affidavit.collateral.cache import CollateralCache
from affidavit.collateral.items import JSON_FIELDS, CollateralSet, tcb_info_key
from affidavit.collateral.provider import CachingPcsProvider
from tests.collateral.conftest import AZURE_AT, PHALA_AT, PHALA_TDX, Platform, read_json
from tests.collateral.fake_pcs import FakePcs
from tests.conftest import VECTORS

AT = "2025-06-10T00:00:00Z"


def trust_args(vectors: Path) -> list[str]:
    return ["--trust-root", str(vectors / "sgx/intel-sgx-root-ca.pem"), "--at", AT]


def test_bundle_round_trip_and_directory_provider_reads_it(
    tmp_path: Path, standard: dict[str, Any], vectors: Path
) -> None:
    sets = [
        CollateralSet.from_json(standard),
        CollateralSet.from_json(read_json(vectors / PHALA_TDX / "collateral.json")),
    ]
    written = write_bundle(sets, tmp_path / "bundle")
    assert [p.name for p in written] == ["sgx-00906ED50000-processor.json", "tdx-B0C06F000000-platform.json"]
    assert json.loads(written[0].read_text()) == standard  # the offline JSON form, unchanged
    assert [e.collateral for e in read_bundle(tmp_path / "bundle")] == sets
    # The service's directory provider serves the same bundle.
    provider = DirectoryProvider(tmp_path / "bundle", clock=lambda: PHALA_AT)
    got = asyncio.run(provider.get(Platform("B0C06F000000", "platform", "tdx")))
    assert got.tcb_info_json == sets[1].tcb_info.body.encode()


def test_single_file_bundle(tmp_path: Path, standard: dict[str, Any]) -> None:
    out = tmp_path / "one.json"
    write_bundle([CollateralSet.from_json(standard)], out)
    assert json.loads(out.read_text()) == standard
    assert read_bundle(out)[0].collateral == CollateralSet.from_json(standard)


def test_unreadable_bundle_files_are_reported(tmp_path: Path, standard: dict[str, Any]) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({**standard, "tcb_info": "[]"}))
    entries = read_bundle(tmp_path)
    assert [e.collateral for e in entries] == [None, None]
    assert all(e.error is not None and e.error.code == "collateral_invalid" for e in entries)


def test_fetch_import_list(
    pcs: FakePcs, tmp_path: Path, vectors: Path, capsys: pytest.CaptureFixture[str], standard: dict[str, Any]
) -> None:
    bundle, db = tmp_path / "bundle", f"sqlite:///{tmp_path / 'svc.db'}"
    rc = main(
        ["collateral", "fetch", "--fmspc", "00906ed50000", "--ca", "processor", "--out", str(bundle)]
        + ["--pcs-url", pcs.url, "--json", *trust_args(vectors)]
    )
    assert rc == 0
    fetched = json.loads(capsys.readouterr().out)
    assert [r["fmspc"] for r in fetched] == ["00906ED50000"] and fetched[0][
        "tcb_evaluation_data_number"
    ] == 17
    assert json.loads((bundle / "sgx-00906ED50000-processor.json").read_text()) == standard

    assert (
        main(["collateral", "import", str(bundle), "--database-url", db, "--json", *trust_args(vectors)]) == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["result"] for r in results] == ["stored"] * 4

    assert main(["collateral", "list", "--database-url", db, "--at", AT]) == 0
    table = capsys.readouterr().out
    assert "00906ED50000" in table and "2025-06-26T19:31:07Z" in table and "valid" in table
    assert main(["collateral", "list", "--database-url", db, "--json", "--at", "2025-07-01T00:00:00Z"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["kind"] for r in listed} == {"root_ca_crl", "pck_crl", "qe_identity", "tcb_info"}
    assert {r["status"] for r in listed if r["kind"] != "root_ca_crl"} == {"expired"}

    # The imported cache serves an offline service: no PCS at all.
    async def serve_offline() -> Any:
        p = CachingPcsProvider(None, cache_url=db, trust_anchors=vectors / "sgx/intel-sgx-root-ca.pem")
        try:
            return await p.get(Platform("00906ED50000", "processor"), now=AZURE_AT)
        finally:
            await p.aclose()

    assert asyncio.run(serve_offline()).tcb_info_json.decode() == standard["tcb_info"]


def test_fetch_refuses_bad_collateral(pcs: FakePcs, tmp_path: Path, vectors: Path) -> None:
    pcs.faults["tcb"] = "bad_signature"
    rc = main(
        ["collateral", "fetch", "--fmspc", "00906ED50000", "--ca", "processor", "--out", str(tmp_path / "b")]
        + ["--pcs-url", pcs.url, *trust_args(vectors)]
    )
    assert rc == 1
    assert not (tmp_path / "b").exists()


def test_import_rejects_tampered_and_keeps_newer(
    tmp_path: Path,
    vectors: Path,
    standard: dict[str, Any],
    early: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = f"sqlite:///{tmp_path / 'svc.db'}"
    write_bundle([CollateralSet.from_json(early)], tmp_path / "early.json")
    write_bundle([CollateralSet.from_json(standard)], tmp_path / "standard.json")
    tampered = {**standard, "qe_identity": standard["qe_identity"].replace('"isvprodid":1', '"isvprodid":2')}
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    args = ["--database-url", db, "--json", *trust_args(vectors)]
    assert main(["collateral", "import", str(tmp_path / "early.json"), *args]) == 0
    assert main(["collateral", "import", str(tmp_path / "standard.json"), *args]) == 0  # older TCB Info: kept
    assert main(["collateral", "import", str(tmp_path / "bad.json"), *args]) == 1
    out = capsys.readouterr().out
    assert "rejected: collateral_invalid" in out
    cache = CollateralCache.open(db, [])
    assert cache.get(tcb_info_key("sgx", "00906ED50000")).number == 19  # type: ignore[union-attr]
    cache.close()


def test_import_missing_bundle(tmp_path: Path) -> None:
    assert (
        main(["collateral", "import", str(tmp_path / "nope"), "--database-url", f"sqlite:///{tmp_path}/x.db"])
        == 1
    )


def test_fetch_tdx_bundle(tmp_path: Path, vectors: Path) -> None:
    server = FakePcs()
    server.load(read_json(vectors / PHALA_TDX / "collateral.json"), "platform")
    server.start()
    try:
        rc = main(
            ["collateral", "fetch", "--fmspc", "B0C06F000000", "--tee", "tdx", "--ca", "platform"]
            + ["--out", str(tmp_path / "tdx.json"), "--pcs-url", server.url, "--trust-root"]
            + [str(vectors / "sgx/intel-sgx-root-ca.pem"), "--at", "2025-07-01T00:00:00Z"]
        )
    finally:
        server.stop()
    assert rc == 0
    assert json.loads((tmp_path / "tdx.json").read_text()) == read_json(
        vectors / PHALA_TDX / "collateral.json"
    )


_FIELDS = sorted(JSON_FIELDS)


@settings(max_examples=100)
@given(
    st.dictionaries(st.sampled_from(_FIELDS), st.text(max_size=40) | st.integers() | st.none(), max_size=9)
)
def test_any_collateral_object_parses_or_raises_collateral_error(fields: dict[str, Any]) -> None:
    try:
        CollateralSet.from_json(fields)
    except CollateralError as exc:
        assert exc.code == "collateral_invalid"


@settings(max_examples=100)
@given(st.sampled_from(_FIELDS), st.text(max_size=60))
def test_one_corrupted_field_of_real_collateral(field: str, value: str) -> None:
    real = json.loads((VECTORS / "sgx" / "phala-tdx-v4-b0c06f000000-2025-06" / "collateral.json").read_text())
    try:
        CollateralSet.from_json({**real, field: value})
    except CollateralError:
        pass


@settings(max_examples=50)
@given(st.binary(max_size=200))
def test_any_bundle_file_reads_as_collateral_or_an_error(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("b") / "x.json"
    path.write_bytes(data)
    (entry,) = read_bundle(path)
    assert (entry.collateral is None) != (entry.error is None)
