"""``affidavit snp inspect|verify`` on the real vectors: tables for people, one JSON object with --json,
exit 0 verified / 1 rejected, never a traceback."""

from __future__ import annotations

import base64
import json

import pytest

from affidavit.cli import main
from tests.evidence.snp.conftest import NEGATIVE, POSITIVE, SNP, Case

TURIN = next(c for c in POSITIVE if c.set == "oak-turin-v5")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _verify_args(case: Case, *more: str) -> list[str]:
    args = ["snp", "verify", str(case.base / case.raw["report"]), "--vek", str(case.base / case.raw["vek"]),
            "--at", case.raw["verify_at"]]
    for chain in case.raw["ca_certificates"]:
        args += ["--chain", str(case.base / chain)]
    return args + list(more)


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_verify_json(capsys: pytest.CaptureFixture[str], case: Case) -> None:
    code, out, _ = _run(capsys, *_verify_args(case, "--json"))
    assert code == 0
    doc = json.loads(out)
    assert doc["verified"] is True
    expected = {k: v for k, v in case.raw["claims"]["maa_style_claims"].items() if not k.startswith("_")}
    assert doc["claims"] == expected


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c.id)
def test_verify_rejects_with_reason(capsys: pytest.CaptureFixture[str], case: Case) -> None:
    ark = str(SNP / "amd-roots" / "milan" / "ark.pem")
    code, out, _ = _run(capsys, *_verify_args(case, "--json", "--trust-root", ark))
    assert code == 1
    doc = json.loads(out)
    assert doc["verified"] is False and doc["reason"] and doc["code"].startswith("snp_")


def test_verify_table_and_time_window(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, *_verify_args(TURIN))
    assert code == 0 and "x-ms-sevsnpvm-launchmeasurement" in out and "Turin" in out
    late = TURIN.raw["time_negative_cases"][0]["verify_at"]
    args = _verify_args(TURIN)
    args[args.index("--at") + 1] = late
    code, _, err = _run(capsys, *args)
    assert code == 1 and "snp_certificate_not_valid" in err


def test_inspect_forms(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from pathlib import Path

    report = TURIN.base / TURIN.raw["report"]
    code, out, _ = _run(capsys, "snp", "inspect", str(report), "--json")
    assert code == 0 and json.loads(out)["reported_tcb"]["fmc"] == 0
    hexfile = Path(str(tmp_path)) / "r.hex"
    hexfile.write_text(report.read_bytes().hex())
    code, out, _ = _run(capsys, "snp", "inspect", str(hexfile))
    assert code == 0 and "Turin" in out
    from affidavit.evidence.snp.maa import build_document

    doc = Path(str(tmp_path)) / "doc.b64"
    doc.write_text(base64.urlsafe_b64encode(build_document(report.read_bytes())).decode())
    code, out, _ = _run(capsys, "snp", "inspect", str(doc), "--json")
    assert code == 0 and json.loads(out)["version"] == 5
    garbage = Path(str(tmp_path)) / "garbage"
    garbage.write_bytes(b"\x00\x01" * 30)
    code, out, _ = _run(capsys, "snp", "inspect", str(garbage), "--json")
    assert code == 1 and json.loads(out)["code"] == "snp_report_malformed"
    code, _, err = _run(capsys, "snp", "verify", str(Path(str(tmp_path)) / "absent"))
    assert code == 1 and "cannot read" in err
