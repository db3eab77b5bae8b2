"""Hostile and broken requests to every endpoint of a live server: the right 4xx and MAA code each time,
the server keeps serving, no request reaches the 500 catch-all, and stored policies do not change."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx

from affidavit.simulate import SimulatedPlatform
from affidavit.tokens import MAX_X5C
from tests.policy.test_limits import grown
from tests.service.conftest import Signers
from tests.service.helpers import (
    ADMIN_TOKEN,
    Server,
    b64url,
    certificate_payload,
    sign_jws,
    unsigned_policy,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEXT = {"Content-Type": "text/plain", **AUTH}
JSON = {"Content-Type": "application/json", **AUTH}
V = "?api-version=2022-08-01"
TYPES = ("SgxEnclave", "OpenEnclave", "Tpm", "TdxVm")
PERMIT = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
HS256 = b64url(b'{"alg":"HS256"}')
RS256 = b64url(b'{"alg":"RS256"}')
NO_POLICY = b64url(b'{"x":1}')


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    status: int
    code: str


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def attest_cases(sim: SimulatedPlatform, sim_td: SimulatedPlatform) -> list[Case]:
    quote = sim.sgx_quote(report_data=hashlib.sha256(b"rt").digest())
    td_quote = sim_td.tdx_quote()
    oe_header = (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + len(quote).to_bytes(8, "little")
    cases: list[Case] = []
    for kind, field in (("SgxEnclave", "quote"), ("OpenEnclave", "report"), ("TdxVm", "quote")):
        path = f"/attest/{kind}{V}"
        good = {"SgxEnclave": quote, "OpenEnclave": oe_header + quote, "TdxVm": td_quote}[kind]
        h = {"Content-Type": "application/json"}

        def c(name: str, body: bytes | None, status: int = 400, code: str = "InvalidParameter",
              headers: dict[str, str] = h, p: str = path, k: str = kind) -> None:
            cases.append(Case(f"{k}:{name}", "POST", p, headers, body, status, code))

        c("malformed json", b'{"' + field.encode() + b'": ')
        c("not an object", b"[1, 2, 3]")
        c("invalid utf-8", b'{"' + field.encode() + b'": "\xff\xfe"}')
        c("deep nesting", b"[" * 100000 + b"]" * 100000)
        c("no evidence", _json({"runtimeData": {"data": "AA", "dataType": "Binary"}}))
        c("evidence not a string", _json({field: 12}))
        c("bad base64", _json({field: "!!!not base64!!!"}))
        c("bad base64 length", _json({field: "A"}))
        c("empty evidence", _json({field: ""}))
        c("truncated", _json({field: b64url(good[: len(good) // 2])}))
        c("truncated header", _json({field: b64url(good[:10])}))
        c("mutated signature", _json({field: b64url(_flip(good, len(good) - 700))}))
        c("mutated body", _json({field: b64url(_flip(good, 150))}))
        c("runtimeData not an object", _json({field: b64url(good), "runtimeData": "x"}))
        c("runtimeData bad type",
          _json({field: b64url(good), "runtimeData": {"data": "AA", "dataType": "Xml"}}))
        c("runtimeData JSON not JSON", _json({field: b64url(good), "runtimeData": {"data": b64url(b"{"),
                                                                                   "dataType": "JSON"}}))
        c("runtimeData mismatch", _json({field: b64url(good), "runtimeData": {"data": b64url(b"other")}}))
        c("initTimeData unbound", _json({field: b64url(good), "initTimeData": {"data": b64url(b"cfg")}}))
        c("draft policy unparsable",
          _json({field: b64url(good), "draftPolicyForAttestation": "version=1.0; x"}),
          code="PolicyParsingError")
        c("draft policy denies", _json({field: b64url(good), "draftPolicyForAttestation":
                                        "version=1.0; authorizationrules{=> deny();}; issuancerules{};"}),
          code="PolicyEvaluationError")
        c("draft policy not a string", _json({field: b64url(good), "draftPolicyForAttestation": 5}))
        long_name = grown(6, 'issue(type=AppendString(c.value, "!"), value=1)')  # 1,025 characters
        c("draft policy issues too long a name",
          _json({field: b64url(good), "draftPolicyForAttestation": long_name}), code="PolicyEvaluationError")
        # Nine distinct values of 512 KiB: 4.5 MiB of token claims (each under AppendString's 1 MiB).
        nine = '; c:[type=="s15"] => '.join(f'issue(type="v", value=AppendString("{i}", c.value))'
                                             for i in range(9))
        c("draft policy issues too much", _json({field: b64url(good), "draftPolicyForAttestation":
                                                 grown(15, nine)}),
          code="PolicyEvaluationError")
        c("nonce not a string", _json({field: b64url(good), "nonce": {"a": 1}}))
        c("wrong content type", _json({field: b64url(good)}), 415, "UnsupportedMediaType",
          {"Content-Type": "text/plain"})
        c("form content type", b"quote=AAAA", 415, "UnsupportedMediaType",
          {"Content-Type": "application/x-www-form-urlencoded"})
        c("unknown api-version", _json({field: b64url(good)}), p=f"/attest/{kind}?api-version=1999-01-01")
        c("two api-versions", _json({field: b64url(good)}),
          p=f"/attest/{kind}?api-version=2022-08-01&api-version=2020-10-01")
        c("huge body", b'{"' + field.encode() + b'": "' + b"A" * (2 * 1024 * 1024) + b'"}', 413,
          "RequestEntityTooLarge")
    # The wrong TEE at each endpoint.
    cases.append(Case("tdx quote to SgxEnclave", "POST", f"/attest/SgxEnclave{V}", {},
                      _json({"quote": b64url(td_quote)}), 400, "InvalidParameter"))
    cases.append(Case("sgx quote to TdxVm", "POST", f"/attest/TdxVm{V}", {},
                      _json({"quote": b64url(quote)}), 400, "InvalidParameter"))
    cases.append(Case("bare quote to OpenEnclave", "POST", f"/attest/OpenEnclave{V}", {},
                      _json({"report": b64url(quote)}), 400, "InvalidParameter"))
    cases.append(Case("unknown attestation type", "POST", f"/attest/SevSnpVm{V}", {},
                      _json({"report": "AAAA"}), 400, "InvalidParameter"))
    cases.append(Case("GET on attest", "GET", f"/attest/SgxEnclave{V}", {}, None, 405, "MethodNotAllowed"))
    cases.append(Case("unknown path", "GET", "/nothing/here", {}, None, 404, "NotFound"))
    cases.append(Case("certs unknown api-version", "GET", "/certs?api-version=nope", {}, None, 400,
                      "InvalidParameter"))
    return cases


def policy_cases(signers: Signers) -> list[Case]:
    cases: list[Case] = []
    good = unsigned_policy(PERMIT).encode()
    signed = sign_jws({"AttestationPolicy": b64url(PERMIT.encode())}, signers.stranger)
    head, body, sig = signed.split(".")
    bad_sig = f"{head}.{body}.{b64url(_flip(base64.urlsafe_b64decode(sig + '=='), 3))}"
    for t in TYPES:
        path = f"/policies/{t}{V}"

        def c(name: str, method: str, body: bytes | None, status: int = 400, code: str = "InvalidOperation",
              headers: dict[str, str] = TEXT, p: str = path, k: str = t) -> None:
            cases.append(Case(f"{k}:{name}", method, p, headers, body, status, code))

        c("get without token", "GET", None, 401, "Unauthorized", {})
        c("put without token", "PUT", good, 401, "Unauthorized", {"Content-Type": "text/plain"})
        c("put wrong token", "PUT", good, 401, "Unauthorized",
          {"Content-Type": "text/plain", "Authorization": "Bearer nope"})
        c("put basic auth", "PUT", good, 401, "Unauthorized",
          {"Content-Type": "text/plain", "Authorization": "Basic YTpi"})
        c("put not a JWS", "PUT", b"version=1.0; authorizationrules{=> permit();}; issuancerules{};")
        c("put two segments", "PUT", b"eyJhbGciOiJub25lIn0.e30")
        c("put bad base64 header", "PUT", b"!!!.e30.")
        c("put header not JSON", "PUT", f"{b64url(b'nope')}.e30.".encode())
        c("put binary", "PUT", b"\xff\xfe\x00\x01")
        c("put alg HS256", "PUT", f"{HS256}.{good.decode().split('.')[1]}.AAAA".encode())
        c("put alg none with signature", "PUT", good + b"AAAA")
        c("put no AttestationPolicy", "PUT", f"eyJhbGciOiJub25lIn0.{NO_POLICY}.".encode())
        c("put AttestationPolicy not base64", "PUT",
          f"eyJhbGciOiJub25lIn0.{b64url(json.dumps({'AttestationPolicy': '***'}).encode())}.".encode())
        c("put empty payload", "PUT", b"eyJhbGciOiJub25lIn0..")
        c("put unparsable policy", "PUT", unsigned_policy("version=1.0; authorizationrules{").encode(),
          code="PolicyParsingError")
        c("put issues too long a name", "PUT", unsigned_policy(
            'version=1.0; authorizationrules{=> permit();}; issuancerules{=> issue(type="' + "n" * 1025
            + '", value=1);};').encode(), code="PolicyEvaluationError")
        c("put bad signature", "PUT", bad_sig.encode())
        c("put signed without certificate", "PUT",
          f"{RS256}.{body}.{sig}".encode())
        c("put xml", "PUT", good, 415, "UnsupportedMediaType", {"Content-Type": "application/xml", **AUTH})
        c("put huge", "PUT", b"A" * (2 * 1024 * 1024), 413, "RequestEntityTooLarge")
        c("put unknown api-version", "PUT", good, code="InvalidParameter", p=f"/policies/{t}?api-version=x")
        c("reset not a JWS", "POST", b"reset please", p=f"/policies/{t}:reset{V}")
        c("reset bad signature", "POST", bad_sig.encode(), p=f"/policies/{t}:reset{V}")
        c("reset without token", "POST", b"eyJhbGciOiJub25lIn0..", 401, "Unauthorized",
          {"Content-Type": "text/plain"}, p=f"/policies/{t}:reset{V}")
    cases.append(Case("get unknown type", "GET", f"/policies/Nope{V}", AUTH, None, 400, "InvalidParameter"))
    cases.append(Case("put unknown type", "PUT", f"/policies/Nope{V}", TEXT, good, 400, "InvalidParameter"))
    cases.append(Case("reset unknown type", "POST", f"/policies/Nope:reset{V}", TEXT,
                      b"eyJhbGciOiJub25lIn0..", 400, "InvalidParameter"))
    cases.append(Case("POST on policy", "POST", f"/policies/SgxEnclave{V}", TEXT, good, 405,
                      "MethodNotAllowed"))
    cases.append(Case("aad certificates:add", "POST", f"/certificates:add{V}", JSON,
                      _json(sign_jws(certificate_payload(signers.second), signers.admin)), 400,
                      "InvalidOperation"))
    cases.append(Case("certificates without token", "GET", f"/certificates{V}", {}, None, 401,
                      "Unauthorized"))
    return cases


def isolated_cases(signers: Signers) -> list[Case]:
    add, remove = f"/certificates:add{V}", f"/certificates:remove{V}"
    policy = f"/policies/SgxEnclave{V}"
    payload = {"AttestationPolicy": b64url(PERMIT.encode())}
    cert_payload = certificate_payload(signers.second)
    second = cert_payload["policyCertificate"]["x5c"][0]
    stranger = certificate_payload(signers.stranger)["policyCertificate"]["x5c"][0]
    return [
        Case("unsigned policy", "PUT", policy, TEXT, unsigned_policy(PERMIT).encode(), 400,
             "InvalidOperation"),
        Case("unregistered signer", "PUT", policy, TEXT, sign_jws(payload, signers.stranger).encode(), 400,
             "InvalidOperation"),
        Case("expired signer", "PUT", policy, TEXT, sign_jws(payload, signers.expired).encode(), 400,
             "InvalidParameter"),
        Case("standard RS256 form, unregistered", "PUT", policy, TEXT,
             sign_jws(payload, signers.stranger, alg="RS256", sdk_form=False).encode(), 400,
             "InvalidOperation"),
        Case("unsigned reset", "POST", f"/policies/SgxEnclave:reset{V}", TEXT, b"eyJhbGciOiJub25lIn0..", 400,
             "InvalidOperation"),
        Case("add unsigned", "POST", add, JSON,
             _json("eyJhbGciOiJub25lIn0." + b64url(json.dumps(cert_payload).encode()) + "."), 400,
             "InvalidOperation"),
        Case("add by unregistered", "POST", add, JSON, _json(sign_jws(cert_payload, signers.stranger)), 400,
             "InvalidOperation"),
        Case("add by expired", "POST", add, JSON, _json(sign_jws(cert_payload, signers.expired)), 400,
             "InvalidParameter"),
        Case("add without certificate claim", "POST", add, JSON, _json(sign_jws({"x": 1}, signers.admin)),
             400, "InvalidOperation"),
        Case("add certificate not DER", "POST", add, JSON,
             _json(sign_jws({"policyCertificate": {"kty": "RSA", "x5c": ["AAAA"]}}, signers.admin)), 400,
             "InvalidParameter"),
        Case("add body not a JSON string", "POST", add, JSON, _json({"jws": "x"}), 400, "InvalidOperation"),
        Case("add body malformed JSON", "POST", add, JSON, b'"abc', 400, "InvalidParameter"),
        Case("add text/plain", "POST", add, TEXT, _json(sign_jws(cert_payload, signers.admin)), 415,
             "UnsupportedMediaType"),
        Case("remove by unregistered", "POST", remove, JSON,
             _json(sign_jws(certificate_payload(signers.admin), signers.stranger)), 400, "InvalidOperation"),
        # A registered signer, then more than MAX_X5C entries in all (refused before any is decoded).
        Case("x5c too long", "PUT", policy, TEXT,
             sign_jws(payload, signers.admin, more_x5c=[stranger] * MAX_X5C).encode(), 400,
             "InvalidParameter"),
        Case("policyCertificate x5c too long", "POST", add, JSON,
             _json(sign_jws({"policyCertificate": {"kty": "RSA", "x5c": [second] + ["AAAA"] * MAX_X5C}},
                            signers.admin)), 400, "InvalidOperation"),
    ]


def _snapshot(client: httpx.Client) -> dict[str, str]:
    out = {}
    for t in TYPES:
        r = client.get(f"/policies/{t}{V}", headers=AUTH)
        assert r.status_code == 200
        token = r.json()["token"]
        body = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        out[t] = body.get("x-ms-policy", "")
    return out


def _run(server: Server, cases: list[Case]) -> None:
    with server.client() as client:
        before = _snapshot(client)
        failures = []
        for case in cases:
            r = client.request(case.method, case.path, headers=case.headers, content=case.body)
            try:
                error = r.json()["error"]
                ok = r.status_code == case.status and error["code"] == case.code and error["message"]
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                failures.append(f"{case.name}: {r.status_code} {r.text[:200]}")
            assert r.headers.get("x-ms-maa-service-version")
        assert not failures, "\n".join(failures)
        assert server.alive()
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert _snapshot(client) == before
    assert "unhandled error" not in server.log()


def test_bad_attest_requests(aad_server: Server, sim: SimulatedPlatform, sim_td: SimulatedPlatform) -> None:
    _run(aad_server, attest_cases(sim, sim_td))


def test_bad_policy_requests(aad_server: Server, signers: Signers) -> None:
    _run(aad_server, policy_cases(signers))


def test_bad_isolated_requests(isolated_server: Server, signers: Signers) -> None:
    _run(isolated_server, isolated_cases(signers))
