"""``affidavit policy check|eval|hash`` through the real command entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affidavit.cli import main

DATA = Path(__file__).parents[1] / "policy" / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", str(DATA / "d3.policy"))
    assert code == 0
    assert (
        "1.1" in out
        and "issuancerules (6 rules)" in out
        and "Ro7KRY9_KNWhIP7MudZXlNO1nb-UPiY4IJkjaN_gh7g" in out
    )
    code, out, _ = run(capsys, "policy", "check", "--json", str(DATA / "d3.policy"))
    summary = json.loads(out)
    assert summary["rules"] == 8 and summary["version"] == "1.1"
    assert summary["sections"] == {"configurationrules": 1, "authorizationrules": 1, "issuancerules": 6}


def test_check_reports_line_and_column(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "check", str(DATA / "e02.policy"))
    assert code == 1 and out == ""
    assert "PolicyParsingError" in err and "Line: '4', Column: '11'" in err
    code, out, err = run(capsys, "policy", "check", "--lenient", str(DATA / "e02.policy"))
    assert code == 0 and "warning: line 4, column 11" in err


def test_eval_with_plain_object_claims(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"x-ms-sgx-is-debuggable": True, "x-ms-sgx-mrsigner": "mrsigner1"}))
    code, out, _ = run(capsys, "policy", "eval", str(DATA / "e05.policy"), "--claims", str(claims), "--json")
    assert code == 0
    assert json.loads(out)["authorized"] is True
    claims.write_text(json.dumps({"x-ms-sgx-is-debuggable": False, "x-ms-sgx-mrsigner": "mrsigner1"}))
    code, out, _ = run(capsys, "policy", "eval", str(DATA / "e05.policy"), "--claims", str(claims), "--json")
    result = json.loads(out)
    assert (
        code == 0 and result["authorized"] is False and result["claims"] == {} and result["properties"] == {}
    )


def test_eval_with_claim_list_prints_claims_and_properties(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps(
            [
                {
                    "type": "x-ms-sgx-mrsigner",
                    "value": "ab",
                    "valueType": "String",
                    "issuer": "AttestationService",
                },
                {"type": "x-ms-attestation-type", "value": "sgx"},
            ]
        )
    )
    code, out, _ = run(capsys, "policy", "eval", str(DATA / "d3.policy"), "--claims", str(claims))
    assert code == 0
    assert "authorized  true" in out
    assert "sgx-mrsigner" in out and '"ab"' in out and "x-ms-sgx-tcbidentifier" in out
    code, out, _ = run(capsys, "policy", "eval", str(DATA / "d3.policy"), "--claims", str(claims), "--json")
    result = json.loads(out)
    assert result["claims"] == {"sgx-mrsigner": "ab", "tee": "sgx"}
    assert result["properties"] == {"x-ms-sgx-tcbidentifier": "azuredefault"}


def test_eval_errors_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([{"type": "JsonData", "value": "1.5", "issuer": "CustomClaim"}]))
    policy = tmp_path / "p.txt"
    policy.write_text(
        "version=1.2; authorizationrules{=> permit();}; issuancerules{"
        'c:[type=="JsonData"] => issue(type="r", value=JsonToClaimValue(c.value));};'
    )
    code, _, err = run(capsys, "policy", "eval", str(policy), "--claims", str(claims))
    assert code == 1 and "PolicyEvaluationError" in err and "fraction" in err
    claims.write_text("not json")
    code, _, err = run(capsys, "policy", "eval", str(policy), "--claims", str(claims))
    assert code == 1 and "not valid JSON" in err
    claims.write_text(json.dumps([{"type": "a", "value": 1, "valueType": "String"}]))
    code, _, _ = run(capsys, "policy", "eval", str(policy), "--claims", str(claims))
    assert code == 1


def test_hash(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.txt"
    policy.write_bytes(b"version=1.0; authorizationrules{=> permit();}; issuancerules{};")
    code, out, _ = run(capsys, "policy", "hash", str(policy))
    assert (code, out) == (0, "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU\n")
    code, _, err = run(capsys, "policy", "hash", str(tmp_path / "missing"))
    assert code == 1 and "cannot read" in err
