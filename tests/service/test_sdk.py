"""The real ``azure-security-attestation==1.0.0`` SDK, unmodified, against a live server over HTTPS.

Token validation stays at the SDK's defaults (signature against ``/certs``, exp, nbf); every token is also
checked with PyJWT against the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.security.attestation import (
    AttestationAdministrationClient,
    AttestationClient,
    AttestationType,
    CertificateModification,
)
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.policy import DEFAULT_POLICIES
from affidavit.simulate import SimulatedPlatform
from tests.service.conftest import OE_SET, Inputs, Signers
from tests.service.helpers import Server, StaticCredential, b64url, jwt_body, jwt_header

PERMIT_ALL = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
PERMIT_ALL_HASH = "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"  # live MAA's value (maa-api §7.4)
DENY_DEBUG = (
    "version=1.0; authorizationrules{ c:[type==\"x-ms-sgx-is-debuggable\", value==false] => permit(); };"
    " issuancerules{ c:[type==\"x-ms-sgx-mrsigner\"] => issue(type=\"signer\", value=c.value); };"
)


def attestation_client(server: Server) -> AttestationClient:
    return AttestationClient(server.url, StaticCredential(), connection_verify=server.ca_file)


def admin_client(server: Server, **kwargs: Any) -> AttestationAdministrationClient:
    return AttestationAdministrationClient(
        server.url, StaticCredential(), connection_verify=server.ca_file, **kwargs
    )


@pytest.fixture
def client(aad_server: Server) -> Iterator[AttestationClient]:
    c = attestation_client(aad_server)
    yield c
    c.close()


@pytest.fixture
def admin(aad_server: Server) -> Iterator[AttestationAdministrationClient]:
    c = admin_client(aad_server)
    yield c
    c.close()


def verify_with_pyjwt(server: Server, token: str) -> dict[str, Any]:
    """PyJWT, RS256, against the JWK named by the token's kid in /certs, issuer checked."""
    with server.client() as c:
        keys = c.get("/certs").json()["keys"]
    kid = jwt_header(token)["kid"]
    jwk = next(k for k in keys if k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key, algorithms=["RS256"], issuer=server.url, options={"verify_aud": False})


def real_token_payload(vectors: Path, name: str) -> dict[str, Any]:
    return json.loads((vectors / OE_SET / name).read_text())["payload"]


def test_open_id_metadata(client: AttestationClient, aad_server: Server) -> None:
    metadata = client.get_open_id_metadata()
    assert metadata["issuer"] == aad_server.url
    assert metadata["jwks_uri"] == aad_server.url + "/certs"
    assert metadata["response_types_supported"]


def test_signing_certificates(client: AttestationClient, aad_server: Server) -> None:
    signers = client.get_signing_certificates()
    assert signers and all(s.certificates and s.key_id for s in signers)
    with aad_server.client() as c:
        jwks = c.get("/certs").json()
    assert [s.key_id for s in signers] == [k["kid"] for k in jwks["keys"]]


def test_attest_real_open_enclave_report_binary(
    client: AttestationClient, aad_server: Server, inputs: Inputs, vectors: Path
) -> None:
    result, token = client.attest_open_enclave(inputs.oe_report, runtime_data=inputs.oe_runtime)
    assert result.enclave_held_data == inputs.oe_runtime
    assert result.mr_enclave == "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"
    assert result.mr_signer == "2c1a44952ae8207135c6c29b75b8c029372ee94b677e15c20bd42340f10d41aa"
    assert result.product_id == 1 and result.svn == 1 and result.is_debuggable is False
    claims = verify_with_pyjwt(aad_server, token.to_jwt_string())
    live = real_token_payload(vectors, "maa2022_token_runtimedata_binary.decoded.json")
    # Every claim live MAA emitted is here, and everything derived from the evidence is equal.
    assert set(live) - set(claims) == set()
    for name in ("x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-product-id", "x-ms-sgx-svn",
                 "x-ms-sgx-is-debuggable", "x-ms-sgx-ehd", "aas-ehd", "maa-ehd", "x-ms-attestation-type",
                 "x-ms-ver"):
        assert claims[name] == live[name], name
    # The transcribed live value has one stray "0" (129 hex digits); the real one is 64 bytes.
    assert claims["x-ms-sgx-report-data"] == hashlib.sha256(inputs.oe_runtime).hexdigest() + "00" * 32
    assert live["x-ms-sgx-report-data"].startswith(claims["x-ms-sgx-report-data"])
    assert claims["x-ms-sgx-collateral"]["quotehash"] == live["x-ms-sgx-collateral"]["quotehash"]
    assert claims["maa-attestationcollateral"] == claims["x-ms-sgx-collateral"]
    assert claims["x-ms-sgx-tcb-status"] == "OutOfDate"
    assert "INTEL-SA-00615" in claims["x-ms-sgx-advisory-ids"]
    assert claims["exp"] - claims["iat"] == 8 * 3600 and claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 64
    header = jwt_header(token.to_jwt_string())
    assert header["alg"] == "RS256" and header["jku"] == aad_server.url + "/certs" and header["kid"]


def test_attest_real_open_enclave_report_json(
    client: AttestationClient, aad_server: Server, inputs: Inputs, vectors: Path
) -> None:
    result, token = client.attest_open_enclave(inputs.oe_report, runtime_json=inputs.oe_runtime)
    live = real_token_payload(vectors, "maa2022_token_runtimedata_json.decoded.json")
    assert result.runtime_claims == live["x-ms-runtime"] == json.loads(inputs.oe_runtime)
    claims = verify_with_pyjwt(aad_server, token.to_jwt_string())
    assert "x-ms-sgx-ehd" not in claims and "aas-ehd" not in claims
    assert set(live) - set(claims) == set()


def test_attest_with_draft_policy_is_unsecured(client: AttestationClient, inputs: Inputs) -> None:
    result, token = client.attest_open_enclave(
        inputs.oe_report, runtime_data=inputs.oe_runtime, draft_policy=PERMIT_ALL
    )
    text = token.to_jwt_string()
    assert text.endswith(".") and jwt_header(text)["alg"] == "none"
    claims = jwt_body(text)
    assert claims["x-ms-policy-hash"] == PERMIT_ALL_HASH
    assert base64.urlsafe_b64encode(result.policy_hash).rstrip(b"=").decode() == PERMIT_ALL_HASH
    assert "is-debuggable" not in claims and "x-ms-policy" not in claims
    assert "x-ms-sgx-collateral" in claims


def test_attest_simulated_sgx_quote(
    client: AttestationClient, aad_server: Server, sim: SimulatedPlatform
) -> None:
    runtime = b"simulated enclave runtime data"
    quote = sim.sgx_quote(
        mrenclave=bytes(range(32)), mrsigner=b"\x5a" * 32, isv_prod_id=7, isv_svn=3,
        report_data=hashlib.sha256(runtime).digest(),
    )
    result, token = client.attest_sgx_enclave(quote, runtime_data=runtime, inittime_json=b'{"a":1}')
    assert result.mr_enclave == bytes(range(32)).hex() and result.product_id == 7 and result.svn == 3
    claims = verify_with_pyjwt(aad_server, token.to_jwt_string())
    assert claims["x-ms-sgx-tcb-status"] == "UpToDate" and claims["x-ms-sgx-advisory-ids"] == []
    assert claims["x-ms-sgx-collateral"]["quotehash"] == hashlib.sha256(quote).hexdigest()
    assert claims["tee"] == "sgx" and claims["x-ms-policy"]["product-id"] == 7


def test_attest_simulated_open_enclave_report(
    client: AttestationClient, aad_server: Server, sim: SimulatedPlatform
) -> None:
    runtime = b'{"jwk": "simulated"}'
    quote = sim.sgx_quote(mrsigner=b"\x33" * 32, report_data=hashlib.sha256(runtime).digest())
    report = (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + len(quote).to_bytes(8, "little") + quote
    result, token = client.attest_open_enclave(report, runtime_json=runtime)
    assert result.mr_signer == "33" * 32 and result.runtime_claims == {"jwk": "simulated"}
    claims = verify_with_pyjwt(aad_server, token.to_jwt_string())
    assert claims["x-ms-attestation-type"] == "sgx"
    assert claims["x-ms-sgx-collateral"]["quotehash"] == hashlib.sha256(report).hexdigest()


def test_attest_runtime_data_mismatch_is_invalid_parameter(
    client: AttestationClient, sim: SimulatedPlatform
) -> None:
    quote = sim.sgx_quote(report_data=hashlib.sha256(b"one").digest())
    with pytest.raises(HttpResponseError) as info:
        client.attest_sgx_enclave(quote, runtime_data=b"another")
    assert info.value.status_code == 400 and info.value.error.code == "InvalidParameter"


def test_policy_get_set_reset_unsigned(
    admin: AttestationAdministrationClient, client: AttestationClient, sim: SimulatedPlatform
) -> None:
    policy, _ = admin.get_policy(AttestationType.SGX_ENCLAVE)
    assert policy == DEFAULT_POLICIES["SgxEnclave"]
    try:
        result, _ = admin.set_policy(AttestationType.SGX_ENCLAVE, DENY_DEBUG)
        assert result.policy_resolution == "Updated"
        body = json.dumps({"AttestationPolicy": b64url(DENY_DEBUG.encode())})
        sent = "eyJhbGciOiJub25lIn0." + b64url(body.encode()) + "."
        assert result.policy_token_hash == hashlib.sha256(sent.encode()).digest()
        assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == DENY_DEBUG
        # The new policy decides: a release enclave passes, a debug enclave is refused.
        _, token = client.attest_sgx_enclave(sim.sgx_quote(mrsigner=b"\x01" * 32))
        assert jwt_body(token.to_jwt_string())["signer"] == "01" * 32
        with pytest.raises(HttpResponseError) as info:
            client.attest_sgx_enclave(sim.sgx_quote(debug=True))
        assert info.value.status_code == 400 and info.value.error.code == "PolicyEvaluationError"
    finally:
        reset, _ = admin.reset_policy(AttestationType.SGX_ENCLAVE)
    assert reset.policy_resolution == "Removed"
    assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == DEFAULT_POLICIES["SgxEnclave"]


def test_policy_set_signed_in_aad_mode(
    admin: AttestationAdministrationClient,
    client: AttestationClient,
    signers: Signers,
    sim: SimulatedPlatform,
) -> None:
    try:
        result, _ = admin.set_policy(
            AttestationType.SGX_ENCLAVE, PERMIT_ALL,
            signing_key=signers.stranger.key_pem, signing_certificate=signers.stranger.cert_pem,
        )
        assert result.policy_signer.certificates[0].strip() == signers.stranger.cert_pem.strip()
        assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == PERMIT_ALL
        _, token = client.attest_sgx_enclave(sim.sgx_quote())
        signer = jwt_body(token.to_jwt_string())["x-ms-policy-signer"]
        der = signers.stranger.cert.public_bytes(Encoding.DER)
        assert signer["x5c"] == [base64.b64encode(der).decode()] and signer["kty"] == "RSA"
    finally:
        admin.reset_policy(
            AttestationType.SGX_ENCLAVE,
            signing_key=signers.stranger.key_pem, signing_certificate=signers.stranger.cert_pem,
        )
    assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == DEFAULT_POLICIES["SgxEnclave"]


def test_management_needs_the_admin_token(aad_server: Server) -> None:
    bad = AttestationAdministrationClient(
        aad_server.url, StaticCredential("wrong"), connection_verify=aad_server.ca_file
    )
    with pytest.raises(ClientAuthenticationError) as info:
        bad.get_policy(AttestationType.SGX_ENCLAVE)
    assert info.value.status_code == 401 and info.value.error.code == "Unauthorized"
    bad.close()


def test_aad_mode_has_no_policy_management_certificates(admin: AttestationAdministrationClient) -> None:
    assert admin.get_policy_management_certificates()[0] == []


def test_isolated_mode_certificates_and_signed_policies(isolated_server: Server, signers: Signers) -> None:
    plain = admin_client(isolated_server)
    as_admin = admin_client(
        isolated_server, signing_key=signers.admin.key_pem, signing_certificate=signers.admin.cert_pem
    )
    certs, _ = plain.get_policy_management_certificates()
    initial = {signers.admin.cert_pem.strip(), signers.expired.cert_pem.strip()}
    assert {c[0].strip() for c in certs} == initial

    added, _ = as_admin.add_policy_management_certificate(signers.second.cert_pem)
    assert added.certificate_resolution == CertificateModification.IS_PRESENT
    thumb = hashlib.sha1(signers.second.cert.public_bytes(Encoding.DER)).hexdigest().upper()
    assert added.certificate_thumbprint == thumb
    assert len(plain.get_policy_management_certificates()[0]) == 3

    # The new signer can now set policies; an unsigned or unregistered one cannot.
    as_second = admin_client(
        isolated_server, signing_key=signers.second.key_pem, signing_certificate=signers.second.cert_pem
    )
    result, _ = as_second.set_policy(AttestationType.OPEN_ENCLAVE, PERMIT_ALL)
    assert result.policy_resolution == "Updated"
    assert plain.get_policy(AttestationType.OPEN_ENCLAVE)[0] == PERMIT_ALL
    with pytest.raises(HttpResponseError) as info:
        plain.set_policy(AttestationType.OPEN_ENCLAVE, DENY_DEBUG)
    assert info.value.status_code == 400 and info.value.error.code == "InvalidOperation"
    with pytest.raises(HttpResponseError) as info:
        plain.set_policy(
            AttestationType.OPEN_ENCLAVE, DENY_DEBUG,
            signing_key=signers.stranger.key_pem, signing_certificate=signers.stranger.cert_pem,
        )
    assert info.value.error.code == "InvalidOperation"
    assert plain.get_policy(AttestationType.OPEN_ENCLAVE)[0] == PERMIT_ALL

    removed, _ = as_admin.remove_policy_management_certificate(signers.second.cert_pem)
    assert removed.certificate_resolution == CertificateModification.IS_ABSENT
    assert removed.certificate_thumbprint == thumb
    with pytest.raises(HttpResponseError) as info:
        as_second.reset_policy(AttestationType.OPEN_ENCLAVE)
    assert info.value.error.code == "InvalidOperation"
    reset, _ = as_admin.reset_policy(AttestationType.OPEN_ENCLAVE)
    assert reset.policy_resolution == "Removed"
    assert {c[0].strip() for c in plain.get_policy_management_certificates()[0]} == initial
