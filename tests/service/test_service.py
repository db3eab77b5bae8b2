"""Service behaviour beyond what the SDK exercises: TDX, api-versions, draft policies over TCB status and
the deprecated ``$`` claims, token lifetime, nonce, PostgreSQL, several servers on one database."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from affidavit.service.state import POLICY_TTL
from affidavit.simulate import SimulatedPlatform
from tests.pg import postgres_db, postgres_url  # noqa: F401
from tests.service.conftest import EVIDENCE_TIME, EVIDENCE_TIME_ARG, Inputs
from tests.service.helpers import ADMIN_TOKEN, Server, b64url, jwt_body, jwt_header, unsigned_policy

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def draft(authorization: str, issuance: str = "", config: str = "", version: str = "1.0") -> str:
    version = "1.1" if config and version == "1.0" else version
    cfg = f"configurationrules{{{config}}};" if config else ""
    return f"version={version}; {cfg} authorizationrules{{{authorization}}}; issuancerules{{{issuance}}};"


def attest(
    client: httpx.Client, kind: str, body: dict[str, Any], version: str | None = "2022-08-01"
) -> httpx.Response:
    query = f"?api-version={version}" if version else ""
    return client.post(f"/attest/{kind}{query}", json=body)


@pytest.fixture
def client(aad_server: Server) -> Iterator[httpx.Client]:
    with aad_server.client() as c:
        yield c


def test_tdx_vm(client: httpx.Client, sim_td: SimulatedPlatform) -> None:
    runtime = json.dumps({"key": "value"}).encode()
    quote = sim_td.tdx_quote(mrtd=b"\x42" * 48, report_data=hashlib.sha256(runtime).digest())
    data = {"data": b64url(runtime), "dataType": "JSON"}
    body = {"quote": b64url(quote), "runtimeData": data, "nonce": "tdx-nonce"}
    r = attest(client, "TdxVm", body, "2025-06-01")
    assert r.status_code == 200, r.text
    claims = jwt_body(r.json()["token"])
    assert claims["x-ms-attestation-type"] == "tdxvm" and claims["tee"] == "tdxvm"
    assert claims["tdx_mrtd"] == "42" * 48 and claims["tdx-mrtd"] == "42" * 48
    assert claims["attester_tcb_status"] == "UpToDate" and claims["attester_advisory_ids"] == []
    assert claims["x-ms-runtime"] == {"key": "value"} and claims["nonce"] == "tdx-nonce"
    assert "x-ms-sgx-mrenclave" not in claims


@pytest.mark.parametrize("version", [None, "2020-10-01", "2022-08-01", "2025-06-01"])
def test_api_versions(client: httpx.Client, sim: SimulatedPlatform, version: str | None) -> None:
    r = attest(client, "SgxEnclave", {"quote": b64url(sim.sgx_quote())}, version)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_type_is_case_insensitive_and_base64_lenient(client: httpx.Client, sim: SimulatedPlatform) -> None:
    import base64

    quote = sim.sgx_quote(mrenclave=b"\x07" * 32)
    r = attest(client, "sgxenclave", {"quote": base64.b64encode(quote).decode()})  # standard, padded
    assert r.status_code == 200, r.text
    assert jwt_body(r.json()["token"])["x-ms-sgx-mrenclave"] == "07" * 32


def test_policy_authorizes_on_tcb_status_and_advisories(
    client: httpx.Client, sim: SimulatedPlatform, inputs: Inputs
) -> None:
    up_to_date = draft('c:[type=="x-ms-sgx-tcb-status", value=="UpToDate"] => permit();')
    no_615 = draft('![type=="x-ms-sgx-advisory-ids", value=="INTEL-SA-00615"] => permit();', version="1.2")
    real = {"report": b64url(inputs.oe_report)}  # OutOfDate, INTEL-SA-00615 among its advisories
    simulated = {"quote": b64url(sim.sgx_quote())}  # UpToDate, no advisories
    for policy in (up_to_date, no_615):
        ok = attest(client, "SgxEnclave", {**simulated, "draftPolicyForAttestation": policy})
        assert ok.status_code == 200, ok.text
        r = attest(client, "OpenEnclave", {**real, "draftPolicyForAttestation": policy})
        assert r.status_code == 400 and r.json()["error"]["code"] == "PolicyEvaluationError"


def test_deprecated_dollar_claims_reach_the_policy(client: httpx.Client, sim: SimulatedPlatform) -> None:
    policy = draft(
        'c:[type=="$is-debuggable", value==false] => permit();',
        'c:[type=="$sgx-mrsigner"] => issue(type="signer", value=c.value);'
        ' c:[type=="$product-id"] => issue(type="pid", value=c.value);'
        ' c:[type=="$svn"] => issue(type="svn", value=c.value);'
        ' c:[type=="$tee"] => issue(type="t", value=c.value);'
        ' c:[type=="$sgx-mrenclave"] => issue(type="enclave", value=c.value);',
    )
    quote = sim.sgx_quote(mrsigner=b"\x0b" * 32, mrenclave=b"\x0c" * 32, isv_prod_id=4, isv_svn=9)
    r = attest(client, "SgxEnclave", {"quote": b64url(quote), "draftPolicyForAttestation": policy})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert jwt_header(token)["alg"] == "none" and token.endswith(".")
    claims = jwt_body(token)
    expected = {"signer": "0b" * 32, "enclave": "0c" * 32, "pid": 4, "svn": 9, "t": "sgx"}
    assert claims["x-ms-policy"] == expected
    debug = attest(client, "SgxEnclave", {"quote": b64url(sim.sgx_quote(debug=True)),
                                          "draftPolicyForAttestation": policy})
    assert debug.status_code == 400 and debug.json()["error"]["code"] == "PolicyEvaluationError"


@pytest.mark.parametrize(("minutes", "seconds"), [(60, 3600), (600, 8 * 3600)])
def test_report_validity_sets_the_lifetime(
    client: httpx.Client, sim: SimulatedPlatform, minutes: int, seconds: int
) -> None:
    """Up to the 8 hours a retired signing key stays published."""
    prop = f'=> issueproperty(type="report_validity_in_minutes", value={minutes});'
    policy = draft("=> permit();", config=prop)
    r = attest(client, "SgxEnclave", {"quote": b64url(sim.sgx_quote()), "draftPolicyForAttestation": policy})
    assert r.status_code == 200, r.text
    claims = jwt_body(r.json()["token"])
    assert claims["exp"] - claims["iat"] == seconds


def test_init_time_data_binds_to_the_config_id(client: httpx.Client, sim: SimulatedPlatform) -> None:
    init = b"initial configuration"
    quote = sim.sgx_quote(config_id=hashlib.sha256(init).digest() + b"\x00" * 32)
    ok = attest(client, "SgxEnclave", {"quote": b64url(quote), "initTimeData": {"data": b64url(init)}})
    assert ok.status_code == 200, ok.text
    bad = attest(client, "SgxEnclave", {"quote": b64url(quote), "initTimeData": {"data": b64url(b"other")}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidParameter"


def test_get_policy_returns_the_jws_as_sent(client: httpx.Client) -> None:
    text = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
    sent = unsigned_policy(text) + "\n"
    r = client.put("/policies/Tpm?api-version=2020-10-01", content=sent,
                   headers={"Content-Type": "text/plain; charset=utf-8", **AUTH})
    try:
        assert r.status_code == 200, r.text
        body = jwt_body(r.json()["token"])
        assert body["x-ms-policy-result"] == "Updated"
        got = jwt_body(client.get("/policies/Tpm?api-version=2020-10-01", headers=AUTH).json()["token"])
        assert got["x-ms-policy"] == sent.strip()
        assert got["exp"] - got["iat"] == 3600
    finally:
        reset = client.post("/policies/Tpm:reset?api-version=2020-10-01", content="eyJhbGciOiJub25lIn0..",
                            headers={"Content-Type": "text/plain", **AUTH})
    assert jwt_body(reset.json()["token"])["x-ms-policy-result"] == "Removed"
    # Tpm has no default policy: GET returns no x-ms-policy, which the SDK reads as "".
    empty = jwt_body(client.get("/policies/Tpm", headers=AUTH).json()["token"])
    assert "x-ms-policy" not in empty


def test_postgres_two_servers_one_database(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform, postgres_db: str  # noqa: F811
) -> None:
    (tmp_path / "kek").write_text("42" * 32)  # servers on one database share its key-encryption key
    args = inputs.serve_args() + ["--database-url", postgres_db, "--key-encryption-key-file",
        str(tmp_path / "kek")]
    one = Server(tmp_path / "one", args).start()
    try:
        two = Server(tmp_path / "two", args).start()
        try:
            with one.client() as a, two.client() as b:
                assert a.get("/certs").json()["keys"] == b.get("/certs").json()["keys"]
                before = attest(b, "SgxEnclave", {"quote": b64url(sim.sgx_quote(isv_svn=5))})
                assert "pg-svn" not in jwt_body(before.json()["token"])
                issue = 'c:[type=="x-ms-sgx-svn"] => issue(type="pg-svn", value=c.value);'
                text = draft("=> permit();", issue)
                put = a.put("/policies/SgxEnclave", content=unsigned_policy(text),
                            headers={"Content-Type": "text/plain", **AUTH})
                assert put.status_code == 200, put.text
                # Server two had the default policy cached: the change reaches it within POLICY_TTL.
                deadline = time.monotonic() + POLICY_TTL + 2
                while True:
                    r = attest(b, "SgxEnclave", {"quote": b64url(sim.sgx_quote(isv_svn=5))})
                    assert r.status_code == 200, r.text
                    token = r.json()["token"]
                    if "pg-svn" in jwt_body(token) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert jwt_body(token)["pg-svn"] == 5
                assert jwt_header(token)["kid"] in {k["kid"] for k in a.get("/certs").json()["keys"]}
        finally:
            two.stop()
    finally:
        one.stop()


def test_several_workers_share_the_key(tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform) -> None:
    server = Server(tmp_path / "workers", [*inputs.serve_args(), "--workers", "2"]).start()
    try:
        with server.client() as c:
            kids = set()
            for _ in range(6):  # new connections: the kernel spreads them over both workers
                with server.client() as fresh:
                    r = attest(fresh, "SgxEnclave", {"quote": b64url(sim.sgx_quote())})
                    assert r.status_code == 200, r.text
                    kids.add(jwt_header(r.json()["token"])["kid"])
            assert len(kids) == 1 and kids <= {k["kid"] for k in c.get("/certs").json()["keys"]}
    finally:
        server.stop()


@pytest.mark.parametrize("grace", [None, "2d", "12h"])
def test_collateral_grace_is_configurable_and_flagged(tmp_path: Path, grace: str | None) -> None:
    """Collateral one day past nextUpdate: refused by default and with 12 h of grace; accepted with 2 days,
    flagged in the token so that a policy or relying party can still refuse it."""
    issued = EVIDENCE_TIME - timedelta(days=31)
    stale = SimulatedPlatform.create(fmspc="00C0F0F00000", ca="processor", now=issued, seed="stale")
    coll = tmp_path / "collateral"
    coll.mkdir()
    (coll / "stale.json").write_text(json.dumps(stale.collateral(now=issued, valid_for=timedelta(days=30))))
    (tmp_path / "root.pem").write_bytes(stale.root_pem)
    args = ["--collateral-dir", str(coll), "--trust-root", str(tmp_path / "root.pem"),
            "--evidence-time", EVIDENCE_TIME_ARG, "--admin-token", ADMIN_TOKEN]
    if grace is not None:
        args += ["--collateral-grace", grace]
    with Server(tmp_path / "srv", args) as server, server.client() as client:
        r = attest(client, "SgxEnclave", {"quote": b64url(stale.sgx_quote())})
        if grace != "2d":
            assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter", r.text
            assert "expired" in r.json()["error"]["message"]
            return
        assert r.status_code == 200, r.text
        assert jwt_body(r.json()["token"])["x-ms-sgx-collateral-expired"] is True
        refuse = draft('![type=="x-ms-sgx-collateral-expired"] => permit();', version="1.2")
        denied = attest(client, "SgxEnclave", {"quote": b64url(stale.sgx_quote()),
                                               "draftPolicyForAttestation": refuse})
        assert denied.status_code == 400 and denied.json()["error"]["code"] == "PolicyEvaluationError"
