"""Any bytes as a report, a certificate, a chain or a CRL give a result or `SnpError`, nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence.snp import AmdTrust, SnpError, SnpVerifier, load_crls, parse_report, verify_report
from tests.evidence.snp.conftest import POSITIVE

CASE = next(c for c in POSITIVE if c.set == "oak-turin-v5")
REPORT, VEK, CHAIN, NOW = CASE.report, CASE.vek, CASE.chain, CASE.now
VERIFIER = SnpVerifier(AmdTrust.from_pem(CASE.ark))


def _edits() -> st.SearchStrategy[list[tuple[int, int]]]:
    return st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)


def _outcome(report: bytes, vek: bytes, chain: object, crl: object = None) -> None:
    try:
        VERIFIER.verify(report, vek, chain, NOW, crl=crl)  # type: ignore[arg-type]
    except SnpError:
        pass


@given(st.binary(max_size=1300))
def test_any_bytes_as_report(data: bytes) -> None:
    try:
        parse_report(data)
    except SnpError:
        pass
    _outcome(data, VEK, CHAIN)


@given(_edits())
def test_edited_report(edits: list[tuple[int, int]]) -> None:
    _outcome(_apply(REPORT, edits), VEK, CHAIN)


@given(st.binary(max_size=2000))
def test_any_bytes_as_certificate(data: bytes) -> None:
    _outcome(REPORT, data, CHAIN)
    _outcome(REPORT, VEK, [data])
    _outcome(REPORT, VEK, data)


@given(_edits())
def test_edited_certificate(edits: list[tuple[int, int]]) -> None:
    vek = _apply(VEK, edits)
    _outcome(REPORT, vek, CHAIN)
    try:
        verify_report(REPORT, vek, CHAIN, None, NOW)
    except SnpError:
        pass


PREFIXES = [b"", b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN X509 CRL-----\n"]


@given(st.binary(max_size=1500), st.sampled_from(PREFIXES))
def test_any_bytes_as_pem_or_crl(data: bytes, prefix: bytes) -> None:
    _outcome(REPORT, VEK, prefix + data)
    _outcome(REPORT, VEK, CHAIN, crl=prefix + data)
    try:
        load_crls(prefix + data)
    except SnpError:
        pass


@given(_edits())
def test_edited_crl(edits: list[tuple[int, int]]) -> None:
    crl = _sim_crl()
    try:
        load_crls(_apply(crl, edits))
    except SnpError:
        pass


_CRL: list[bytes] = []


def _sim_crl() -> bytes:
    if not _CRL:
        import datetime as dt

        from affidavit.simulate.snp import SimulatedAmdPki

        _CRL.append(SimulatedAmdPki.create("Milan", now=dt.datetime.now(dt.UTC)).crl([1, 2, 3]))
    return _CRL[0]
