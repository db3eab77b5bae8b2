"""Issue 15, points 1-4: probes, /metrics across workers, the access and audit logs, secrets kept out of
the logs, and the loopback-issuer refusal."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from affidavit.cli import main
from affidavit.policy import DEFAULT_POLICIES, policy_hash
from affidavit.service import ServiceConfig, create_app
from affidavit.service import logs as service_logs
from affidavit.service.errors import ServiceError
from affidavit.service.issuer import check_public_issuer, is_loopback
from affidavit.simulate import SimulatedPlatform
from affidavit.store import StoreError
from tests.service.conftest import EVIDENCE_TIME, Inputs
from tests.service.helpers import ADMIN_TOKEN, AsgiClient, Server, b64url, unsigned_policy
from tests.service.test_workers import _children

METRICS_TOKEN = "metrics-bearer-3b9c1f7e"
PCS_API_KEY = "pcs-api-key-5d2e8a41c0"
WRONG_TOKEN = "wrong-bearer-token-6a1f09"
DENY = "version=1.0; authorizationrules{=> deny();}; issuancerules{};"
MARKED = (
    'version=1.0; authorizationrules{=> permit();}; issuancerules{=> issue(type="ops-test", value="1");};'
)
API = {"api-version": "2022-08-01"}
AUDIT = "affidavit.audit"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[Server]:
    """Two workers, JSON logs (the default), /metrics behind a bearer token, a PCS key never used."""
    args = [*inputs.serve_args(), "--workers", "2", "--metrics-token", METRICS_TOKEN,
            "--pcs-api-key", PCS_API_KEY]
    server = Server(tmp_path_factory.mktemp("ops"), args, tls=False).start()
    try:
        yield server
    finally:
        server.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> Samples:
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def attest(server: Server, body: dict[str, Any], **headers: str) -> httpx.Response:
    # A new connection each time: SO_REUSEPORT spreads them over both workers.
    return httpx.post(server.url + "/attest/SgxEnclave", params=API, json=body, headers=headers, timeout=30)


def log_lines(server: Server) -> list[dict[str, Any]]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_for_line(server: Server, match: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_lines(server):
            if match(line):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no matching log line in:\n{server.log()[-3000:]}")


# -- 1: probes ------------------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_unauthenticated(fleet: Server) -> None:
    h = httpx.get(fleet.url + "/healthz")
    assert h.status_code == 200 and h.json() == {"status": "ok"}
    r = httpx.get(fleet.url + "/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["database"] == {"status": "ok"}
    assert body["collateral"] == {"source": "directory", "files": 3}


@pytest.fixture(scope="module")
def app_state(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[tuple[AsgiClient, Any]]:
    config = ServiceConfig(
        data_dir=tmp_path_factory.mktemp("ops-asgi"), collateral_dir=inputs.collateral_dir,
        trust_roots=(inputs.intel_root, inputs.sim_root), evidence_time=EVIDENCE_TIME,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(config)
    client = AsgiClient(app)
    yield client, app.state.affidavit
    client.close()


def test_readyz_follows_the_database_and_the_staleness_hook(
    app_state: tuple[AsgiClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, state = app_state
    assert client.get("/readyz").status_code == 200

    def down() -> None:
        raise StoreError("database error: connection refused", code="database_error")

    monkeypatch.setattr(state.store, "ping", down)
    before = _process_samples(client)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"] == {"status": "unavailable", "error": "the database does not answer"}
    assert delta(_process_samples(client), before, "affidavit_database_errors_total", source="readiness") == 1
    # The store's outage behaviour reports how stale its caches are; within the allowance: still ready.
    monkeypatch.setattr(state, "database_staleness", lambda: (12.5, 60.0), raising=False)
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"]["status"] == "stale"
    monkeypatch.setattr(state, "database_staleness", lambda: (90.0, 60.0), raising=False)
    assert client.get("/readyz").status_code == 503


@pytest.mark.slow
def test_readyz_on_a_real_postgresql_outage(tmp_path: Path, inputs: Inputs) -> None:
    """A PostgreSQL of its own, stopped under the app: /readyz turns 503 at once, /healthz stays 200."""
    from tests.pg import postgres_server

    with postgres_server() as url:
        config = ServiceConfig(
            data_dir=tmp_path, database_url=url, collateral_dir=inputs.collateral_dir,
            trust_roots=(inputs.intel_root, inputs.sim_root), evidence_time=EVIDENCE_TIME,
            admin_token=ADMIN_TOKEN,
        )
        client = AsgiClient(create_app(config))
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["database"] == {"status": "ok"}
    before = _process_samples(client)
    started = time.monotonic()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["database"]["status"] == "unavailable"
    assert time.monotonic() - started < 2.5
    assert client.get("/healthz").status_code == 200
    assert delta(_process_samples(client), before, "affidavit_database_errors_total", source="readiness") == 1
    client.close()


def test_readyz_times_out_on_a_hung_database(
    app_state: tuple[AsgiClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, state = app_state
    monkeypatch.setattr("affidavit.service.health.READY_TIMEOUT", 0.2)
    monkeypatch.setattr(state.store, "ping", lambda: time.sleep(1.0))
    started = time.monotonic()
    r = client.get("/readyz")
    assert r.status_code == 503 and "no answer" in r.json()["database"]["error"]
    assert time.monotonic() - started < 0.9


def _process_samples(client: AsgiClient) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


# -- 2: metrics -----------------------------------------------------------------------------------------


def test_metrics_count_known_traffic_across_two_workers(fleet: Server, sim: SimulatedPlatform) -> None:
    assert httpx.get(fleet.url + "/metrics").status_code == 401
    wrong = {"Authorization": f"Bearer {WRONG_TOKEN}"}
    assert httpx.get(fleet.url + "/metrics", headers=wrong).status_code == 401
    quote = b64url(sim.sgx_quote())
    before = scrape(fleet)
    for _ in range(6):
        assert attest(fleet, {"quote": quote}).status_code == 200
    for _ in range(2):
        r = attest(fleet, {"quote": quote, "draftPolicyForAttestation": DENY})
        assert r.status_code == 400 and r.headers["x-ms-error-code"] == "PolicyEvaluationError"
    for _ in range(3):
        assert attest(fleet, {"quote": b64url(b"\x03\x00" + b"\x00" * 60)}).status_code == 400
    assert httpx.get(fleet.url + "/no/such/path").status_code == 404

    # Both workers served and wrote their samples; any scrape (either worker) sums both.
    assert fleet.proc is not None
    workers = _children(fleet.proc.pid)
    assert len(workers) == 2
    environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
    variable = next(e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    directory = Path(variable.split(b"=", 1)[1].decode())
    writers = {int(m.group(1)) for p in directory.iterdir() if (m := re.match(r"counter_(\d+)\.db", p.name))}
    assert writers == set(workers), "both workers should have counted requests"

    for _ in range(4):
        after = scrape(fleet)
        assert delta(after, before, "affidavit_attestations_total",
                     type="SgxEnclave", outcome="permitted", error_code="") == 6
        assert delta(after, before, "affidavit_attestations_total",
                     type="SgxEnclave", outcome="denied", error_code="PolicyEvaluationError") == 2
        errors = {
            dict(labels)["error_code"]: v - before.get((name, labels), 0)
            for (name, labels), v in after.items()
            if name == "affidavit_attestations_total" and dict(labels)["outcome"] == "error"
        }
        assert sum(errors.values()) == 3 and all(code and code != "500" for code in errors), errors
        assert delta(after, before, "affidavit_attestation_duration_seconds_count", type="SgxEnclave") == 11
        evaluations = "affidavit_policy_evaluations_total"
        assert delta(after, before, evaluations, type="SgxEnclave", result="permit") == 6
        assert delta(after, before, evaluations, type="SgxEnclave", result="deny") == 2
        assert delta(after, before, "affidavit_http_requests_total",
                     route="/attest/{kind}", method="POST", status="200") == 6
        assert delta(after, before, "affidavit_http_requests_total",
                     route="/attest/{kind}", method="POST", status="400") == 5
        assert delta(after, before, "affidavit_http_requests_total",
                     route="unmatched", method="GET", status="404") == 1
        assert delta(after, before, "affidavit_http_request_duration_seconds_count",
                     route="/attest/{kind}", method="POST") == 11
        age = value(after, "affidavit_signing_key_age_seconds")
        assert 0 < age < 3600
        assert value(after, "affidavit_signing_keys_published") == 1


def test_metric_names_follow_prometheus_conventions(fleet: Server) -> None:
    r = httpx.get(fleet.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    expected = {
        "affidavit_http_requests": "counter",
        "affidavit_http_request_duration_seconds": "histogram",
        "affidavit_http_requests_in_flight": "gauge",
        "affidavit_attestations": "counter",
        "affidavit_attestation_duration_seconds": "histogram",
        "affidavit_policy_evaluations": "counter",
        "affidavit_signing_key_age_seconds": "gauge",
        "affidavit_signing_keys_published": "gauge",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    for name, family in families.items():
        assert re.fullmatch(r"affidavit_[a-z0-9_]+", name), name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if "duration" in name or "age" in name:
            assert name.endswith("_seconds"), name


def test_tpm_challenge_round_is_counted_apart(app_state: tuple[AsgiClient, Any]) -> None:
    """The TPM protocol's first round is not an attestation: it counts as outcome ``challenge``."""
    client, _state = app_state
    init = {"data": b64url(b'{"payload": {"type": "aikcert"}}')}
    before = _process_samples(client)
    assert client.post("/attest/Tpm", json=init).status_code == 200
    assert client.post("/attest/tpm", json={"data": "!"}).status_code == 400
    after = _process_samples(client)
    name = "affidavit_attestations_total"
    assert delta(after, before, name, type="Tpm", outcome="challenge", error_code="") == 1
    errors = [(dict(k), v - before.get((n, k), 0)) for (n, k), v in after.items()
              if n == name and dict(k)["type"] == "Tpm" and dict(k)["outcome"] == "error"]
    assert sum(v for _, v in errors) == 1 and errors[0][0]["error_code"] not in ("", "500")
    assert delta(after, before, "affidavit_policy_evaluations_total", type="Tpm", result="permit") == 0


def test_collateral_cache_metrics(tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform) -> None:
    """Misses fetch from (a stand-in for) PCS, hits come from the cache, failures count upstream errors."""
    from tests.collateral.fake_pcs import FakePcs

    pcs = FakePcs()
    pcs.load(sim.collateral(now=EVIDENCE_TIME), "processor")
    pcs.start()
    try:
        config = ServiceConfig(
            data_dir=tmp_path, pcs_url=pcs.url, trust_roots=(inputs.sim_root,), evidence_time=EVIDENCE_TIME,
            admin_token=ADMIN_TOKEN,
        )
        client = AsgiClient(create_app(config))
        body = {"quote": b64url(sim.sgx_quote())}
        before = _process_samples(client)
        assert client.post("/attest/SgxEnclave", json=body).status_code == 200
        mid = _process_samples(client)
        assert delta(mid, before, "affidavit_collateral_cache_lookups_total", result="miss") == 4
        assert client.post("/attest/SgxEnclave", json=body).status_code == 200
        after = _process_samples(client)
        assert delta(after, mid, "affidavit_collateral_cache_lookups_total", result="hit") == 4
        assert delta(after, mid, "affidavit_collateral_cache_lookups_total", result="miss") == 0
        other = SimulatedPlatform.create(fmspc="00C0F0F00000", ca="processor", now=EVIDENCE_TIME, pki=sim.pki,
                                         name="unknown-to-pcs")
        pcs.faults["tcb"] = "down"
        r = client.post("/attest/SgxEnclave", json={"quote": b64url(other.sgx_quote())})
        assert r.status_code == 503  # collateral_unavailable: an upstream outage (issue 11), not a bad quote
        final = _process_samples(client)
        assert delta(final, after, "affidavit_collateral_upstream_errors_total") >= 1
        client.close()
    finally:
        pcs.stop()


# -- 3: logs --------------------------------------------------------------------------------------------


def test_access_log_line_per_request_with_request_id(fleet: Server, sim: SimulatedPlatform) -> None:
    r = attest(fleet, {"quote": b64url(sim.sgx_quote())}, **{"X-Request-Id": "ops-test-0001"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "ops-test-0001"
    line = wait_for_line(fleet, lambda d: d.get("request_id") == "ops-test-0001")
    assert line["logger"] == "affidavit.access" and line["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert line["route"] == "/attest/{kind}" and line["method"] == "POST" and line["status"] == 200
    assert line["attestation_type"] == "SgxEnclave" and line["outcome"] == "permitted"
    assert line["client"] == "127.0.0.1" and isinstance(line["duration_ms"], float)

    refused = attest(fleet, {"quote": "!!"}, **{"X-Request-Id": "has spaces, so replaced"})
    generated = refused.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    line = wait_for_line(fleet, lambda d: d.get("request_id") == generated)
    assert line["status"] == 400 and line["outcome"] == "error" and line["error_code"] == "InvalidParameter"


def test_audit_line_for_a_policy_change(fleet: Server) -> None:
    fleet.put_policy("SgxEnclave", MARKED)
    line = wait_for_line(fleet, lambda d: d.get("logger") == AUDIT and d["action"] == "policy.set")
    assert line["caller"] == "admin-token@127.0.0.1" and line["attestation_type"] == "SgxEnclave"
    assert line["old_policy_hash"] == policy_hash(DEFAULT_POLICIES["SgxEnclave"])
    assert line["new_policy_hash"] == policy_hash(MARKED) and line["signer"] is None
    fleet.reset_policy("SgxEnclave")
    line = wait_for_line(fleet, lambda d: d.get("logger") == AUDIT and d["action"] == "policy.reset")
    assert line["old_policy_hash"] == policy_hash(MARKED)
    assert line["new_policy_hash"] == policy_hash(DEFAULT_POLICIES["SgxEnclave"])


def test_no_secret_ever_reaches_the_log(fleet: Server, sim: SimulatedPlatform) -> None:
    """Credentials, keys and tokens go by in requests and answers; none of them may show in the log."""
    secrets = [ADMIN_TOKEN, METRICS_TOKEN, PCS_API_KEY, WRONG_TOKEN]
    token = attest(fleet, {"quote": b64url(sim.sgx_quote())}).json()["token"]
    secrets += [token, token.split(".")[2]]
    for bearer in (WRONG_TOKEN, ADMIN_TOKEN, "Bearer " + WRONG_TOKEN, token):
        headers = {"Authorization": f"Bearer {bearer}"}
        httpx.get(fleet.url + "/policies/SgxEnclave", params=API, headers=headers)
    jws = unsigned_policy(MARKED)
    secrets.append(jws)
    r = httpx.put(fleet.url + "/policies/SgxEnclave", params=API, content=jws,
                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"})
    assert r.status_code == 200
    secrets.append(r.json()["token"])
    fleet.reset_policy("SgxEnclave")
    httpx.get(fleet.url + "/metrics", headers={"Authorization": f"Bearer {WRONG_TOKEN}x"})
    # The token signing key, as the store keeps it.
    from affidavit.store import open_store

    with open_store(f"sqlite:///{fleet.data_dir / 'affidavit.db'}") as store:
        sealed = store.list_signing_keys()[0].sealed  # the key at rest is sealed under the KEK (issue 12)
    assert sealed is not None
    secrets += [sealed.hex()[i:i + 32] for i in (0, 64, 128)]
    wait_for_line(fleet, lambda d: d.get("route") == "/metrics" and d.get("status") == 401)
    text = fleet.log()
    assert "affidavit.access" in text
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}... is in the log"


def test_formatters_redact_configured_secrets_and_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    config = ServiceConfig(admin_token="admin-cred-9911", pcs_api_key="pcs-key-2288",
                           database_url="postgresql://svc:db-pass-7733@db.internal/affidavit",
                           extra={"pkcs11_pin": "pin-4455-6677", "key_encryption_key": "kek-value-1234"})
    found = service_logs.config_secrets(config)
    expected = {"admin-cred-9911", "pcs-key-2288", "db-pass-7733", "pin-4455-6677", "kek-value-1234"}
    assert expected <= set(found)
    service_logs.register_secrets(found)
    for fmt in service_logs.FORMATS:
        logging.config.dictConfig(service_logs.log_config(fmt, "info"))
        log = logging.getLogger("affidavit.test")
        fields = {"fields": {"url": config.database_url}}
        log.warning("using %s and pin-4455-6677", "admin-cred-9911", extra=fields)
        service_logs.log_access({"request_id": "r1", "route": "/certs", "status": 200})
        err = capsys.readouterr().err
        assert "admin-cred-9911" not in err and "pin-4455-6677" not in err and "db-pass-7733" not in err
        assert err.count("[redacted]") == 3
        first, second = err.strip().splitlines()
        if fmt == "json":
            assert json.loads(first)["level"] == "warning" and json.loads(second)["route"] == "/certs"
        else:
            assert re.match(r"\d{4}-\d\d-\d\dT\S+Z WARNING affidavit\.test using \[redacted\]", first)
            assert "INFO affidavit.access request request_id=r1 route=/certs status=200" in second
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_json_log_lines_hold_what_json_would_write() -> None:
    """The JSON formatter writes with orjson; the objects read back are json's, including the values
    orjson writes natively or refuses (datetimes, dataclasses and paths as str, non-str keys, integers
    beyond 64 bits, non-ASCII text)."""
    import dataclasses
    from datetime import UTC, datetime
    from pathlib import Path

    @dataclasses.dataclass
    class Point:
        x: int

    fields = {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "where": Path("/tmp/x"), "p": Point(1),
              "n": 2**70, "ratio": 0.1, "text": "naïve ☃", "nested": {1: [True, None, 1.5e-7]}}
    for value in ({"a": 1, **fields}, {"only": 2**70}, {"mixed": {1: "x", "b": 2}}):
        line = service_logs.json_line(value)
        assert "\n" not in line
        assert json.loads(line) == json.loads(json.dumps(value, default=str, ensure_ascii=False))


# -- 4: one issuer for the fleet ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.8.9.1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "attest.example.com", "localhost.example.com"])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_non_loopback_listener_refuses_a_loopback_issuer() -> None:
    check_public_issuer(ServiceConfig(host="127.0.0.1"))  # a laptop: fine
    check_public_issuer(ServiceConfig(host="0.0.0.0", issuer="https://attest.example.com"))
    for config in (ServiceConfig(host="0.0.0.0"), ServiceConfig(host="10.0.0.5", issuer="http://localhost:8080")):
        with pytest.raises(ServiceError) as err:
            check_public_issuer(config)
        assert err.value.code == "configuration" and "--issuer" in err.value.message
        check_public_issuer(config, allow_loopback=True)


def test_serve_refuses_before_binding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "1", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "loopback URL" in err and "--allow-loopback-issuer" in err and "Traceback" not in err
    assert not (tmp_path / "affidavit.db").exists()


# -- responses in one write (what lets a load balancer hide a killed replica, tests/service/test_ha.py) ---


def test_coalescing_transport_sends_a_response_in_one_write() -> None:
    import asyncio

    from affidavit.service.transport import CoalescingTransport

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_write_buffer_size(self) -> int:
            return 0

    async def go() -> Recorder:
        raw = Recorder()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert raw.writes == [] and transport.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        transport.write(b"last")
        transport.close()  # flushes before closing
        return raw

    raw = asyncio.run(go())
    assert raw.writes[-1] == b"last" and raw.closed


def test_serve_runs_uvicorn_with_the_coalescing_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from affidavit.service.config import CONFIG_ENV

    for variable in (CONFIG_ENV, "PROMETHEUS_MULTIPROC_DIR"):  # serve sets them; restored afterwards
        monkeypatch.setenv(variable, "")
    seen: dict[str, Any] = {}

    def fake_run(server: Any, sockets: Any = None) -> None:  # serve binds its socket, then runs uvicorn
        seen.update(vars(server.config))
        server.started = True
        for sock in sockets or ():
            sock.close()

    monkeypatch.setattr("uvicorn.Server.run", fake_run)
    argv = ["serve", "--data-dir", str(tmp_path), "--pcs-url", "none", "--log-format", "text", "--port", "0"]
    assert main(argv) == 0
    import functools

    from affidavit.service.transport import CoalescingHttpToolsProtocol

    http = seen["http"]  # the protocol class with its connection limits
    assert isinstance(http, functools.partial) and http.func is CoalescingHttpToolsProtocol
    assert seen["access_log"] is False and seen["log_config"]["formatters"]["affidavit"]["()"].endswith(
        "TextFormatter"
    )


def test_audit_lines_for_certificate_changes(isolated_server: Server, signers: Any) -> None:
    """Isolated mode: adding and removing a policy-management certificate, signed by a registered one."""
    from affidavit.store import thumbprint
    from tests.service.helpers import certificate_payload, make_signer, sign_jws

    newcomer = make_signer("Affidavit audit test signer")
    with isolated_server.client() as client:
        for action in ("add", "remove"):
            body = json.dumps(sign_jws(certificate_payload(newcomer), signers.admin))
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}",
                       "X-Request-Id": f"audit-cert-{action}"}
            r = client.post(f"/certificates:{action}", params=API, content=body, headers=headers)
            assert r.status_code == 200, r.text
    from cryptography.hazmat.primitives.serialization import Encoding

    expected_subject = thumbprint(newcomer.cert.public_bytes(Encoding.DER))
    admin_thumbprint = thumbprint(signers.admin.cert.public_bytes(Encoding.DER))
    for action in ("add", "remove"):
        line = wait_for_line(isolated_server, lambda d, a=action: d.get("request_id") == f"audit-cert-{a}"
                             and d.get("logger") == AUDIT)
        assert line["action"] == f"certificate.{action}" and line["subject"] == expected_subject
        assert line["signer"].startswith(admin_thumbprint)
        assert "Affidavit test policy signer" in line["signer"]
        assert line["caller"] == "admin-token@127.0.0.1"
