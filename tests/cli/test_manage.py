"""Remote management from the CLI against a live server: policy get/set/reset/history/rollback/diff,
policy sign, certificates list/add/remove; explained denials over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affidavit.client import ServiceRejected
from affidavit.client.http import AttestationClient
from affidavit.policy import policy_hash
from affidavit.simulate import SimulatedPlatform
from affidavit.tokens import parse_jws, policy_text_from_jws, verify_jws
from tests.cli.conftest import Run
from tests.service.conftest import Inputs, Signers
from tests.service.helpers import Server
from tests.service.test_oidc import AUDIENCE, FakeIssuer, issuer  # noqa: F401

FIRST = "version=1.0;\r\nauthorizationrules { => permit(); };\n// first ü  \n"
SECOND = 'version=1.0; authorizationrules { c:[type=="x-ms-sgx-svn", value >= 50] => permit(); };\n'
STRICT = """version=1.0;
authorizationrules {
  c:[type=="x-ms-sgx-mrsigner", value=="00000000000000000000000000000000000000000000000000000000secret"]
    => permit();
};
"""


def _conn(server: Server, token: Path) -> list[str]:
    return ["--url", server.url, "--admin-token-file", str(token)]


def test_set_history_rollback_byte_for_byte(
    run: Run, cli_server: Server, admin_token_file: Path, tmp_path: Path
) -> None:
    c = _conn(cli_server, admin_token_file)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_bytes(FIRST.encode())
    second.write_bytes(SECOND.encode())
    status, out, _ = run("policy", "set", first, *c, "--type", "opEnEnclave")
    assert status == 0 and policy_hash(FIRST) in out and "unsigned" in out
    assert run("policy", "set", second, *c, "--type", "OpenEnclave", "--json")[0] == 0

    status, out, _ = run("policy", "history", *c, "--type", "OpenEnclave", "--json")
    doc = json.loads(out)
    sets = [e for e in doc["history"] if e["action"] == "set"]
    assert [e["text"] for e in sets[-2:]] == [FIRST, SECOND] and doc["current"] == policy_hash(SECOND)
    assert sets[-1]["actor"].startswith("admin-token@127.0.0.1") and sets[-1]["signer"] is None
    table = run("policy", "history", *c, "--type", "OpenEnclave")[1]
    assert table.splitlines()[0].split() == ["ID", "AT", "ACTION", "HASH", "CALLER", "SIGNER"]
    assert policy_hash(SECOND) + "*" in table

    status, out, _ = run("policy", "rollback", policy_hash(FIRST)[:10], *c, "--type", "OpenEnclave", "--json")
    assert status == 0 and json.loads(out)["hash"] == policy_hash(FIRST)
    out_file = tmp_path / "got.txt"
    assert run("policy", "get", *c, "--type", "OpenEnclave", "--out", out_file)[0] == 0
    assert out_file.read_bytes() == FIRST.encode()  # byte for byte: CR, trailing blanks, non-ASCII
    status, out, _ = run("policy", "get", *c, "--type", "OpenEnclave", "--json")
    assert json.loads(out)["hash"] == policy_hash(FIRST)
    assert run("policy", "history", *c, "--type", "OpenEnclave", "--show", policy_hash(SECOND))[1] == SECOND

    assert run("policy", "reset", *c, "--type", "OpenEnclave")[0] == 0
    status, out, err = run("policy", "get", *c, "--type", "OpenEnclave")
    assert status == 0 and "authorizationrules" in out and "first" not in out  # the default again
    status, _, err = run("policy", "rollback", "nosuchhash", *c, "--type", "OpenEnclave")
    assert status == 1 and err.startswith("error: not_found:")


def test_unauthenticated_calls_are_refused_with_a_hint(run: Run, cli_server: Server, tmp_path: Path) -> None:
    status, _, err = run("policy", "get", "--url", cli_server.url, "--type", "SgxEnclave")
    assert status == 1 and err.startswith("error: Unauthorized:") and "--admin-token-file" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    status, out, _ = run("policy", "history", "--url", cli_server.url, "--admin-token-file", wrong,
                         "--type", "SgxEnclave", "--json")
    assert status == 1 and json.loads(out)["error"]["code"] == "Unauthorized"


def test_denials_are_explained_and_diff_lists_flips(
    run: Run, cli_server: Server, admin_token_file: Path, tmp_path: Path, sim: SimulatedPlatform
) -> None:
    c = _conn(cli_server, admin_token_file)
    run("policy", "reset", *c, "--type", "SgxEnclave")
    quote = sim.sgx_quote(isv_svn=7)
    with AttestationClient(cli_server.url, retries=0) as client:
        client.attest_sgx(quote)  # permitted by the default policy; kept as a shadow sample
        strict = tmp_path / "strict.txt"
        strict.write_text(STRICT)

        status, out, _ = run("policy", "diff", strict, *c, "--type", "SgxEnclave", "--json")
        doc = json.loads(out)
        assert status == 0 and doc["samples"] >= 1 and doc["flips"] >= 1
        flip = doc["flipped"][-1]
        assert flip["current"]["authorized"] is True and flip["candidate"]["authorized"] is False
        assert "line 3, column 3" in flip["candidate"]["reason"]
        assert run("policy", "diff", strict, *c, "--type", "SgxEnclave")[1].count("permit") >= 1

        assert run("policy", "set", strict, *c, "--type", "SgxEnclave")[0] == 0
        with pytest.raises(ServiceRejected) as denied:
            client.attest_sgx(quote)
        message = denied.value.message
        assert denied.value.code == "PolicyEvaluationError"
        assert "rule 1 of authorizationrules (line 3, column 3)" in message
        assert 'no claim "x-ms-sgx-mrsigner"' in message and sim.sgx_quote  # names the claim
        assert "secret" not in message  # the policy's literal is not shown to the attester

        # a draft policy: literals shown and the whole trace returned
        with pytest.raises(ServiceRejected) as draft:
            client.attest_sgx(quote, draft_policy=STRICT)
        assert "secret" in draft.value.message
        token = client.attest_sgx(quote, draft_policy=FIRST).token
    from affidavit.relying_party import decode_unverified

    trace = decode_unverified(token).claims["affidavit-policy-trace"]
    assert trace[0]["section"] == "authorizationrules" and trace[0]["fired"] is True
    run("policy", "reset", *c, "--type", "SgxEnclave")


def test_isolated_mode_signed_changes_and_certificates(
    run: Run, cli_isolated: Server, signers: Signers, tmp_path: Path, admin_token_file: Path
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_text(signers.admin.key_pem)
    cert.write_text(signers.admin.cert_pem)
    policy = tmp_path / "p.txt"
    policy.write_text(FIRST)
    url = _conn(cli_isolated, admin_token_file)

    jws_file = tmp_path / "p.jws"
    assert run("policy", "sign", policy, "--key", key, "--cert", cert, "--out", jws_file)[0] == 0
    from datetime import UTC, datetime

    jws = parse_jws(jws_file.read_text().strip())
    assert policy_text_from_jws(jws) == FIRST and verify_jws(jws, now=datetime.now(UTC)) == signers.admin.cert

    status, _, err = run("policy", "set", policy, *url, "--type", "SgxEnclave")  # unsigned: refused
    assert status == 1 and err.startswith("error: InvalidOperation:")
    status, out, _ = run("policy", "set", jws_file, *url, "--type", "SgxEnclave")
    assert status == 0 and "signed by CN=Affidavit test policy signer" in out
    other = tmp_path / "o.txt"
    other.write_text(SECOND)
    assert run("policy", "set", other, *url, "--type", "SgxEnclave", "--key", key, "--cert", cert)[0] == 0
    history = json.loads(run("policy", "history", *url, "--type", "SgxEnclave", "--json")[1])["history"]
    assert history[-1]["signer"]["subject"] == "CN=Affidavit test policy signer"
    # rollback resends the JWS the policy was first set with: still signed by its signer
    status, out, _ = run("policy", "rollback", policy_hash(FIRST), *url, "--type", "SgxEnclave")
    assert status == 0 and "signed by CN=Affidavit test policy signer" in out
    assert run("policy", "reset", *url, "--type", "SgxEnclave", "--key", key, "--cert", cert)[0] == 0

    second = tmp_path / "second.pem"
    second.write_text(signers.second.cert_pem)
    listed = json.loads(run("certificates", "list", *url, "--json")[1])
    assert [c["subject"] for c in listed] == ["CN=Affidavit test policy signer"]
    status, out, _ = run("certificates", "add", second, *url, "--key", key, "--cert", cert)
    assert status == 0 and "IsPresent" in out
    assert len(json.loads(run("certificates", "list", *url, "--json")[1])) == 2
    assert "CN=Affidavit second signer" in run("certificates", "list", *url)[1]
    status, out, _ = run("certificates", "remove", second, *url, "--key", key, "--cert", cert, "--json")
    assert status == 0 and json.loads(out)["result"] == "IsAbsent"


def test_an_oidc_token_authenticates_and_is_the_recorded_caller(
    run: Run, issuer: FakeIssuer, tmp_path: Path, inputs: Inputs  # noqa: F811
) -> None:
    args = [*inputs.serve_args(), "--admin-oidc-issuer", issuer.url, "--admin-oidc-audience", AUDIENCE]
    args = [a for a in args if a != "test-admin-token" and a != "--admin-token"]
    token = tmp_path / "oidc.jwt"
    token.write_text(issuer.mint(sub="operator-7"))
    policy = tmp_path / "p.txt"
    policy.write_text(FIRST)
    with Server(tmp_path / "data", args, tls=False) as server:
        c = ["--url", server.url, "--oidc-token-file", str(token)]
        assert run("policy", "set", policy, *c, "--type", "TdxVm")[0] == 0
        (entry,) = json.loads(run("policy", "history", *c, "--type", "TdxVm", "--json")[1])["history"]
        assert entry["caller"] == f"oidc:{issuer.url}#operator-7" and entry["text"] == FIRST
