"""``affidavit collateral import`` with AMD KDS files: VCEK (DER or PEM), ``cert_chain`` PEM and the
ARK-signed CRL, each verified against the pinned AMD roots before it is stored; then a real ``affidavit
serve`` with ``--kds-url none`` verifies SevSnpVm reports that carry no chain from that cache alone."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from affidavit.client import ServiceRejected
from affidavit.client.http import AttestationClient, RuntimeData
from affidavit.collateral import CollateralError
from affidavit.collateral.amd import amd_file_items
from affidavit.collateral.db import CollateralDb
from affidavit.evidence.snp.maa import build_document
from affidavit.simulate.snp import ReportFields, SimulatedAmdPki, SimulatedVek, Tcb
from tests.cli.conftest import Run
from tests.service.helpers import ADMIN_TOKEN, Server, jwt_body

NOW = dt.datetime.now(dt.UTC)
TCB = Tcb(bootloader=3, tee=0, snp=8, microcode=115)
RUNTIME = b'{"keys": []}'


@dataclass(frozen=True)
class Kds:
    pki: SimulatedAmdPki
    vcek: SimulatedVek  # imported as DER
    vcek_pem: SimulatedVek  # imported as PEM
    revoked_ask: SimulatedAmdPki  # its ASK is on its own ARK's CRL
    trust: Path
    files: Path


@pytest.fixture(scope="module")
def kds(tmp_path_factory: pytest.TempPathFactory) -> Kds:
    root = tmp_path_factory.mktemp("amd-kds")
    pki = SimulatedAmdPki.create("Milan", now=NOW)
    vcek, vcek_pem = pki.vcek(tcb=TCB, now=NOW), pki.vcek(tcb=TCB, now=NOW)
    revoked = SimulatedAmdPki.create("Genoa", now=NOW)
    trust = root / "roots.pem"
    trust.write_bytes(pki.ark_pem + revoked.ark_pem)
    files = root / "kds"
    files.mkdir()
    (files / "vcek.der").write_bytes(vcek.der)
    (files / "vcek2.pem").write_bytes(vcek_pem.pem)
    (files / "cert_chain").write_bytes(pki.cert_chain_vcek)
    (files / "crl").write_bytes(pki.crl([], now=NOW))
    return Kds(pki, vcek, vcek_pem, revoked, trust, files)


def _import(run: Run, source: Path, db: Path, trust: Path, *more: str) -> tuple[int, list[dict[str, str]]]:
    status, out, err = run("collateral", "import", source, "--database-url", f"sqlite:///{db}",
                           "--snp-trust-root", trust, "--json", *more)
    return status, json.loads(out) if out.strip() else [{"error": err}]


def _stored(db: Path) -> set[str]:
    cache = CollateralDb(f"sqlite:///{db}")
    try:
        return {f"{item.key.kind}/{item.key.name}" for item, _ in cache.all()}
    finally:
        cache.close()


def test_import_verifies_and_stores_kds_files(run: Run, kds: Kds, tmp_path: Path) -> None:
    db = tmp_path / "affidavit.db"
    status, rows = _import(run, kds.files, db, kds.trust, "--snp-crl-kind", "vcek")
    assert status == 0, rows
    assert all(r["result"] == "stored" for r in rows), rows
    kinds = [r["item"].split("/")[0] for r in rows]
    assert kinds.count("amd_vcek") == 2 and kinds.count("amd_cert_chain") == 1
    assert [r["item"] for r in rows if r["item"].startswith("amd_crl")] == ["amd_crl/snp/Milan/vcek"]
    hw = kds.vcek.chip_id.hex()
    assert any(name.startswith(f"amd_vcek/Milan/{hw}/") for name in _stored(db))
    # again: nothing new
    status, rows = _import(run, kds.files, db, kds.trust, "--snp-crl-kind", "vcek")
    assert status == 0 and all(r["result"].startswith("kept") for r in rows), rows


def test_import_refuses_what_does_not_chain_to_a_pinned_root(run: Run, kds: Kds, tmp_path: Path) -> None:
    rogue = SimulatedAmdPki.create("Milan", now=NOW)
    src = tmp_path / "rogue"
    src.mkdir()
    (src / "vcek.der").write_bytes(rogue.vcek(tcb=TCB, now=NOW).der)
    (src / "cert_chain").write_bytes(rogue.cert_chain_vcek)
    (src / "crl").write_bytes(rogue.crl([], now=NOW))
    (src / "notes.txt").write_bytes(b"hello")
    db = tmp_path / "affidavit.db"
    status, rows = _import(run, src, db, kds.trust, "--snp-crl-kind", "vcek")
    assert status == 1
    by_file = {Path(r["file"]).name: r["result"] for r in rows}
    assert by_file["notes.txt"].startswith("unreadable")
    for name in ("vcek.der", "cert_chain", "crl"):
        assert by_file[name].startswith("rejected"), rows
    assert not db.exists() or not _stored(db)
    # the shipped AMD roots are the default: the simulated PKI is foreign to them
    status, rows = run("collateral", "import", kds.files / "cert_chain", "--database-url",
                       f"sqlite:///{tmp_path / 'other.db'}", "--json")[:2]
    assert status == 1 and "rejected" in rows


def test_vlek_ark_and_ask_crl_are_named_not_stored(kds: Kds) -> None:
    vlek = kds.pki.vlek(tcb=TCB, now=NOW)
    found = amd_file_items(vlek.pem + kds.pki.cert_chain_vlek)
    assert [i.key.kind for i in found.items] == ["amd_cert_chain"]  # the ASVK chain is kept
    assert any("VLEK" in n and "not stored" in n for n in found.notes)
    assert "not stored" in amd_file_items(kds.pki.crl([], issuer="ask", now=NOW)).notes[0]
    assert "ARK-Milan" in amd_file_items(kds.pki.ark_pem).notes[0]
    with pytest.raises(CollateralError):
        amd_file_items(b"\x30\x03\x02\x01\x00")


def test_an_ark_crl_fills_only_the_kind_it_is_named_for(kds: Kds) -> None:
    """AMD serves one ARK-signed CRL per chain (/vcek/v1/{product}/crl revokes ASKs, /vlek/… ASVKs) and
    the two cannot be told apart by content: a CRL without a kind is refused, never filed under both."""
    crl = kds.pki.crl([], now=NOW)
    with pytest.raises(CollateralError, match="--snp-crl-kind"):
        amd_file_items(crl)
    for kind in ("vcek", "vlek"):
        assert [str(i.key) for i in amd_file_items(crl, crl_kind=kind).items] == [f"amd_crl/snp/Milan/{kind}"]
    with pytest.raises(CollateralError):
        amd_file_items(crl, crl_kind="both")


def test_import_without_a_crl_kind_stores_no_crl(run: Run, kds: Kds, tmp_path: Path) -> None:
    db = tmp_path / "affidavit.db"
    status, rows = _import(run, kds.files, db, kds.trust)
    assert status == 1
    crl_row = next(r for r in rows if Path(r["file"]).name == "crl")
    assert crl_row["result"].startswith("unreadable") and "--snp-crl-kind" in crl_row["result"], rows
    assert not any(name.startswith("amd_crl/") for name in _stored(db))


def test_two_ark_crls_under_one_kind_are_refused(run: Run, kds: Kds, tmp_path: Path) -> None:
    """A directory with both KDS CRLs and one --snp-crl-kind would file one of them under the wrong
    chain: both are refused, nothing stored."""
    src = tmp_path / "both"
    src.mkdir()
    (src / "vcek-crl").write_bytes(kds.pki.crl([], now=NOW))
    (src / "vlek-crl").write_bytes(kds.pki.crl([kds.pki.asvk.serial_number], now=NOW))
    db = tmp_path / "affidavit.db"
    status, rows = _import(run, src, db, kds.trust, "--snp-crl-kind", "vcek")
    assert status == 1
    assert [r["result"].split(":")[0] for r in rows] == ["unreadable", "unreadable"], rows
    assert "separately" in rows[0]["result"]
    assert not db.exists() or not _stored(db)


def test_a_vcek_crl_is_not_looked_up_for_a_vlek_chain(run: Run, kds: Kds, tmp_path: Path) -> None:
    """The lookup: with only the VCEK CRL imported, a VLEK chain has no CRL (refused under require_crl)
    rather than the VCEK's, which would pass a revoked ASVK; the VLEK CRL, imported as such, revokes it."""
    import asyncio

    from affidavit.collateral import CollateralCache
    from affidavit.collateral.amd import CachingKdsProvider
    from affidavit.evidence.snp import SnpError, SnpOptions, verify_report

    db = tmp_path / "affidavit.db"
    assert _import(run, kds.files / "crl", db, kds.trust, "--snp-crl-kind", "vcek")[0] == 0
    revokes_asvk = tmp_path / "vlek-crl"
    revokes_asvk.write_bytes(kds.pki.crl([kds.pki.asvk.serial_number], now=NOW))
    vlek = kds.pki.vlek(tcb=TCB, now=NOW)
    report = vlek.report()

    def provider() -> CachingKdsProvider:
        cache = CollateralCache.open(f"sqlite:///{db}", [], amd_trust=kds.pki.trust())
        return CachingKdsProvider(None, cache=cache, require_crl=True)

    async def crls(kind: str) -> tuple[bytes, ...]:
        p = provider()
        try:
            return await p.crl_for("Milan", kind, NOW)
        finally:
            await p.aclose()

    assert asyncio.run(crls("vcek"))
    with pytest.raises(CollateralError):
        asyncio.run(crls("vlek"))
    assert _import(run, revokes_asvk, db, kds.trust, "--snp-crl-kind", "vlek")[0] == 0
    vlek_crls = asyncio.run(crls("vlek"))
    assert vlek_crls and vlek_crls != asyncio.run(crls("vcek"))
    with pytest.raises(SnpError, match="revoked"):
        verify_report(report, vlek.der, kds.pki.cert_chain_vlek, kds.pki.trust(), NOW, crl=vlek_crls,
                      options=SnpOptions(require_crl=True))


def _report(vek: SimulatedVek, **changes: object) -> bytes:
    data = hashlib.sha256(RUNTIME).digest() + bytes(32)
    return vek.report(replace(ReportFields().with_tcb(vek.tcb), report_data=data, **changes))  # type: ignore[arg-type]


@pytest.mark.slow
def test_serve_verifies_from_imported_collateral_without_kds(run: Run, kds: Kds, tmp_path: Path) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    status, rows = _import(run, kds.files, data / "affidavit.db", kds.trust, "--snp-crl-kind", "vcek")
    assert status == 0, rows
    args = ["--admin-token", ADMIN_TOKEN, "--snp-trust-root", str(kds.trust), "--kds-url", "none"]
    runtime = RuntimeData(RUNTIME, json=True)
    with Server(data, args, tls=False) as server, AttestationClient(server.url) as client:
        for vek in (kds.vcek, kds.vcek_pem):  # no VcekCertChain: the VCEK and chain come from the cache
            token = client.attest_snp(build_document(_report(vek)), runtime_data=runtime).token
            claims = jwt_body(token)
            assert claims["x-ms-attestation-type"] == "sevsnpvm"
            assert claims["x-ms-sevsnpvm-reportdata"].startswith(hashlib.sha256(RUNTIME).hexdigest())
        with pytest.raises(ServiceRejected, match="signature"):  # a flipped byte in the signed part
            bad = bytearray(_report(kds.vcek))
            bad[0x90] ^= 1
            client.attest_snp(build_document(bytes(bad)), runtime_data=runtime)
        other = kds.pki.vcek(tcb=TCB, now=NOW)  # a chip whose VCEK was never imported
        with pytest.raises(ServiceRejected, match="collateral import"):
            client.attest_snp(build_document(_report(other)), runtime_data=runtime)


def test_real_thim_bundle_imports_against_the_shipped_roots(run: Run, tmp_path: Path) -> None:
    """The ACI vector's THIM bundle (VCEK + ASK + ARK, PEM) at its own time, AMD's roots by default."""
    from tests.conftest import VECTORS

    bundle = VECTORS / "snp" / "aci-milan-v2" / "uvm_host_amd_certificate.pem"
    db = tmp_path / "affidavit.db"
    status, out, _ = run("collateral", "import", bundle, "--database-url", f"sqlite:///{db}",
                         "--at", "2023-02-13T13:06:23Z", "--json")
    rows = json.loads(out)
    assert status == 0 and [r["result"] for r in rows] == ["stored", "stored"], rows
    assert {name.split("/")[0] for name in _stored(db)} == {"amd_vcek", "amd_cert_chain"}
    # outside the VCEK's validity (it ends in 2029) the VCEK is refused, not stored; the ASK/ARK still serve
    status, out, _ = run("collateral", "import", bundle, "--database-url", f"sqlite:///{tmp_path / 'b.db'}",
                         "--at", "2030-01-01T00:00:00Z", "--json")
    results = {r["item"].split("/")[0]: r["result"] for r in json.loads(out)}
    assert status == 1 and results["amd_vcek"].startswith("rejected") and "not valid" in results["amd_vcek"]
    assert results["amd_cert_chain"] == "stored"
