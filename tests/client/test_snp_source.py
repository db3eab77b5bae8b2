"""SEV-SNP evidence on the guest: configfs-tsm (provider sev_guest) with the auxblob certificate table,
turned into MAA's report document that the verifier accepts."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.client import ClientError
from affidavit.client.snp import chain_from_aux, snp_document
from affidavit.client.sources import report_data_for
from affidavit.evidence.snp import SnpError, verify_report
from affidavit.evidence.snp.certtable import build_cert_table, parse_cert_table
from affidavit.evidence.snp.maa import parse_document
from affidavit.simulate.snp import ReportFields, SimulatedAmdPki, SimulatedVek, Tcb

NOW = dt.datetime.now(dt.UTC)


class _FakeSevGuest(threading.Thread):
    """The kernel's configfs-tsm with the sev_guest provider: each entry's inblob gets a signed report."""

    def __init__(self, root: Path, vcek: SimulatedVek, aux: bytes) -> None:
        super().__init__(daemon=True)
        self.root, self.vcek, self.aux = root, vcek, aux
        self.stop = threading.Event()
        self.privlevels: list[str] = []

    def run(self) -> None:
        seen: set[str] = set()
        while not self.stop.is_set():
            for entry in self.root.iterdir():
                inblob = entry / "inblob"
                if entry.name in seen or not inblob.exists() or len(inblob.read_bytes()) != 64:
                    continue
                seen.add(entry.name)
                vmpl = int((entry / "privlevel").read_text()) if (entry / "privlevel").exists() else 0
                self.privlevels.append(str(vmpl))
                fields = ReportFields(report_data=inblob.read_bytes(), vmpl=vmpl).with_tcb(self.vcek.tcb)
                (entry / "auxblob").write_bytes(self.aux)
                (entry / ".outblob").write_bytes(self.vcek.report(fields))
                (entry / ".outblob").rename(entry / "outblob")
            time.sleep(0.005)


@pytest.fixture(scope="module")
def pki() -> SimulatedAmdPki:
    return SimulatedAmdPki.create("Genoa", now=NOW)


def _read_tsm(tmp_path: Path, vcek: SimulatedVek, aux: bytes, rd: bytes, vmpl: int | None = None) -> bytes:
    import affidavit.client.sources as sources

    kernel = _FakeSevGuest(tmp_path, vcek, aux)
    original = sources._read_generation

    def wait_then_read(entry: Path) -> str | None:
        deadline = time.time() + 5
        while not (entry / "outblob").exists() and time.time() < deadline:
            time.sleep(0.005)
        return original(entry)

    kernel.start()
    sources._read_generation = wait_then_read
    try:
        return snp_document(report_file=None, tsm_root=tmp_path, report_data=rd, vmpl=vmpl)
    finally:
        sources._read_generation = original
        kernel.stop.set()
        kernel.join()


def test_tsm_report_with_auxblob_chain_verifies(tmp_path: Path, pki: SimulatedAmdPki) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    vcek = pki.vcek(tcb=Tcb(10, 0, 23, 84), now=NOW)
    der = lambda c: c.public_bytes(Encoding.DER)  # noqa: E731
    aux = build_cert_table({"vcek": vcek.der, "ask": der(pki.ask), "ark": der(pki.ark)})
    rd = report_data_for(b'{"keys":[]}')
    document = _read_tsm(tmp_path, vcek, aux, rd, vmpl=1)
    parsed = parse_document(document)
    assert parsed.report.report_data == rd and parsed.report.vmpl == 1
    result = verify_report(parsed.report, parsed.chain, None, pki.trust(), NOW)
    assert result.product == "Genoa"


def test_empty_auxblob_sends_no_chain(tmp_path: Path, pki: SimulatedAmdPki) -> None:
    vcek = pki.vcek(tcb=Tcb(10, 0, 23, 84), now=NOW)
    document = _read_tsm(tmp_path, vcek, b"", bytes(64))
    assert parse_document(document).chain is None


def test_report_file_and_json_document(tmp_path: Path, pki: SimulatedAmdPki) -> None:
    vcek = pki.vcek(now=NOW)
    raw = tmp_path / "report.bin"
    raw.write_bytes(vcek.report())
    doc = snp_document(report_file=raw, tsm_root=tmp_path, report_data=bytes(64), chain_pem=vcek.chain_pem)
    assert parse_document(doc).chain == vcek.chain_pem
    (tmp_path / "doc.json").write_bytes(doc)
    assert snp_document(report_file=tmp_path / "doc.json", tsm_root=tmp_path, report_data=bytes(64)) == doc
    with pytest.raises(ClientError):
        snp_document(report_file=tmp_path / "absent", tsm_root=tmp_path, report_data=bytes(64))


def test_cert_table_round_trip_and_limits() -> None:
    table = build_cert_table({"vcek": b"A" * 10, "ark": b"B" * 3})
    assert parse_cert_table(table) == {"vcek": b"A" * 10, "ark": b"B" * 3}
    assert chain_from_aux(build_cert_table({"ark": b"x"})) is None
    with pytest.raises(SnpError):
        parse_cert_table(table[:30])


@given(st.binary(max_size=200))
def test_any_auxblob_is_a_table_or_the_typed_error(data: bytes) -> None:
    try:
        parse_cert_table(data)
    except SnpError:
        pass
    try:
        chain_from_aux(data)
    except ClientError:
        pass
