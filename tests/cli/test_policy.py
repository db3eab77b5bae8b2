"""``affidavit policy eval --explain`` and ``policy hash --json`` offline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run

POLICY = """version=1.0;
authorizationrules {
  c:[type=="x-ms-sgx-svn", value >= 3] => permit();
};
"""


def test_eval_explain_traces_every_rule(run: Run, tmp_path: Path) -> None:
    policy, claims = tmp_path / "p.txt", tmp_path / "c.json"
    policy.write_text(POLICY)
    claims.write_text(json.dumps({"x-ms-sgx-svn": 2}))
    status, out, _ = run("policy", "eval", policy, "--claims", claims, "--explain")
    assert status == 0 and "authorized  false" in out
    assert "rule 1 of authorizationrules (line 3, column 3)" in out and "value >= 3" in out
    assert "authorizationrules #1" in out and "3:3 no x-ms-sgx-svn value >= 3 (present: 2)" in out
    doc = json.loads(run("policy", "eval", policy, "--claims", claims, "--explain", "--json")[1])
    assert doc["authorized"] is False and doc["trace"][0]["conditions"][0]["present"] == ["2"]
    assert "trace" not in json.loads(run("policy", "eval", policy, "--claims", claims, "--json")[1])


def test_hash_has_json(run: Run, tmp_path: Path) -> None:
    policy = tmp_path / "p.txt"
    policy.write_text(POLICY)
    status, out, _ = run("policy", "hash", policy, "--json")
    assert status == 0 and json.loads(out)["hash"] == run("policy", "hash", policy)[1].strip()
