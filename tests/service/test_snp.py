"""``/attest/SevSnpVm`` end to end on a simulated AMD PKI: client -> service -> token -> relying party, and
each way a report can be wrong refused with its message (tampered, wrong chip, TCB mismatch, revoked VCEK,
debug guest under a policy that forbids it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.client.http import AttestationClient, RuntimeData
from affidavit.evidence.snp.maa import build_document
from affidavit.jose import b64url
from affidavit.relying_party import ExpectationFailed, Expectations, verify_token
from affidavit.service import ServiceConfig, create_app
from affidavit.simulate.snp import ReportFields, SimulatedAmdPki, SimulatedVek, Tcb
from tests.service.helpers import ADMIN_TOKEN, AsgiClient, Server, jwt_body, unsigned_policy

NOW = dt.datetime.now(dt.UTC)
TCB = Tcb(bootloader=3, tee=0, snp=8, microcode=115)
MAA_HASH = "9NY0VnTQ-IiBriBplVUpFbczcDaEBUwsiFYAzHu_gco"
RUNTIME = json.dumps({"keys": [{"kid": "HCLTransferKey", "kty": "RSA", "e": "AQAB", "n": "abc"}]}).encode()
NO_DEBUG = (
    'version= 1.0;authorizationrules{c:[type=="x-ms-sevsnpvm-is-debuggable", value==false] => permit();};'
)


@dataclass(frozen=True)
class Setup:
    pki: SimulatedAmdPki
    vcek: SimulatedVek
    revoked: SimulatedVek
    trust_pem: Path
    offline: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("snp-inputs")
    pki = SimulatedAmdPki.create("Milan", now=NOW)
    vcek = pki.vcek(tcb=TCB, now=NOW)
    revoked = pki.vcek(tcb=TCB, now=NOW)
    trust = root / "amd-sim-roots.pem"
    trust.write_bytes(pki.ark_pem + pki.cert_chain_vcek + pki.cert_chain_vlek)
    offline = root / "kds"
    offline.mkdir()
    (offline / "vcek.der").write_bytes(vcek.der)
    (offline / "revoked.der").write_bytes(revoked.der)
    (offline / "cert_chain").write_bytes(pki.cert_chain_vcek)
    (offline / "crl").write_bytes(pki.crl([], now=NOW))
    (offline / "ask.crl").write_bytes(pki.crl([revoked.certificate.serial_number], issuer="ask", now=NOW))
    return Setup(pki, vcek, revoked, trust, offline)


def _app(tmp: Path, setup: Setup, **extra: Any) -> AsgiClient:
    extra = {"snp_trust_roots": [str(setup.trust_pem)], "snp_kds_url": "none", **extra}
    return AsgiClient(create_app(ServiceConfig(data_dir=tmp, admin_token=ADMIN_TOKEN, extra=extra)))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, setup: Setup) -> Iterator[AsgiClient]:
    c = _app(tmp_path_factory.mktemp("snp-svc"), setup)
    yield c
    c.close()


@pytest.fixture(scope="module")
def offline_client(tmp_path_factory: pytest.TempPathFactory, setup: Setup) -> Iterator[AsgiClient]:
    c = _app(tmp_path_factory.mktemp("snp-offline"), setup, snp_collateral_dir=str(setup.offline),
             snp_product="Milan")
    yield c
    c.close()


def _report(vcek: SimulatedVek, runtime: bytes = RUNTIME, **changes: Any) -> bytes:
    data = hashlib.sha256(runtime).digest() + bytes(32)
    return vcek.report(replace(ReportFields().with_tcb(vcek.tcb), report_data=data, **changes))


def _body(report: bytes, chain: bytes | None, runtime: bytes | None = RUNTIME, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"report": b64url(build_document(report, chain))}
    if runtime is not None:
        body["runtimeData"] = {"data": b64url(runtime), "dataType": "JSON"}
    body.update(more)
    return body


def _attest(client: AsgiClient, body: dict[str, Any], *, path: str = "SevSnpVm",
            version: str = "2022-08-01") -> httpx.Response:
    return client.post(f"/attest/{path}?api-version={version}", json=body)


def _keys(client: AsgiClient) -> dict[str, Any]:
    from cryptography import x509

    from affidavit.tokens.b64 import b64std_decode

    jwks = client.get("/certs").json()
    return {k["kid"]: x509.load_der_x509_certificate(b64std_decode(k["x5c"][0])).public_key()
            for k in jwks["keys"]}


def test_token_has_maa_claims_and_verifies(client: AsgiClient, setup: Setup) -> None:
    report = _report(setup.vcek)
    r = _attest(client, _body(report, setup.vcek.chain_pem, nonce="noncesevsnp987"))
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    verified = verify_token(token, _keys(client), issuer=None, now=time.time(), nonce="noncesevsnp987",
                            expectations=Expectations(claims={"x-ms-sevsnpvm-vmpl": frozenset({0})}))
    claims = verified.claims
    assert claims["x-ms-attestation-type"] == "sevsnpvm"
    assert claims["x-ms-policy-hash"] == MAA_HASH
    assert claims["x-ms-ver"] == "1.0"
    assert claims["x-ms-runtime"] == json.loads(RUNTIME)
    assert claims["x-ms-sevsnpvm-reportdata"] == report[0x50:0x90].hex()
    assert claims["x-ms-sevsnpvm-launchmeasurement"] == report[0x90:0xC0].hex()
    assert claims["x-ms-sevsnpvm-microcode-svn"] == 115 and claims["x-ms-sevsnpvm-snpfw-svn"] == 8
    assert claims["x-ms-sevsnpvm-is-debuggable"] is False and claims["x-ms-sevsnpvm-smt-allowed"] is True
    assert claims["x-ms-sevsnpvm-familyId"] == "01" + "00" * 15
    assert claims["exp"] - claims["iat"] == 8 * 3600
    assert not any(k.startswith("x-affidavit-") for k in claims)  # Affidavit's extras are policy-only


@pytest.mark.parametrize("path", ["SevSnpVm", "SevSnpVM", "sevsnpvm"])
@pytest.mark.parametrize("version", ["2020-10-01", "2022-08-01", "2025-06-01"])
def test_spellings_and_api_versions(client: AsgiClient, setup: Setup, path: str, version: str) -> None:
    r = _attest(client, _body(_report(setup.vcek), setup.vcek.chain_pem), path=path, version=version)
    assert r.status_code == 200, r.text


def test_sidecar_quirks(client: AsgiClient, setup: Setup) -> None:
    """Padded base64url, a numeric nonce, an empty initTimeData, standard base64 inside the document."""
    import base64

    report = _report(setup.vcek)
    doc = json.dumps({"SnpReport": base64.b64encode(report).decode(),
                      "VcekCertChain": base64.urlsafe_b64encode(setup.vcek.chain_pem).decode()},
                     indent=4, separators=(",", " : ")).encode()
    body = {"report": base64.urlsafe_b64encode(doc).decode(), "nonce": 12345678901234567890,
            "runtimeData": {"data": base64.urlsafe_b64encode(RUNTIME).decode(), "dataType": "JSON"},
            "initTimeData": {"data": "", "dataType": ""}}
    r = _attest(client, body, path="SevSnpVM", version="2020-10-01")
    assert r.status_code == 200, r.text
    assert jwt_body(r.json()["token"])["nonce"] == 12345678901234567890


def test_init_time_data_binds_host_data(client: AsgiClient, setup: Setup) -> None:
    policy = b"package policy\nallow := true\n"
    report = _report(setup.vcek, host_data=hashlib.sha256(policy).digest())
    init = {"data": b64url(policy), "dataType": "Binary"}
    r = _attest(client, _body(report, setup.vcek.chain_pem, initTimeData=init))
    assert r.status_code == 200, r.text
    assert jwt_body(r.json()["token"])["x-ms-sevsnpvm-hostdata"] == hashlib.sha256(policy).hexdigest()
    r = _attest(client, _body(_report(setup.vcek), setup.vcek.chain_pem, initTimeData=init))
    assert r.status_code == 400 and "HOST_DATA" in r.text


def test_runtime_data_must_match_report_data(client: AsgiClient, setup: Setup) -> None:
    body = _body(_report(setup.vcek), setup.vcek.chain_pem, runtime=b'{"other": 1}')
    r = _attest(client, body)
    assert r.status_code == 400 and "REPORT_DATA" in r.json()["error"]["message"]


def _refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message


def test_tampered_report(client: AsgiClient, setup: Setup) -> None:
    report = bytearray(_report(setup.vcek))
    report[0x90] ^= 1
    _refused(_attest(client, _body(bytes(report), setup.vcek.chain_pem)), "signature does not verify")


def test_wrong_chip(client: AsgiClient, setup: Setup) -> None:
    report = _report(setup.vcek, chip_id=setup.revoked.chip_id)
    _refused(_attest(client, _body(report, setup.vcek.chain_pem)), "hwID", "CHIP_ID")


def test_tcb_mismatch(client: AsgiClient, setup: Setup) -> None:
    fields = ReportFields().with_tcb(replace(TCB, microcode=116))
    data = hashlib.sha256(RUNTIME).digest() + bytes(32)
    report = setup.vcek.report(replace(fields, report_data=data))
    _refused(_attest(client, _body(report, setup.vcek.chain_pem)), "ucodeSPL=115", "REPORTED_TCB")


def test_foreign_chain(client: AsgiClient, setup: Setup) -> None:
    rogue = SimulatedAmdPki.create("Milan", now=NOW).vcek(tcb=TCB, now=NOW)
    _refused(_attest(client, _body(_report(rogue), rogue.chain_pem)), "not the pinned AMD root")


def test_no_chain_and_no_collateral_source(client: AsgiClient, setup: Setup) -> None:
    _refused(_attest(client, _body(_report(setup.vcek), None)), "VcekCertChain")


def test_offline_directory_and_revoked_vcek(offline_client: AsgiClient, setup: Setup) -> None:
    r = _attest(offline_client, _body(_report(setup.vcek, version=2), None))
    assert r.status_code == 200, r.text
    _refused(_attest(offline_client, _body(_report(setup.revoked, version=2), None)), "revoked")
    # The client's chain does not escape the revocation either: the directory's CRLs apply to it.
    _refused(_attest(offline_client, _body(_report(setup.revoked), setup.revoked.chain_pem)), "revoked")


def test_revoked_vcek_sent_alone_with_a_v2_report(offline_client: AsgiClient, setup: Setup) -> None:
    """A v2 report names no product, and a chain of the VCEK alone has no ASK/ARK CN naming one (the
    shipped ASK completes it): the CRL is still the one of the product the chain verifies to."""
    _refused(_attest(offline_client, _body(_report(setup.revoked, version=2), setup.revoked.pem)), "revoked")
    ok = _attest(offline_client, _body(_report(setup.vcek, version=2), setup.vcek.pem))
    assert ok.status_code == 200, ok.text


def test_a_chain_whose_crl_was_not_fetched_is_refused(offline_client: AsgiClient, setup: Setup) -> None:
    """An ARK of another product put first in the chain must not decide which CRL is checked; a chain
    verified to a product whose CRL was not fetched is refused, never verified without revocation."""
    other = SimulatedAmdPki.create("Genoa", now=NOW)
    chain = other.ark_pem + setup.revoked.chain_pem
    r = _attest(offline_client, _body(_report(setup.revoked, version=2), chain))
    assert r.status_code == 400, r.text


def test_debug_guest_under_a_policy_that_forbids_it(
    tmp_path: Path, setup: Setup
) -> None:
    client = _app(tmp_path, setup)
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"}
        r = client.request("PUT", "/policies/SevSnpVm?api-version=2022-08-01",
                           content=unsigned_policy(NO_DEBUG), headers=headers)
        assert r.status_code == 200, r.text
        ok = _attest(client, _body(_report(setup.vcek), setup.vcek.chain_pem))
        assert ok.status_code == 200, ok.text
        debug = _report(setup.vcek, policy=0xB0000)
        r = _attest(client, _body(debug, setup.vcek.chain_pem))
        assert r.status_code == 400 and r.json()["error"]["code"] == "PolicyEvaluationError", r.text
        # The relying party refuses a debug guest's token on its own too.
        permit = "version= 1.0;authorizationrules{=> permit();};"
        draft = _attest(client, _body(debug, setup.vcek.chain_pem, draftPolicyForAttestation=permit))
        with pytest.raises(ExpectationFailed):
            verify_token(draft.json()["token"], {}, issuer=None, now=time.time(), allow_unsecured=True,
                         expectations=Expectations())
    finally:
        client.close()


def test_an_endorsement_with_a_tagged_container_as_map_key_is_a_400(client: AsgiClient, setup: Setup) -> None:
    uvm = bytes([0x84, 0x44, 0xA1, 0xC1, 0x80, 0x00, 0xA0, 0x40, 0x40])  # protected {tag 1([]): 0}
    body = {"report": b64url(build_document(_report(setup.vcek), setup.vcek.chain_pem, (uvm,)))}
    r = _attest(client, body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter", r.text


def test_default_policy_is_maas_text(client: AsgiClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = client.get("/policies/SevSnpVm?api-version=2022-08-01", headers=auth)
    assert r.status_code == 200, r.text
    policy_jws = jwt_body(r.json()["token"])["x-ms-policy"]
    text = b"version= 1.0;authorizationrules{=> permit();};"
    assert jwt_body(policy_jws)["AttestationPolicy"] == b64url(text)


_garbage = st.one_of(
    st.binary(max_size=300).map(b64url),
    st.dictionaries(st.sampled_from(["SnpReport", "VcekCertChain", "Endorsements"]),
                    st.one_of(st.text(max_size=40), st.binary(max_size=1300).map(b64url), st.integers()),
                    max_size=3).map(lambda d: b64url(json.dumps(d).encode())),
    st.integers(), st.none(),
)


@given(_garbage, st.one_of(st.none(), st.integers(), st.text(max_size=10), st.booleans()))
def test_any_body_is_a_result_or_a_400(client: AsgiClient, report: Any, nonce: Any) -> None:
    body: dict[str, Any] = {"report": report}
    if nonce is not None:
        body["nonce"] = nonce
    r = _attest(client, body)
    assert r.status_code in (200, 400), r.text


@pytest.mark.slow
def test_client_server_token_relying_party(tmp_path: Path, setup: Setup) -> None:
    """A real ``affidavit serve`` on loopback, the Affidavit client, and the relying party's TokenVerifier."""
    from affidavit.relying_party import TokenVerifier

    args = ["--admin-token", ADMIN_TOKEN, "--snp-trust-root", str(setup.trust_pem), "--kds-url", "none",
            "--snp-collateral-dir", str(setup.offline), "--snp-product", "Milan"]
    with Server(tmp_path / "srv", args, tls=False) as server:
        with AttestationClient(server.url) as client:
            token = client.attest_snp(build_document(_report(setup.vcek, version=2)),
                                      runtime_data=RuntimeData(RUNTIME, json=True), nonce="n-1").token
            from affidavit.client import ServiceRejected

            with pytest.raises(ServiceRejected, match="revoked"):
                client.attest_snp(build_document(_report(setup.revoked, version=2)),
                                  runtime_data=RuntimeData(RUNTIME, json=True))
        verifier = TokenVerifier(server.url)
        try:
            claims = verifier.verify(token, nonce="n-1").claims
        finally:
            verifier.close()
    assert claims["x-ms-attestation-type"] == "sevsnpvm"
    assert claims["x-ms-sevsnpvm-reportdata"].startswith(hashlib.sha256(RUNTIME).hexdigest())


def test_verify_refuses_a_chain_of_another_product_than_its_crl(setup: Setup) -> None:
    """The backstop behind the CRL lookup: the verifier refuses a client chain that verified to another
    product than the one whose CRL ``collateral`` looked up (or when none was looked up)."""
    from affidavit.collateral.amd import SnpCollateral
    from affidavit.evidence.snp import SnpError
    from affidavit.service.snp_route import SnpAttestationVerifier

    verifier = SnpAttestationVerifier(setup.pki.trust(), provider=object())
    parsed = verifier.parse(build_document(_report(setup.vcek, version=2), setup.vcek.chain_pem))
    assert verifier.verify(parsed, SnpCollateral(None, parsed.chain, (), crl_product="Milan"), NOW).claims
    for asked in ("Genoa", None):
        with pytest.raises(SnpError) as info:
            verifier.verify(parsed, SnpCollateral(None, parsed.chain, (), crl_product=asked), NOW)
        assert info.value.code == "snp_crl_unavailable"
