"""`affidavit quote inspect|verify` through affidavit.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affidavit.cli import main
from tests.evidence.dcap.conftest import vector_cases

_CASES = {c.id: c for c in vector_cases()}
TDX = _CASES["phala-tdx-v4-b0c06f000000-2025-06/tdx-v4-uptodate"]
SGX = _CASES["automata-sgx-v3-00606a000000/sgx-v3-platform-ca-sw-hardening-needed-2025-08"]
UNMATCHED = _CASES["gotdx-tdx-v4-50806f000000-2023-06/tdx-v4-spr-e4-no-matching-tcb-level"]
AZURE = _CASES["azure-dcsv2-sgx-00906ed50000-2025-05/maa2022-standard-eval17"]


def _verify(case, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "quote",
        "verify",
        str(case.quote_path),
        "--collateral",
        str(case.collateral_path),
        "--at",
        case.at.isoformat(),
        *extra,
    ]


def test_verify_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(SGX, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "SWHardeningNeeded" and doc["advisory_ids"] == ["INTEL-SA-00615"]
    assert (
        doc["claims"]["x-ms-sgx-mrenclave"]
        == "a4f45c39dac622cb1dd32ddb35a52ec92db41d0fa88a1c911c49e59c534f61cd"
    )
    assert doc["verified"] is True and set(doc["collateral_hashes"]) == {
        "qeidcertshash",
        "qeidcrlhash",
        "qeidhash",
        "quotehash",
        "tcbinfocertshash",
        "tcbinfocrlhash",
        "tcbinfohash",
    }


def test_verify_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(TDX)) == 0
    out = capsys.readouterr().out
    assert "UpToDate" in out and "tdx_mrtd" in out


def test_rejected_quote_exits_1_with_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(UNMATCHED)) == 1
    assert "tcb_not_supported" in capsys.readouterr().err
    assert main(_verify(UNMATCHED, "--json")) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] is False and doc["error"]["code"] == "tcb_not_supported"


def test_verify_open_enclave_report_and_hex_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = AZURE.quote_path.parent.parent / "azure-maa-openenclave-claims" / "maa2022_oe_report.bin"
    args = [
        "quote",
        "verify",
        str(report),
        "--collateral",
        str(AZURE.collateral_path),
        "--at",
        AZURE.at.isoformat(),
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["open_enclave_report"] is True
    assert (
        doc["collateral_hashes"]["quotehash"]
        == "949b189c928f25c0a8090ae57d9f481b3435f26fb9a4d7e86e2619770d29c13f"
    )
    hex_file = tmp_path / "quote.hex"
    hex_file.write_text(TDX.quote().hex())
    args = [
        "quote",
        "verify",
        str(hex_file),
        "--collateral",
        str(TDX.collateral_path),
        "--at",
        "2025-07-01T00:00:00Z",
    ]
    assert main(args) == 0


def test_trust_root_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = TDX.quote_path.parent.parent / "intel-sgx-root-ca.pem"
    assert main(_verify(TDX, "--trust-root", str(root))) == 0
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = tmp_path / "other.pem"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    other.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    capsys.readouterr()
    assert main(_verify(TDX, "--trust-root", str(other), "--json")) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "pck_chain_untrusted"


@pytest.mark.parametrize(
    "argv_tail,code",
    [
        (["--at", "yesterday"], "invalid_time"),
        (["--collateral", "/nonexistent/collateral.json"], "file_error"),
    ],
)
def test_bad_arguments(argv_tail: list[str], code: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "quote",
        "verify",
        str(TDX.quote_path),
        "--collateral",
        str(TDX.collateral_path),
        *argv_tail,
        "--json",
    ]
    assert main(args) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == code


def test_garbage_quote_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x02\x03\xff" * 100)
    assert main(["quote", "inspect", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unsupported_quote_version"


def test_inspect(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quote", "inspect", str(TDX.quote_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["header"]["version"] == 4 and doc["tee"] == "tdx" and doc["body_type"] == "TD10"
    assert doc["platform"] == {"fmspc": "B0C06F000000", "ca": "platform", "tee": "tdx"}
    assert main(["quote", "inspect", str(SGX.quote_path)]) == 0
    out = capsys.readouterr().out
    assert "00606A000000" in out and "mrenclave" in out


def test_collateral_grace_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """MobileCoin's PCK CRL is 59 days past nextUpdate at the case's time: strict refuses, 60 days accept."""
    stale = next(c for c in vector_cases() if c.set.startswith("mobilecoin"))
    assert main(_verify(stale, "--json")) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "crl_expired"
    assert main(_verify(stale, "--collateral-grace", "60d", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["collateral_expired"] is True and doc["claims"]["x-ms-sgx-collateral-expired"] is True
