"""``POST /attest/AzureGuest``: MAA's envelope in, a token sealed to the certified ephemeral key out."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from affidavit.service import ServiceConfig, create_app
from affidavit.simulate import SimulatedPlatform
from affidavit.simulate.azure_cvm import SoftVtpm, attestation_info, report_data_for, request_body
from affidavit.tokens.sealed import unseal_token
from tests.conftest import VECTORS
from tests.service.conftest import EVIDENCE_TIME, Inputs
from tests.service.helpers import AsgiClient, jwt_body

URL = "/attest/AzureGuest?api-version=2020-10-01"
MRTD = b"\x42" * 48


@pytest.fixture(scope="module")
def vtpm() -> SoftVtpm:
    return SoftVtpm()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[AsgiClient]:
    data: Path = tmp_path_factory.mktemp("azure-guest")
    baselines = [{"tee": "tdxvm", "tdx_mrtd": [MRTD.hex()], "minimum": {}}]
    config = ServiceConfig(
        data_dir=data,
        admin_token="x",
        collateral_dir=inputs.collateral_dir,
        trust_roots=(inputs.intel_root, inputs.sim_root),
        evidence_time=EVIDENCE_TIME,
        extra={"azure_cvm_baselines": baselines},
    )
    c = AsgiClient(create_app(config))
    yield c
    c.close()


def _tdx_info(vtpm: SoftVtpm, sim_td: SimulatedPlatform, mrtd: bytes = MRTD, **kw: Any) -> tuple[dict, Any]:
    claims = vtpm.runtime_claims()
    quote = sim_td.tdx_quote(mrtd=mrtd, report_data=report_data_for(claims))
    return attestation_info(vtpm, claims, td_quote=quote, **kw)


def _unseal(body: dict[str, Any], enc: Any) -> dict[str, Any]:
    jwt = unseal_token(body["token"], lambda k: enc.decrypt(k, padding.PKCS1v15()))
    return jwt_body(jwt)


def test_tdx_guest_token_is_sealed_and_carries_azurevm_claims(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    info, enc = _tdx_info(vtpm, sim_td, client_payload={"nonce": "MTIzNA==", "empty": ""})
    r = client.post(URL, json=request_body(info))
    assert r.status_code == 200, r.text
    sealed = json.loads(base64.urlsafe_b64decode(r.json()["token"] + "=="))
    assert sealed["EncryptionParams"] == {
        "BlockMode": "ChainingModeGCM",
        "BlockPadding": "PKCS7",
        "Cipher": "AES",
        "Iv": sealed["EncryptionParams"]["Iv"],
        "KeySizeInBits": 256,
    }
    assert len(base64.b64decode(sealed["AuthenticationData"])) == 16
    claims = _unseal(r.json(), enc)
    assert claims["x-ms-attestation-type"] == "azurevm" and claims["x-ms-ver"] == "1.0"
    assert claims["x-ms-azurevm-attested-pcrs"] == list(range(8))
    assert claims["x-ms-azurevm-ostype"] == "Linux" and claims["x-ms-azurevm-osversion-major"] == 24
    assert claims["x-ms-azurevm-vmid"] == "6332533D-5649-4D02-8AA7-8F64B7C3EE21"
    tee = claims["x-ms-isolation-tee"]
    assert tee["x-ms-attestation-type"] == "tdxvm"
    assert tee["x-ms-compliance-status"] == "azure-compliant-cvm"
    assert tee["tdx_mrtd"] == MRTD.hex()
    assert tee["x-ms-runtime"]["keys"][0]["kid"] == "HCLAkPub"
    runtime = claims["x-ms-runtime"]
    assert runtime["client-payload"] == {"nonce": "MTIzNA==", "empty": ""}
    maa = json.loads((VECTORS / "azure-cvm/maa-tokens-azurevm/expected.json").read_text())["tokens"][0]
    assert set(maa["top_level_claims"]) <= set(claims)  # every claim a real MAA azurevm token carries
    assert set(maa["x_ms_runtime"]) == set(runtime)
    assert set(maa["runtime_claims"]) <= set(tee["x-ms-runtime"])
    (key,) = runtime["keys"]
    assert key["kid"] == "TpmEphemeralEncryptionKey" and key["key_ops"] == ["encrypt"]
    n = enc.public_key().public_numbers().n
    assert base64.urlsafe_b64decode(key["n"] + "==") == n.to_bytes(256, "big")


def test_measurement_outside_the_baselines_is_not_compliant(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    info, enc = _tdx_info(vtpm, sim_td, mrtd=b"\x43" * 48)
    r = client.post(URL, json=request_body(info))
    assert r.status_code == 200, r.text
    assert _unseal(r.json(), enc)["x-ms-isolation-tee"]["x-ms-compliance-status"] == "azure-noncompliant-cvm"


def _tamper(info: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(info)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def _flip_b64(text: str, pos: int = 40) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[pos % len(raw)] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _at(info: dict[str, Any], field: str) -> Any:
    """The value at a dotted path of the evidence (``TpmInfo.AikPub``)."""
    node: Any = info
    for part in field.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(
    "field",
    [
        "TpmInfo.PcrQuote",
        "TpmInfo.PcrSignature",
        "TpmInfo.EncKeyPub",
        "TpmInfo.EncKeyCertifyInfo",
        "TpmInfo.EncKeyCertifyInfoSignature",
        "TpmInfo.AikPub",
        "IsolationInfo.Evidence.RunTimeData",
        "IsolationInfo.Evidence.Proof",
    ],
)
def test_a_flipped_byte_in_signed_evidence_is_rejected(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform, field: str
) -> None:
    info, _ = _tdx_info(vtpm, sim_td)
    r = client.post(URL, json=request_body(_tamper(info, field, _flip_b64(_at(info, field), 300))))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidParameter"


def test_another_tpms_key_certified_is_rejected(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    info, _ = _tdx_info(vtpm, sim_td)
    other = SoftVtpm()
    _, other_pub, other_info, other_sig = other.certified_key()
    bad = _tamper(info, "TpmInfo.EncKeyPub", base64.b64encode(other_pub).decode())
    r = client.post(URL, json=request_body(bad))
    assert r.status_code == 400 and "certified" in r.json()["error"]["message"]


@pytest.mark.parametrize("field", ["TpmInfo.EncKeyPub", "TpmInfo.AikPub"])
def test_a_zero_rsa_modulus_is_a_400(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform, field: str
) -> None:
    info, _ = _tdx_info(vtpm, sim_td)
    raw = base64.b64decode(_at(info, field))
    zero = base64.b64encode(raw[:-256] + bytes(256)).decode()
    r = client.post(URL, json=request_body(_tamper(info, field, zero)))
    assert r.status_code == 400, r.text


def test_the_os_type_the_request_names_does_not_make_elam_enabled(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    """``OSType`` is the client's word (echoed as ``x-ms-azurevm-ostype`` / ``-is-windows``, as MAA does);
    it must not become ``x-ms-azurevm-elam-enabled``, a boot measurement nothing here verified."""
    info, enc = _tdx_info(vtpm, sim_td)
    info["OSType"] = base64.b64encode(b"Windows").decode()
    r = client.post(URL, json=request_body(info))
    assert r.status_code == 200, r.text
    claims = _unseal(r.json(), enc)
    assert claims["x-ms-azurevm-ostype"] == "Windows" and claims["x-ms-azurevm-is-windows"] is True
    assert claims["x-ms-azurevm-elam-enabled"] is False


def test_two_spellings_of_attestation_info_are_refused(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    """The member is matched case-insensitively: with two spellings, which one is verified would depend
    on their order, and a proxy may read the other (strict_json refuses exact duplicates for that)."""
    info, _ = _tdx_info(vtpm, sim_td)
    body = request_body(info)
    (value,) = body.values()
    r = client.post(URL, json={"AttestationInfo": value, "attestationInfo": "e30"})
    assert r.status_code == 400 and "AttestationInfo" in r.json()["error"]["message"], r.text


def test_trusted_launch_is_refused(client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform) -> None:
    info, _ = _tdx_info(vtpm, sim_td)
    r = client.post(URL, json=request_body(_tamper(info, "IsolationInfo", {"Type": "TrustedLaunch"})))
    assert r.status_code == 400 and "TrustedLaunch" in r.json()["error"]["message"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_TOP = [
    "AttestationProtocolVersion",
    "OSType",
    "OSVersionMajor",
    "TcgLogs",
    "ClientPayload",
    "TpmInfo",
    "IsolationInfo",
]


@given(st.one_of(_json, st.dictionaries(st.sampled_from(_TOP), _json)), st.booleans())
def test_any_attestation_info_gets_a_200_or_a_400(client: AsgiClient, doc: Any, wrap: bool) -> None:
    body = request_body(doc) if wrap else doc
    r = client.post(URL, json=body)
    assert r.status_code in (200, 400), r.text


def test_tdx_eat_profile_claims_read_the_same_through_tdxvm_and_azureguest(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    claims_bytes = vtpm.runtime_claims()
    quote = sim_td.tdx_quote(mrtd=MRTD, report_data=report_data_for(claims_bytes))
    svn = bytes(sim_td.tcb.tdx_svns)
    from affidavit.jose import b64url

    r = client.post("/attest/TdxVm?api-version=2022-08-01", json={"quote": b64url(quote)})
    assert r.status_code == 200, r.text
    platform = jwt_body(r.json()["token"])
    info, enc = attestation_info(vtpm, claims_bytes, td_quote=quote)
    guest = _unseal(client.post(URL, json=request_body(info)).json(), enc)["x-ms-isolation-tee"]
    for claims in (platform, guest):
        assert claims["eat_profile"] == "https://aka.ms/maa-eat-profile-tdxvm"
        assert claims["dbgstat"] == "disabled-since-boot"
        assert claims["intuse"] == "generic"
        assert claims["tdx_seamsvn"] == svn[0] | svn[1] << 8
    shared = {k for k in guest if k.startswith("tdx_")}
    assert {k: platform[k] for k in shared} == {k: guest[k] for k in shared}


def test_snp_guest_token(tmp_path: Path) -> None:
    """SevSnp through the SNP package's verifier with the simulated AMD PKI (both from wip/snp)."""
    snp = pytest.importorskip(
        "affidavit.simulate.snp", reason="affidavit.simulate.snp is built on branch wip/snp"
    )
    pki = snp.SimulatedAmdPki.create(now=EVIDENCE_TIME)
    vek = pki.vcek(now=EVIDENCE_TIME)
    (tmp_path / "ark.pem").write_bytes(pki.ark_pem)
    measurement = bytes(range(48)).hex()
    baselines = [
        {
            "tee": "sevsnpvm",
            "x-ms-sevsnpvm-launchmeasurement": [measurement],
            "minimum": {"x-ms-sevsnpvm-bootloader-svn": 3},
        }
    ]
    config = ServiceConfig(
        data_dir=tmp_path / "data",
        admin_token="x",
        evidence_time=EVIDENCE_TIME,
        extra={"snp_trust_roots": [str(tmp_path / "ark.pem")], "azure_cvm_baselines": baselines,
               "snp_kds_url": "none"},  # the CRL lookup stays offline
    )
    c = AsgiClient(create_app(config))
    try:
        vtpm = SoftVtpm()
        claims_bytes = vtpm.runtime_claims()
        report = vek.report(report_data=report_data_for(claims_bytes))
        proof = {
            "SnpReport": base64.urlsafe_b64encode(report).rstrip(b"=").decode(),
            "VcekCertChain": base64.b64encode(vek.chain_pem).decode(),
        }
        info, enc = attestation_info(vtpm, claims_bytes, snp_proof=proof)
        r = c.post(URL, json=request_body(info))
        assert r.status_code == 200, r.text
        tee = _unseal(r.json(), enc)["x-ms-isolation-tee"]
        assert tee["x-ms-attestation-type"] == "sevsnpvm"
        assert tee["x-ms-sevsnpvm-launchmeasurement"] == measurement
        assert tee["x-ms-compliance-status"] == "azure-compliant-cvm"
        maa = json.loads((VECTORS / "azure-cvm/maa-tokens-azurevm/expected.json").read_text())["tokens"][0]
        assert set(maa["isolation_tee_claims"]) <= set(tee)
        bad = vek.report(report_data=report_data_for(claims_bytes), vmpl=2)
        proof["SnpReport"] = base64.urlsafe_b64encode(bad).rstrip(b"=").decode()
        info, _ = attestation_info(vtpm, claims_bytes, snp_proof=proof)
        r = c.post(URL, json=request_body(info))
        assert r.status_code == 400 and "VMPL" in r.json()["error"]["message"]
    finally:
        c.close()


SKR_POLICY = """version=1.0;
authorizationrules {
    c:[type=="x-ms-isolation-tee.x-ms-compliance-status", value=="azure-compliant-cvm"] => permit();
};
issuancerules {
    c:[type=="x-ms-azurevm-vmid"] => issue(type="vmid", value=c.value);
};"""


def test_a_stored_policy_reads_nested_claims(
    client: AsgiClient, vtpm: SoftVtpm, sim_td: SimulatedPlatform
) -> None:
    from tests.service.helpers import unsigned_policy

    headers = {"Authorization": "Bearer x", "Content-Type": "text/plain"}
    r = client.request(
        "PUT",
        "/policies/AzureGuest?api-version=2020-10-01",
        content=unsigned_policy(SKR_POLICY),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    try:
        info, enc = _tdx_info(vtpm, sim_td)
        r = client.post(URL, json=request_body(info))
        assert r.status_code == 200, r.text
        claims = _unseal(r.json(), enc)
        assert claims["x-ms-policy"] == {"vmid": claims["x-ms-azurevm-vmid"]}
        info, _ = _tdx_info(vtpm, sim_td, mrtd=b"\x43" * 48)  # outside the baselines: not compliant
        r = client.post(URL, json=request_body(info))
        assert r.status_code == 400 and r.json()["error"]["code"] == "PolicyEvaluationError"
    finally:
        client.request(
            "POST",
            "/policies/AzureGuest:reset?api-version=2020-10-01",
            content="eyJhbGciOiJub25lIn0..",
            headers=headers,
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"tee": "nope"}]', "tee"),
        ("not json", "cannot read"),
        ('[{"tee": "tdxvm", "tdx_mrtd": "ab"}]', "list"),
    ],
)
def test_a_bad_baselines_file_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    from affidavit.cli import main

    (tmp_path / "baselines.json").write_text(text)
    argv = [
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--azure-cvm-baselines",
        str(tmp_path / "baselines.json"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _snp_guest_app(tmp_path: Path, pki: Any, **extra: Any) -> AsgiClient:
    (tmp_path / "roots.pem").write_bytes(pki.ark_pem + pki.cert_chain_vcek)  # the ASK ships with the ARK
    config = ServiceConfig(
        data_dir=tmp_path / "data",
        admin_token="x",
        evidence_time=EVIDENCE_TIME,
        extra={"snp_trust_roots": [str(tmp_path / "roots.pem")], "snp_kds_url": "none", **extra},
    )
    return AsgiClient(create_app(config))


def _snp_guest_body(vek: Any, chain: bytes | None = None) -> dict[str, Any]:
    vtpm = SoftVtpm()
    claims_bytes = vtpm.runtime_claims()
    report = vek.report(report_data=report_data_for(claims_bytes))
    proof = {
        "SnpReport": base64.urlsafe_b64encode(report).rstrip(b"=").decode(),
        "VcekCertChain": base64.b64encode(chain or vek.chain_pem).decode(),
    }
    info, _ = attestation_info(vtpm, claims_bytes, snp_proof=proof)
    return request_body(info)


def test_snp_guest_with_a_revoked_vcek_is_refused(tmp_path: Path) -> None:
    """AzureGuest's SNP report is checked against AMD's CRLs as /attest/SevSnpVm's is (it was not at all:
    a revoked VCEK or ASK got a token, even with --snp-require-crl)."""
    snp = pytest.importorskip("affidavit.simulate.snp")
    pki = snp.SimulatedAmdPki.create(now=EVIDENCE_TIME)
    good, revoked = pki.vcek(now=EVIDENCE_TIME), pki.vcek(now=EVIDENCE_TIME)
    kds = tmp_path / "kds"
    kds.mkdir()
    (kds / "cert_chain").write_bytes(pki.cert_chain_vcek)
    (kds / "crl").write_bytes(pki.crl([], now=EVIDENCE_TIME))
    (kds / "ask.crl").write_bytes(
        pki.crl([revoked.certificate.serial_number], issuer="ask", now=EVIDENCE_TIME)
    )
    c = _snp_guest_app(tmp_path, pki, snp_collateral_dir=str(kds))
    try:
        r = c.post(URL, json=_snp_guest_body(good))
        assert r.status_code == 200, r.text
        for chain in (revoked.chain_pem, revoked.pem):
            r = c.post(URL, json=_snp_guest_body(revoked, chain))
            assert r.status_code == 400 and "revoked" in r.json()["error"]["message"], r.text
    finally:
        c.close()


def test_snp_guest_without_a_crl_is_refused_when_one_is_required(tmp_path: Path) -> None:
    snp = pytest.importorskip("affidavit.simulate.snp")
    pki = snp.SimulatedAmdPki.create(now=EVIDENCE_TIME)
    c = _snp_guest_app(tmp_path, pki, snp_require_crl=True)  # no KDS, an empty cache: no CRL to be had
    try:
        r = c.post(URL, json=_snp_guest_body(pki.vcek(now=EVIDENCE_TIME)))
        assert r.status_code in (400, 503) and "amd_crl" in r.json()["error"]["message"], r.text
    finally:
        c.close()
