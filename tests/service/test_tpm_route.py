"""``POST /attest/Tpm`` against a live HTTPS server, driven by the Azure SDK's ``attest_tpm`` (unmodified).

Evidence is live: swtpm with a real Secure Boot log replayed into its PCRs, an AK certified by a test CA
the server trusts. Each test runs the protocol's two round trips; failures must come back as MAA error
bodies with status 400.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.security.attestation import AttestationClient
from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit.client.tpm import (
    AkMaterial,
    TpmEvidenceSource,
    build_request,
    rsa_jwk,
    sign_request,
)
from affidavit.client.tpm_tools import DEFAULT_AK_HANDLE, TpmTools, parse_pcr_list
from affidavit.jose import b64url
from affidavit.relying_party import keys_from_jwks, verify_token
from affidavit.simulate.swtpm import AkCertificateAuthority, Swtpm
from tests.service.helpers import Server, StaticCredential, booted_tpm, jwt_body, tpm_server

LOG = "tpm/keylime/binary_bios_measurements-secureboot"
# MAA's documented Secure Boot check (tpm.md §2.4), over the policy-1.2 `events` claim.
POLICY = """version=1.2;
authorizationrules {
    c:[type=="aikValidated", value==true] => permit();
};
issuancerules {
    c:[type=="secureBootEnabled"] => issue(type="SecureBootEnabled", value=c.value);
    c:[type=="tpmVersion"] => issue(type="TpmVersion", value=c.value);
    c:[type=="urn:affidavit:customclaim:owner", issuer=="CustomClaim"] => issue(type="owner", value=c.value);
};
"""


@dataclass(frozen=True)
class Env:
    tpm: Swtpm
    tools: TpmTools
    service: Server
    log: bytes
    ak: AkMaterial
    foreign_ak_cert: bytes

    @contextmanager
    def sdk(self) -> Iterator[AttestationClient]:
        """An SDK client, closed afterwards (an idle keep-alive connection delays the server's stop)."""
        with AttestationClient(self.service.url, StaticCredential(),
                               connection_verify=self.service.ca_file) as client:
            yield client

    def source(self, *, ak: AkMaterial | None = None, log: bytes | None = None,
               quote_with: bytes | None = None) -> TpmEvidenceSource:
        indexes = parse_pcr_list("0-23")
        return TpmEvidenceSource(
            ak=ak or self.ak,
            quoter=lambda data: self.tools.quote(DEFAULT_AK_HANDLE, indexes, quote_with or data),
            event_log=self.log if log is None else log,
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("tpm-route")
    log = (vectors / LOG).read_bytes()
    ca, stranger = AkCertificateAuthority.create(), AkCertificateAuthority.create("Not trusted")
    (work / "ak-ca.pem").write_bytes(ca.pem)
    with booted_tpm(work, log, ca) as booted:
        with tpm_server(work / "service", (work / "ak-ca.pem",)) as service:
            service.put_policy("Tpm", POLICY)
            yield Env(booted.tpm, booted.tools, service, log, booted.ak, stranger.issue(booted.ak_pem))


@pytest.fixture(scope="module")
def request_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sdk_send(client: AttestationClient, message: dict[str, Any]) -> dict[str, Any]:
    # Connection: close, so no idle keep-alive connection holds up the server's graceful stop.
    answer = json.loads(client.attest_tpm(json.dumps({"payload": message}), headers={"Connection": "close"}))
    assert set(answer) == {"payload"}
    return answer["payload"]  # type: ignore[no-any-return]


def _init(client: AttestationClient) -> tuple[str, str]:
    payload = _sdk_send(client, {"type": "aikcert"})
    return payload["challenge"], payload["service_context"]


def _error(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str, str]:
    err = exc.value
    assert err.status_code != 500 and err.error is not None
    return int(err.status_code or 0), str(err.error.code), str(err.error.message)


def test_sdk_full_exchange_yields_a_verifiable_report(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        assert len(base64.urlsafe_b64decode(challenge + "==")) == 16
        outer = json.loads(base64.urlsafe_b64decode(context + "=" * (-len(context) % 4)))
        assert set(outer) == {"ProtectionKeyName", "ProtectedContext"}

        custom = [{"name": "owner", "value": "lab-7", "value_type": "String"}]
        jws = build_request(env.source(), challenge, context, request_key, rp_data=b"rp nonce",
                            custom_claims=custom)
        report = _sdk_send(client, {"request": jws})["report"]

        with env.service.client() as http:
            jwks = http.get("/certs").json()
        claims = verify_token(report, keys_from_jwks(jwks), issuer=env.service.url, now=time.time()).claims
        assert claims["aikValidated"] is True and claims["secureBootEnabled"] is True
        assert isinstance(claims["aikPubHash"], str) and claims["tpmVersion"] == 2
        assert claims["x-ms-policy"] == {"SecureBootEnabled": True, "TpmVersion": 2, "owner": "lab-7"}
        assert claims["cnf"] == {"jwk": rsa_jwk(request_key.public_key())}
        assert claims["x-ms-tpm-request-key"]["info"] == {"tpm_quote": {"hash_alg": "sha-256"}}
        assert claims["rp_data"] == claims["nonce"] == b64url(b"rp nonce")
        assert claims["x-ms-ver"] == "1.0" and claims["x-ms-attestation-type"] == "tpm"
        # MAA's TPM default is one day; capped at the key ring's 8 h so the signing key stays published.
        assert len(claims["jti"]) == 64 and claims["exp"] - claims["iat"] == 8 * 3600
        assert "events" not in claims and "pcrs" not in claims  # JSON claims are for policies only


def test_v2_shape_rs256_without_binding(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        quote = env.tools.quote(DEFAULT_AK_HANDLE, parse_pcr_list("0-23"),
                                base64.urlsafe_b64decode(challenge + "=="))
        jwk = rsa_jwk(request_key.public_key())
        att_data = {
            "challenge": challenge, "service_context": context,
            "request_key": {"jwk": jwk},
            "tpm_att_data": {"current_attestation": {
                "logs": [{"type": "TCG", "log": b64url(env.log)}],
                "aik_cert": b64url(env.ak.certificate or b""), "aik_pub": b64url(env.ak.public),
                "quote": b64url(quote.attest), "signature": b64url(quote.signature),
                "pcrs": quote.pcrs_json(),
            }},
        }
        jws = sign_request({"att_type": "basic", "att_data": att_data}, request_key, alg="RS256",
                           typ="attReqV2")
        claims = jwt_body(_sdk_send(client, {"request": jws})["report"])
        assert claims["secureBootEnabled"] is True and claims["cnf"]["jwk"] == jwk


def test_a_challenge_answers_only_once(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        jws = build_request(env.source(), challenge, context, request_key)
        _sdk_send(client, {"request": jws})
        with pytest.raises(HttpResponseError) as info:
            _sdk_send(client, {"request": jws})
        assert _error(info)[:2] == (400, "InvalidParameter") and "already used" in _error(info)[2]


def test_forged_context_is_rejected(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        outer = json.loads(base64.urlsafe_b64decode(context + "=" * (-len(context) % 4)))
        sealed = bytearray(base64.urlsafe_b64decode(outer["ProtectedContext"] + "=="))
        sealed[-1] ^= 1
        forged = b64url(json.dumps(dict(outer, ProtectedContext=b64url(bytes(sealed)))).encode())
        with pytest.raises(HttpResponseError) as info:
            _sdk_send(client, {"request": build_request(env.source(), challenge, forged, request_key)})
        assert _error(info)[:2] == (400, "InvalidParameter") and "not authentic" in _error(info)[2]


def test_quote_over_another_nonce_is_rejected(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        # Quoting the bare challenge while claiming the tpm_quote binding: the key is not bound, refuse.
        source = env.source(quote_with=base64.urlsafe_b64decode(challenge + "=="))
        with pytest.raises(HttpResponseError) as info:
            _sdk_send(client, {"request": build_request(source, challenge, context, request_key)})
        status, code, message = _error(info)
        assert (status, code) == (400, "InvalidParameter") and "nonce" in message.lower()


def test_ak_certificate_from_an_untrusted_ca_is_rejected(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    with env.sdk() as client:
        challenge, context = _init(client)
        source = env.source(ak=AkMaterial(env.ak.public, env.foreign_ak_cert))
        with pytest.raises(HttpResponseError) as info:
            _sdk_send(client, {"request": build_request(source, challenge, context, request_key)})
        assert _error(info)[:2] == (400, "InvalidParameter")


def test_default_empty_policy_denies_with_a_clear_message(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    env.service.reset_policy("Tpm")
    try:
        with env.sdk() as client:
            challenge, context = _init(client)
            with pytest.raises(HttpResponseError) as info:
                _sdk_send(client, {"request": build_request(env.source(), challenge, context, request_key)})
            status, code, message = _error(info)
            assert (status, code) == (400, "PolicyEvaluationError")
            assert "no attestation policy" in message.lower()
    finally:
        env.service.put_policy("Tpm", POLICY)


def test_a_log_of_more_than_max_events_is_refused_with_a_400(
    env: Env, request_key: rsa.RSAPrivateKey
) -> None:
    """The real log plus EV_NO_ACTION records (never extended, so the quote still matches it): the
    record count alone is refused, before replay and SIPA decoding."""
    import struct

    from affidavit.evidence.tpm import constants as c
    from affidavit.evidence.tpm.eventlog import MAX_EVENTS

    note = struct.pack("<IIIH32sI", 0, c.EV_NO_ACTION, 1, 11, bytes(32), 4)  # one SHA-256 digest, 4 bytes
    padded = env.log + b"".join(note + struct.pack("<I", i) for i in range(MAX_EVENTS))
    with env.sdk() as client:
        challenge, context = _init(client)
        with pytest.raises(HttpResponseError) as info:
            request = build_request(env.source(log=padded), challenge, context, request_key)
            _sdk_send(client, {"request": request})
    status, code, message = _error(info)
    assert (status, code) == (400, "InvalidParameter") and f"more than {MAX_EVENTS} events" in message


@pytest.mark.parametrize("body", [
    b"", b"not json", b'{"data": 1}', b'{"data": "!!!"}',
    json.dumps({"data": b64url(b'{"payload": {"type": "ekcert"}}')}).encode(),
    json.dumps({"data": b64url(b'{"payload": {"request": "a.b.c"}}')}).encode(),
    json.dumps({"data": b64url(b'{"payload": {"request": 7}}')}).encode(),
])
def test_malformed_messages_get_maa_400_errors(env: Env, body: bytes) -> None:
    with env.service.client() as http:
        r = http.post("/attest/Tpm", params={"api-version": "2020-10-01"}, content=body,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidParameter"


def test_windows_platform_claim_2dap(env: Env, request_key: rsa.RSAPrivateKey) -> None:
    """current_claim as Windows' PCP_PLATFORM_ATTESTATION_BLOB ('2DAP', SHA-256 PCRs, log inside)."""
    import struct

    from affidavit.client.tpm import quote_binding
    from affidavit.service.tpm_protocol import PCP_MAGIC_V2

    with env.sdk() as client:
        challenge, context = _init(client)
        jwk = rsa_jwk(request_key.public_key())
        nonce = quote_binding(jwk, base64.urlsafe_b64decode(challenge + "=="))
        quote = env.tools.quote(DEFAULT_AK_HANDLE, parse_pcr_list("0-23"), nonce, banks=("sha256",))
        (bank, values), = quote.pcrs
        raw_sig = quote.signature[6:]  # TPMT_SIGNATURE minus sigAlg, hash, size: the bare RSA signature
        blob = (struct.pack("<8I", PCP_MAGIC_V2, 2, 32, 24 * 32, len(quote.attest), len(raw_sig),
                            len(env.log), bank)
                + b"".join(d for _, d in values) + quote.attest + raw_sig + env.log)
        att_data = {
            "service_context": context, "attest_key": jwk,
            "request_key": {"jwk": jwk, "info": {"tpm_quote": {"hash_alg": "sha-256"}}},
            "tpm_att_data": {"aik_cert": b64url(env.ak.certificate or b""), "aik_pub": b64url(env.ak.public),
                             "current_claim": b64url(blob)},
        }
        jws = sign_request({"att_type": "basic", "att_data": att_data}, request_key)
        claims = jwt_body(_sdk_send(client, {"request": jws})["report"])
    assert claims["secureBootEnabled"] is True and claims["aikValidated"] is True
