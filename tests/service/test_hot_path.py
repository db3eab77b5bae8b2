"""The attestation hot path (issue 14 pt 1): one path for POST /attest/{type}, with the middleware's
behaviour; what runs on the event loop; policy outcome reuse; the loop-stall monitor; key-ring reloads."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.policy import DEFAULT_POLICIES, compile_policy, evaluate
from affidavit.service import ServiceConfig, create_app
from affidavit.service import pipeline as P
from affidavit.service.app import AffidavitApp
from affidavit.service.front import AttestFront, LoopTurns, attest_kind
from affidavit.service.loopwatch import LoopStallMonitor
from affidavit.simulate import SimulatedPlatform
from tests.service.conftest import EVIDENCE_TIME, Inputs
from tests.service.helpers import ADMIN_TOKEN, AsgiClient, b64url, jwt_body

URL = "/attest/SgxEnclave?api-version=2022-08-01"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> AffidavitApp:
    config = ServiceConfig(
        data_dir=tmp_path_factory.mktemp("hot"), collateral_dir=inputs.collateral_dir,
        trust_roots=(inputs.intel_root, inputs.sim_root), evidence_time=EVIDENCE_TIME,
        admin_token=ADMIN_TOKEN,
    )
    return create_app(config)


@pytest.fixture(scope="module")
def asgi(app: AffidavitApp) -> Iterator[AsgiClient]:
    client = AsgiClient(app)
    yield client
    client.close()


def _body(sim: SimulatedPlatform, runtime: bytes = b'{"k":1}') -> dict[str, Any]:
    quote = sim.sgx_quote(report_data=hashlib.sha256(runtime).digest())
    return {"quote": b64url(quote), "runtimeData": {"data": b64url(runtime), "dataType": "Binary"}}


def test_the_front_is_the_only_path_attestations_take(
    app: AffidavitApp, asgi: AsgiClient, sim: SimulatedPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every POST /attest/* goes through AttestFront, and Starlette's router never sees one: the tests
    of tests/service (trust boundary, custom claims, bindings, limits) exercise the one path there is."""
    assert isinstance(app, AffidavitApp) and isinstance(app.front, AttestFront)
    seen: list[str] = []
    front_call = AttestFront.__call__

    async def spy_front(self: AttestFront, scope: Any, receive: Any, send: Any, kind: str) -> None:
        seen.append(kind)
        await front_call(self, scope, receive, send, kind)

    async def no_router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/attest/") and scope["method"] == "POST":
            raise AssertionError("the router saw an attestation")
        await router(scope, receive, send)

    router = app.router.__call__
    monkeypatch.setattr(AttestFront, "__call__", spy_front)
    monkeypatch.setattr(app.router, "__call__", no_router)
    ok = asgi.post(URL, json=_body(sim))
    bad = asgi.post(URL, json={"quote": "!!"})
    unknown = asgi.post("/attest/NoSuchType?api-version=2022-08-01", json={})
    assert ok.status_code == 200 and bad.status_code == 400 and unknown.status_code == 400
    assert seen == ["SgxEnclave", "SgxEnclave", "NoSuchType"]
    assert asgi.get("/attest/SgxEnclave").status_code == 405  # other methods: the router's route


def test_attest_kind_matches_the_route_template() -> None:
    def kind(path: str, root: str = "") -> str | None:
        return attest_kind({"path": path, "root_path": root})

    assert kind("/attest/SgxEnclave") == "SgxEnclave"
    assert kind("/api/attest/Tpm", "/api") == "Tpm"
    assert kind("/attest/") is None and kind("/attest/a/b") is None and kind("/attest") is None
    assert kind("/attest/SgxEnclave/") is None  # Starlette's redirect_slashes answers that one


def test_front_answers_like_the_middleware_stack(asgi: AsgiClient, sim: SimulatedPlatform) -> None:
    ok = asgi.post(URL, json=_body(sim), headers={"x-request-id": "trace-42"})
    assert ok.headers["x-request-id"] == "trace-42"
    assert ok.headers["x-ms-maa-service-version"].endswith(".affidavit")
    assert ok.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(ok.content) == {"token": ok.json()["token"]}
    claims = jwt_body(ok.json()["token"])
    assert claims["x-ms-sgx-mrsigner"] and claims["jti"] and len(claims["jti"]) == 64
    bad = asgi.post(URL, content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.headers["x-ms-error-code"] == "InvalidParameter"
    assert len(bad.headers["x-request-id"]) == 32  # generated
    media = asgi.post(URL, content=b"{}", headers={"content-type": "text/plain"})
    assert media.status_code == 415
    version = asgi.post("/attest/SgxEnclave?api-version=1999-01-01", json=_body(sim))
    assert version.status_code == 400 and "api-version" in version.json()["error"]["message"]


def test_front_shares_the_concurrency_limit(
    app: AffidavitApp, asgi: AsgiClient, sim: SimulatedPlatform
) -> None:
    gate = app.front.gate
    gate.in_flight = gate.limit
    try:
        busy = asgi.post(URL, json=_body(sim))
    finally:
        gate.in_flight = 0
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "ServiceUnavailable"


def test_attestations_take_turns_one_per_loop_iteration() -> None:
    """Requests ready together start their loop work in successive iterations (the loop polls between
    them), each once, in arrival order; a cancelled waiter passes its turn on; a new loop starts afresh."""

    async def run() -> tuple[list[tuple[str, int]], int]:
        loop = asyncio.get_running_loop()
        iteration = [0]

        def tick() -> None:  # counts loop iterations: one call per iteration
            iteration[0] += 1
            loop.call_soon(tick)

        loop.call_soon(tick)
        turns = LoopTurns()
        started: list[tuple[str, int]] = []

        async def attestation(name: str) -> None:
            await turns.turn()
            started.append((name, iteration[0]))

        tasks = [asyncio.ensure_future(attestation(n)) for n in "abcd"]
        cancelled = asyncio.ensure_future(attestation("x"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.01)
        again: list[int] = []
        await turns.turn()  # nothing waiting any more: at once
        again.append(iteration[0])
        return started, len(again)

    started, later = asyncio.run(run())
    assert [name for name, _ in started] == ["a", "b", "c", "d"]
    iterations = [i for _, i in started]
    assert len(set(iterations)) == 4 and iterations == sorted(iterations)
    assert later == 1
    turns = LoopTurns()
    gone = asyncio.new_event_loop()
    turns._loop, turns._taken = gone, True  # a turn left taken by a loop that ended before its release
    gone.close()
    assert asyncio.run(asyncio.wait_for(_one_turn(turns), 1))  # a new loop does not wait for it


async def _one_turn(turns: LoopTurns) -> bool:
    await turns.turn()
    return True


def test_warm_attestations_verify_on_the_loop_and_cold_ones_in_a_thread(
    app: AffidavitApp, asgi: AsgiClient, sim: SimulatedPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placement rule: a verification runs on the loop only after one of the same type and
    collateral measured under INLINE_VERIFY_SECONDS; RSA signatures go to the signing thread."""
    import threading

    state = app.state.affidavit
    where: list[str] = []
    verify = P._verify

    def spy(*args: Any) -> Any:
        where.append(threading.current_thread().name)
        return verify(*args)

    monkeypatch.setattr(P, "_verify", spy)
    monkeypatch.setattr(state, "placement", P.Placement())
    for _ in range(3):
        assert asgi.post(URL, json=_body(sim)).status_code == 200
    assert where[0] != "MainThread"  # nothing measured yet: the worker thread
    assert where[-1] == "MainThread"  # measured warm: on the loop
    assert not state.placement.sign_inline(state.keyring().current)  # RSA-2048: the signing thread
    state.placement.verified("SgxEnclave", None, 0.0)
    assert not state.placement.verify_inline("SgxEnclave", None)  # no collateral (TPM): always a thread
    marker = object()
    state.placement.verified("SgxEnclave", marker, P.INLINE_VERIFY_SECONDS * 2)
    assert not state.placement.verify_inline("SgxEnclave", marker)  # measured slow: a thread


def test_warm_path_keeps_the_policy_while_the_store_hands_out_the_same_one(
    app: AffidavitApp, asgi: AsgiClient, sim: SimulatedPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm attestation neither hashes the policy text nor looks it up in the compiler's cache while
    the stored policy is the object last seen; a stored policy the view re-reads applies at once."""
    state = app.state.affidavit
    for _ in range(3):
        assert asgi.post(URL, json=_body(sim)).status_code == 200
    looked_up: list[str] = []
    cached = state.compiler.cached
    monkeypatch.setattr(state.compiler, "cached",
                        lambda text, **kw: looked_up.append(text) or cached(text, **kw))
    for _ in range(3):
        assert asgi.post(URL, json=_body(sim)).status_code == 200
    assert looked_up == []

    marked = ('version=1.0; authorizationrules{=> permit();}; '
              'issuancerules{=> issue(type="warm", value="1");};')
    stored = type("Stored", (), {"text": marked, "signer_cert_der": None})()
    monkeypatch.setattr(state, "stored_policy",
                        lambda att_type: stored if att_type == "SgxEnclave" else None)
    tokens = [asgi.post(URL, json=_body(sim)).json()["token"] for _ in range(3)]
    assert all(jwt_body(t)["x-ms-policy"] == {"warm": "1"} for t in tokens)
    assert looked_up[:1] == [marked]  # the new policy object: looked up once, then kept


# -- policy outcome reuse ---------------------------------------------------------------------------------

SGX_CLAIMS: dict[str, Any] = {
    "x-ms-sgx-is-debuggable": False, "x-ms-sgx-mrsigner": "aa" * 32, "x-ms-sgx-mrenclave": "bb" * 32,
    "x-ms-sgx-product-id": 1, "x-ms-sgx-svn": 2, "x-ms-attestation-type": "sgx",
    "x-ms-sgx-report-data": "00" * 64, "x-ms-sgx-collateral": {"quotehash": "cc"},
    "x-ms-sgx-advisory-ids": ["INTEL-SA-1", "INTEL-SA-2"],
}


def _outcome(cache: P.OutcomeCache, compiled: Any, incoming: dict[str, Any], custom: Any = ()) -> Any:
    key = cache.key(compiled, incoming, {}, custom)
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    outcome = evaluate(compiled, P.incoming_claim_list(incoming, {}, custom=custom))
    cache.put(key, outcome)
    return outcome, False


def test_outcomes_are_reused_only_when_every_read_claim_is_identical() -> None:
    compiled = compile_policy(DEFAULT_POLICIES["SgxEnclave"])
    cache = P.OutcomeCache()
    first, hit = _outcome(cache, compiled, SGX_CLAIMS)
    assert not hit and first.authorized
    _, hit = _outcome(cache, compiled, {**SGX_CLAIMS, "x-ms-sgx-report-data": "11" * 64})
    assert hit  # the default policy does not read the report data
    changed, hit = _outcome(cache, compiled, {**SGX_CLAIMS, "x-ms-sgx-svn": 3})
    assert not hit and changed.claims["svn"] == 3
    _, hit = _outcome(cache, compiled, {**SGX_CLAIMS, "x-ms-sgx-is-debuggable": 0})
    assert not hit  # False and 0 are different claims
    _, hit = _outcome(cache, compiled, {**SGX_CLAIMS, "extra": 1})
    assert not hit  # the claim count (max_claims) is part of the key


def test_a_policy_that_can_read_any_claim_is_never_reused() -> None:
    text = 'version=1.0; authorizationrules{ c:[value=="x"] => deny(); => permit(); };'
    compiled = compile_policy(text)
    assert P.OutcomeCache.claim_types_read(compiled) is None
    cache = P.OutcomeCache()
    _outcome(cache, compiled, SGX_CLAIMS)
    _, hit = _outcome(cache, compiled, SGX_CLAIMS)
    assert not hit
    denied, _ = _outcome(cache, compiled, {**SGX_CLAIMS, "other": "x"})
    assert not denied.authorized


scalars = st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b"])
values = scalars | st.none() | st.lists(scalars, max_size=3) | st.dictionaries(st.sampled_from("xy"), scalars)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["t1", "t2", "t3", "x-ms-sgx-svn"]), values, max_size=4),
       st.lists(st.tuples(st.sampled_from(["t1", "c"]), st.sampled_from(["v", "w"])), max_size=2))
def test_reuse_key_agrees_with_the_claim_list(incoming: dict[str, Any], custom: list[Any]) -> None:
    """The key is built without incoming_claim_list; its count and read claims must be that list's."""
    compiled = compile_policy('version=1.0; authorizationrules{ c:[type=="t1"] => permit(); };')
    custom_claims = [(n, v, "String") for n, v in custom]
    key = P.OutcomeCache().key(compiled, incoming, {}, custom_claims)
    claims = P.incoming_claim_list(incoming, {}, custom=custom_claims)
    assert key is not None and key[2] == len(claims)
    assert key[3] == tuple(P._fact(c) for c in claims if c.type == "t1")


# -- the loop-stall monitor ------------------------------------------------------------------------------


def test_loop_monitor_measures_a_blocking_callback() -> None:
    async def run() -> tuple[float, int]:
        stalls: list[float] = []
        monitor = LoopStallMonitor(interval=0.002, observe=stalls.append)
        monitor.start()
        await asyncio.sleep(0.05)
        start = time.thread_time()
        while time.thread_time() - start < 0.03:  # holds the loop for 30 ms of CPU (preemption excluded)
            pass
        await asyncio.sleep(0.02)
        monitor.stop()
        return max(stalls), len(stalls)

    longest, ticks = asyncio.run(run())
    assert ticks >= 10
    assert 0.02 <= longest <= 0.2


def test_metrics_expose_the_loop_stall(asgi: AsgiClient) -> None:
    asgi.get("/healthz")
    text = asgi.get("/metrics").text
    assert "affidavit_event_loop_stall_seconds_bucket" in text
    assert "affidavit_event_loop_stall_max_seconds" in text


def test_metrics_are_collected_while_busy_and_written_when_quiet() -> None:
    """Samples recorded while another request is in flight wait for the flush timer (or a scrape of this
    worker); a worker with nothing in flight writes them at once, so sequential requests are counted
    exactly; histograms written in one go equal histograms observed value by value."""
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram

    from affidavit.service import metrics

    labels = {"route": "/hot/{path}", "method": "GET", "status": "200"}

    def count() -> float:
        return REGISTRY.get_sample_value("affidavit_http_requests_total", labels) or 0.0

    async def run() -> tuple[float, float, float, float]:
        start = count()
        metrics.request_started()  # another request is in flight
        metrics.record_request("/hot/{path}", "GET", 200, 0.01)
        metrics.request_finished()
        collected = count() - start
        await asyncio.sleep(metrics.FLUSH_SECONDS * 3)
        timed = count() - start
        metrics.request_ended()  # quiet now
        metrics.record_request("/hot/{path}", "GET", 200, 0.01)
        metrics.request_finished()
        return start, collected, timed, count() - start

    _, collected, timed, quiet = asyncio.run(run())
    assert (collected, timed, quiet) == (0, 1, 2)

    one, batched = (Histogram(f"h{i}", "", buckets=metrics.STALL_BUCKETS, registry=CollectorRegistry())
                    for i in range(2))
    values = [0.0, 0.00025, 0.0003, 0.002, 0.0021, 0.5, 1.0, 7.0, 0.00025]
    for v in values:
        one.observe(v)
    metrics._observe_all(batched, values)

    def samples(h: Histogram) -> list[tuple[str, Any, float]]:
        found = h.collect()[0].samples
        return [(s.name[2:], s.labels, s.value) for s in found if not s.name.endswith("_created")]

    assert samples(one) == samples(batched)


# -- the key-ring reload ---------------------------------------------------------------------------------


def test_keyring_reload_reuses_parsed_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A periodic reload re-opens no key it already holds (issue 14: each reload re-parsed and
    self-tested every key, 10 ms at 16 keys)."""
    from affidavit.store import KeyMaker, create_kek_file, load_keyring, open_store, rotate_keyring
    from affidavit.tokens import SigningKey

    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    kek, _ = create_kek_file(tmp_path / "kek")
    now = datetime.now(UTC)
    maker = KeyMaker("https://issuer.example", algorithm="ES256")
    for i in range(4):
        rotate_keyring(store, "https://issuer.example", now=now + timedelta(seconds=i), kek=kek,
                       delay=timedelta(0), maker=maker)
    at = now + timedelta(seconds=10)
    ring = load_keyring(store, now=at, kek=kek)
    assert ring is not None and len(ring.published(at)) == 4
    opened: list[Any] = []
    original = SigningKey.from_certificate.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(SigningKey, "from_certificate",
                        classmethod(lambda cls, *a, **k: opened.append(a) or original(cls, *a, **k)))
    again = load_keyring(store, now=at, kek=kek, reuse=ring)
    assert again is not None and opened == []
    assert again.current is ring.current
    store.close()


def test_state_reloads_the_keyring_in_a_thread_with_reuse(
    app: AffidavitApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import affidavit.store.keyring as store_keyring

    state = app.state.affidavit
    calls: list[tuple[str, Any]] = []
    real = store_keyring.load_keyring

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((threading.current_thread().name, kwargs.get("reuse")))
        return real(*args, **kwargs)

    monkeypatch.setattr(store_keyring, "load_keyring", spy)
    ring = state.keyring()

    monkeypatch.setattr(state, "config", dataclasses.replace(state.config, key_reload_seconds=0.02))

    async def reload_once() -> None:
        task = asyncio.get_running_loop().create_task(state._refresh_keyring())
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(reload_once())
    assert calls and all(name != "MainThread" for name, _ in calls)
    assert calls[0][1] is ring  # the ring in hand is passed as reuse
