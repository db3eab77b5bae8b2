"""Issue 10 point 1: nothing a client sends can pass as a claim the service measured.

TPM ``att_data.custom_claims`` reach policies with issuer ``CustomClaim`` and a type behind
``CUSTOM_CLAIM_PREFIX``; SGX/TDX runtime and init-time JSON reach them only as the one ``x-ms-runtime`` /
``x-ms-inittime`` claim (bound to the quote), never as claims of their own. The properties: for every
claim type the service emits, a client-supplied value under that name changes no policy's outcome.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.attestation_types import SGX_ENCLAVE
from affidavit.evidence.contract import CustomClaim, EvidenceInput, VerifiedEvidence, VerifyOptions
from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral
from affidavit.evidence.dcap.attest import DcapEvidenceVerifier
from affidavit.evidence.tpm import analyze_log
from affidavit.evidence.tpm.claims import derive_claims
from affidavit.jose import b64url
from affidavit.policy import (
    CUSTOM_CLAIM_PREFIX,
    PROPERTY_DEFAULTS,
    PolicyEvaluationError,
    compile_policy,
    evaluate,
)
from affidavit.service.decode import parse_attest_request
from affidavit.service.pipeline import (
    AttestationInput,
    check_bindings,
    custom_of,
    evidence_token_claims,
    incoming_claim_list,
    incoming_of,
)
from affidavit.service.tpm_protocol import ClientEvidence
from affidavit.simulate import SimulatedPlatform

NOW = datetime(2025, 6, 10, tzinfo=UTC)
# MAA's TPM claim names (maa-policy §6.2): the service emits each when the evidence shows it.
TPM_NAMES = ("aikValidated", "aikPubHash", "tpmVersion", "secureBootEnabled", "iommuEnabled",
             "bootDebuggingDisabled", "notSafeMode", "notWinPE", "vbsEnabled", "vbsReportPresent",
             "events", "bootEvents", "pcrs", "x-ms-attestation-type", "x-ms-policy-hash",
             "x-ms-policy-signer")


def tpm_service_claims(vectors: Path) -> dict[str, Any]:
    """What the service derives from a real boot log whose Secure Boot is off (hirs), as in the issue."""
    analysis = analyze_log((vectors / "tpm/hirs/TpmLog.bin").read_bytes())
    claims = derive_claims(analysis, analysis.replayed, frozenset(range(24)))
    claims.update({"aikValidated": True, "aikPubHash": "q2Ylj0xZC3wJ+b3wz8o/5w==", "tpmVersion": 2,
                   "x-ms-attestation-type": "tpm", "x-ms-policy-hash": "abc"})
    return claims


@pytest.fixture(scope="module")
def tpm_claims(vectors: Path) -> dict[str, Any]:
    claims = tpm_service_claims(vectors)
    assert claims["secureBootEnabled"] is False  # the log of the issue's attack
    return claims


@dataclass(frozen=True)
class Sgx:
    sim: SimulatedPlatform
    verifier: DcapVerifier
    collateral: Any

    def verified(self, runtime: bytes | None, runtime_type: str = "JSON") -> dict[str, Any]:
        report_data = hashlib.sha256(runtime).digest() if runtime is not None else b""
        quote = self.sim.sgx_quote(mrenclave=b"\x11" * 32, mrsigner=b"\x22" * 32, isv_svn=3,
                                   report_data=report_data)
        body: dict[str, Any] = {"quote": b64url(quote)}
        if runtime is not None:
            body["runtimeData"] = {"data": b64url(runtime), "dataType": runtime_type}
        request = parse_attest_request(json.dumps(body).encode(), "quote")
        # the pipeline's path: the SgxEnclave verifier, the bindings, the token and incoming claims
        dcap = DcapEvidenceVerifier(type_name="SgxEnclave", tee="sgx", verifier=self.verifier,
                                    provider=None, platform_lookup=self.verifier.platform)  # type: ignore[arg-type]
        parsed = dcap.parse(EvidenceInput(quote))
        options = VerifyOptions(properties=PROPERTY_DEFAULTS, collateral_grace=timedelta(0))
        verified = dcap.verify(parsed, self.collateral, NOW, options)
        submitted = AttestationInput(EvidenceInput(quote), runtime=request.runtime, inittime=request.inittime)
        check_bindings(SGX_ENCLAVE, verified, submitted)
        return incoming_of(SGX_ENCLAVE, verified, evidence_token_claims(SGX_ENCLAVE, verified, submitted))


@pytest.fixture(scope="module")
def sgx() -> Sgx:
    sim = SimulatedPlatform.create(fmspc="00A0F0F00001", ca="processor", now=NOW, seed="custom-claims")
    verifier = DcapVerifier(TrustAnchors.from_pem(sim.root_pem))
    return Sgx(sim, verifier, load_collateral(sim.collateral(now=NOW)))


def _policy_incoming(claims: dict[str, Any], evidence: ClientEvidence) -> list[Any]:
    """The TPM path's incoming claims: the verifier's custom claims (evidence.tpm.attest) through the
    pipeline's ``custom_of`` into ``incoming_claim_list``."""
    verified = VerifiedEvidence(
        claims=claims, custom_claims=tuple(CustomClaim(n, v, t) for n, v, t in evidence.custom_claims)
    )
    return incoming_claim_list(verified.claims, {}, custom=custom_of(verified))


# -- policies over service claim names -----------------------------------------------------------------


def _literal(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and '"' not in value and "\\" not in value and len(value) < 200:
        return json.dumps(value)
    return None


client_values = st.one_of(st.booleans(), st.integers(0, 300), st.sampled_from(["tpm", "sgx", "abc", "", "x"]))


@st.composite
def policies(draw: st.DrawFn, names: list[str], service: dict[str, Any]) -> str:
    """A policy whose rules name service claim types, comparing with the service's values, negations
    and values a client might send; no rule restricts the issuer (the dangerous case)."""
    def condition() -> str:
        name = draw(st.sampled_from(names))
        candidates = [v for v in (service.get(name), draw(client_values)) if _literal(v) is not None]
        if isinstance(service.get(name), bool):
            candidates.append(not service[name])
        if candidates and draw(st.booleans()):
            return f'[type=="{name}", value=={_literal(draw(st.sampled_from(candidates)))}]'
        return f'[type=="{name}"]'

    auth = []
    for _ in range(draw(st.integers(1, 4))):
        conds = [condition() for _ in range(draw(st.integers(1, 3)))]
        if draw(st.integers(0, 4)) == 0:
            auth.append(f"!{conds[0]} => deny();")
        else:
            auth.append(" && ".join(f"c{i}:{c}" for i, c in enumerate(conds)) + " => permit();")
    issue = [f'c:[type=="{n}"] => issue(type="out-{n}", value=c.value);'
             for n in draw(st.lists(st.sampled_from(names), max_size=4, unique=True))]
    return f"version=1.2; authorizationrules {{ {' '.join(auth)} }}; issuancerules {{ {' '.join(issue)} }};"


def _outcome(policy: str, incoming: list[Any]) -> tuple[Any, ...]:
    """Everything a policy decides: permit/deny, issued claims, properties, or the error it stops with."""
    try:
        out = evaluate(compile_policy(policy), incoming)
    except PolicyEvaluationError as exc:
        return ("error", exc.message)
    return out.authorized, out.claims, out.properties


def _vtype(value: Any) -> str:
    return "Boolean" if isinstance(value, bool) else "Integer" if isinstance(value, int) else "String"


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # the log's claims are large
@settings(max_examples=300)
@given(data=st.data())
def test_tpm_custom_claims_never_change_a_policy_outcome(
    tpm_claims: dict[str, Any], data: st.DataObject
) -> None:
    names = sorted(set(tpm_claims) | set(TPM_NAMES))
    policy = data.draw(policies(names, tpm_claims))
    custom = data.draw(st.lists(st.tuples(st.sampled_from(names), client_values), min_size=1, max_size=6))
    evidence = ClientEvidence(quote=b"", signature=b"", pcrs=(), event_log=None, aik_cert=None, aik_pub=None,
                              custom_claims=tuple((n, v, _vtype(v)) for n, v in custom))
    plain = _outcome(policy, incoming_claim_list(tpm_claims, {}))
    assert _outcome(policy, _policy_incoming(tpm_claims, evidence)) == plain, policy


def test_the_issues_attack_no_longer_permits(tpm_claims: dict[str, Any]) -> None:
    policy = """version=1.2; authorizationrules { c:[type=="secureBootEnabled", value==true] => permit(); };
        issuancerules { c:[type=="secureBootEnabled"] => issue(type="SecureBootEnabled", value=c.value); };"""
    evidence = ClientEvidence(quote=b"", signature=b"", pcrs=(), event_log=None, aik_cert=None, aik_pub=None,
                              custom_claims=(("secureBootEnabled", True, "Boolean"),))
    authorized, claims, _ = _outcome(policy, _policy_incoming(tpm_claims, evidence))
    assert not authorized and claims == {}


def test_custom_claims_are_readable_under_the_prefix(tpm_claims: dict[str, Any]) -> None:
    policy = f"""version=1.2; authorizationrules {{
        c:[type=="{CUSTOM_CLAIM_PREFIX}owner", issuer=="CustomClaim", value=="lab-7"] => permit(); }};
        issuancerules {{ c:[type=="{CUSTOM_CLAIM_PREFIX}owner"] => issue(type="owner", value=c.value); }};"""
    evidence = ClientEvidence(quote=b"", signature=b"", pcrs=(), event_log=None, aik_cert=None, aik_pub=None,
                              custom_claims=(("owner", "lab-7", "String"),))
    assert _outcome(policy, _policy_incoming(tpm_claims, evidence))[:2] == (True, {"owner": "lab-7"})


# Service claims whose value *is* the client's (bound) data, by MAA's design: not claims the service measured.
_CLIENT_DATA = frozenset({"x-ms-runtime", "x-ms-inittime", "x-ms-sgx-ehd", "aas-ehd", "maa-ehd",
                          "x-ms-runtime-data", "x-ms-inittime-data", "x-ms-sgx-report-data",
                          "x-ms-sgx-collateral", "maa-attestationcollateral"})


@settings(max_examples=60)
@given(data=st.data())
def test_runtime_json_never_adds_claims_of_its_own(sgx: Sgx, data: st.DataObject) -> None:
    baseline = sgx.verified(None)
    names = sorted(set(baseline) - _CLIENT_DATA)
    policy = data.draw(policies(names, baseline))
    runtime = data.draw(st.dictionaries(st.sampled_from(names), client_values, min_size=1, max_size=5))
    with_runtime = sgx.verified(json.dumps(runtime).encode())
    assert set(with_runtime) - set(baseline) == {"x-ms-runtime"}
    assert {k: v for k, v in with_runtime.items() if k not in _CLIENT_DATA} == \
        {k: v for k, v in baseline.items() if k not in _CLIENT_DATA}
    assert _outcome(policy, incoming_claim_list(with_runtime, {})) == \
        _outcome(policy, incoming_claim_list(baseline, {}))


# -- live: the issue's attack, against a real server and swtpm ------------------------------------------

DEMO_POLICY = """version=1.2;
authorizationrules { c:[type=="secureBootEnabled", value==true] => permit(); };
issuancerules { c:[type=="secureBootEnabled"] => issue(type="SecureBootEnabled", value=c.value); };
"""


def test_live_custom_claim_cannot_switch_secure_boot_on(tmp_path: Path, vectors: Path) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.security.attestation import AttestationClient
    from cryptography.hazmat.primitives.asymmetric import rsa

    from affidavit.client.tpm import TpmEvidenceSource, build_request
    from affidavit.client.tpm_tools import DEFAULT_AK_HANDLE, parse_pcr_list
    from affidavit.simulate.swtpm import AkCertificateAuthority
    from tests.service.helpers import StaticCredential, booted_tpm, jwt_body, tpm_server

    log = (vectors / "tpm/hirs/TpmLog.bin").read_bytes()
    ca = AkCertificateAuthority.create()
    (tmp_path / "ak-ca.pem").write_bytes(ca.pem)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = tpm_server(tmp_path / "svc", (tmp_path / "ak-ca.pem",))
    with booted_tpm(tmp_path, log, ca) as booted, server as svc:
        svc.put_policy("Tpm", DEMO_POLICY.replace("value==true] => permit", "value==false] => permit"))
        source = TpmEvidenceSource(
            ak=booted.ak, event_log=log,
            quoter=lambda data: booted.tools.quote(DEFAULT_AK_HANDLE, parse_pcr_list("0-23"), data))

        def send(client: AttestationClient, custom: list[dict[str, Any]]) -> dict[str, Any]:
            init = json.loads(client.attest_tpm(json.dumps({"payload": {"type": "aikcert"}}),
                                                headers={"Connection": "close"}))["payload"]
            jws = build_request(source, init["challenge"], init["service_context"], key, custom_claims=custom)
            answer = json.loads(client.attest_tpm(json.dumps({"payload": {"request": jws}}),
                                                  headers={"Connection": "close"}))
            return jwt_body(answer["payload"]["report"])

        lie = [{"name": "secureBootEnabled", "value": True, "value_type": "Boolean"}]
        with AttestationClient(svc.url, StaticCredential(), connection_verify=svc.ca_file) as client:
            # Secure Boot is off in this log: a policy requiring it off permits, and the client's claim
            # does not show up as a second value of the service's claim.
            claims = send(client, lie)
            assert claims["secureBootEnabled"] is False
            assert claims["x-ms-policy"] == {"SecureBootEnabled": False}
            svc.put_policy("Tpm", DEMO_POLICY)
            with pytest.raises(HttpResponseError) as info:
                send(client, lie)
            assert info.value.status_code == 400 and info.value.error.code == "PolicyEvaluationError"
