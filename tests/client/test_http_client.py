"""The attestation HTTP client against a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from affidavit.client import ClientError, ServiceRejected
from affidavit.client.http import AttestationClient, RuntimeData


class _Server:
    """Answers each POST with the next scripted (status, body); records what it received."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any]] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                outer.received.append((self.path, json.loads(self.rfile.read(length))))
                status, body = outer.script.pop(0) if outer.script else (500, {})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.stop()


def _client(url: str, **kw: Any) -> AttestationClient:
    return AttestationClient(url, sleep=lambda s: None, **kw)


def test_sgx_body_is_maa_wire_format(server: _Server) -> None:
    server.script = [(200, {"token": "a.b.c"})]
    with _client(server.url) as client:
        result = client.attest_sgx(
            b"\xfb\xff quote", runtime_data=RuntimeData(b'{"k":1}', json=True), nonce="n1", draft_policy="p"
        )
    assert result.token == "a.b.c"
    path, body = server.received[0]
    assert path == "/attest/SgxEnclave?api-version=2022-08-01"
    assert body["quote"] == base64.urlsafe_b64encode(b"\xfb\xff quote").rstrip(b"=").decode()
    assert "=" not in body["quote"] and "+" not in body["quote"]
    assert body["runtimeData"]["dataType"] == "JSON"
    assert body["nonce"] == "n1" and body["draftPolicyForAttestation"] == "p"


def test_transient_failures_are_retried_then_succeed(server: _Server) -> None:
    server.script = [(503, {}), (502, {}), (200, {"token": "x.y.z"})]
    with _client(server.url, retries=3) as client:
        assert client.attest_open_enclave(b"r").token == "x.y.z"
    assert len(server.received) == 3
    assert server.received[0][0].startswith("/attest/OpenEnclave")


def test_bad_request_is_final_and_typed(server: _Server) -> None:
    server.script = [(400, {"error": {"code": "InvalidParameter", "message": "quote is truncated"}})]
    with _client(server.url) as client, pytest.raises(ServiceRejected) as info:
        client.attest_sgx(b"q")
    assert (info.value.status, info.value.code) == (400, "InvalidParameter")
    assert "truncated" in str(info.value)
    assert len(server.received) == 1


def test_retries_exhausted_and_unreachable(server: _Server) -> None:
    server.script = [(503, {"error": {"code": "Busy", "message": "later"}})] * 3
    with _client(server.url, retries=2) as client, pytest.raises(ServiceRejected) as info:
        client.attest_tdx(b"q")
    assert info.value.status == 503 and len(server.received) == 3
    with _client("http://127.0.0.1:9", retries=1, timeout=2) as client, pytest.raises(ClientError) as err:
        client.attest_sgx(b"q")
    assert err.value.code == "unreachable"


def test_malformed_answers_are_typed_errors(server: _Server) -> None:
    server.script = [(200, b"not json"), (200, {"token": 5}), (200, {"data": "!!"})]
    with _client(server.url) as client:
        for call in (
            lambda: client.attest_sgx(b"q"),
            lambda: client.attest_sgx(b"q"),
            lambda: client.tpm_exchange({"payload": {"type": "aikcert"}}),
        ):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.code == "bad_response"


def _tpm_answer(payload: dict[str, Any]) -> dict[str, str]:
    inner = json.dumps({"payload": payload}).encode()
    return {"data": base64.urlsafe_b64encode(inner).rstrip(b"=").decode()}


def _sent_payload(body: dict[str, Any]) -> Any:
    return json.loads(base64.urlsafe_b64decode(body["data"] + "=="))["payload"]


def test_tpm_envelope_round_trip(server: _Server) -> None:
    server.script = [(200, _tpm_answer({"challenge": "abc", "service_context": "ctx"}))]
    with _client(server.url) as client:
        assert client.tpm_exchange({"type": "aikcert"}) == {"challenge": "abc", "service_context": "ctx"}
    assert _sent_payload(server.received[0][1]) == {"type": "aikcert"}


def test_attest_tpm_runs_both_rounds_with_a_bound_quote(server: _Server) -> None:
    from affidavit.client.tpm import AkMaterial, Quote, TpmEvidenceSource, quote_binding

    challenge = base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=").decode()
    server.script = [
        (200, _tpm_answer({"challenge": challenge, "service_context": "ctx"})),
        (200, _tpm_answer({"report": "r.e.port"})),
    ]
    qualifying: list[bytes] = []

    def quoter(data: bytes) -> Quote:
        qualifying.append(data)
        return Quote(attest=b"attest", signature=b"sig", pcrs=())

    source = TpmEvidenceSource(ak=AkMaterial(public=b"ak"), quoter=quoter, event_log=b"log")
    with _client(server.url) as client:
        assert client.attest_tpm(source, rp_data=b"rp").token == "r.e.port"
    request = _sent_payload(server.received[1][1])["request"]
    att = json.loads(base64.urlsafe_b64decode(request.split(".")[1] + "=="))["att_data"]
    assert att["challenge"] == challenge and att["service_context"] == "ctx"
    assert qualifying == [quote_binding(att["attest_key"], bytes(range(16)))]
    assert server.received[1][0].startswith("/attest/Tpm?")
