"""Issue 11, outages and amplification against a real server: an untrusted PKI makes no upstream requests,
an unreachable PCS is 503 (not a bad quote), a database outage is ridden out on the last good state."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from affidavit.simulate import SimulatedPlatform
from tests.collateral.fake_pcs import FakePcs
from tests.conftest import refused_port
from tests.pg import RestartablePostgres
from tests.service.conftest import EVIDENCE_TIME, EVIDENCE_TIME_ARG, Inputs
from tests.service.helpers import ADMIN_TOKEN, Server, b64url

ATTEST = "/attest/SgxEnclave?api-version=2022-08-01"
INTERNALS = ("127.0.0.1", "psycopg", "postgres", "sqlite", "connection refused", "Errno")


def _pcs_server(tmp: Path, inputs: Inputs, pcs_url: str, *extra: str) -> Server:
    """Collateral from (fake) PCS only; the simulated root is the only trust anchor."""
    args = ["--pcs-url", pcs_url, "--trust-root", str(inputs.sim_root), "--evidence-time", EVIDENCE_TIME_ARG,
            "--admin-token", ADMIN_TOKEN, *extra]
    return Server(tmp, args, tls=False)


def _no_internals(text: str, *more: str) -> None:
    for word in (*INTERNALS, *more):
        assert word.lower() not in text.lower(), f"{word!r} leaked: {text}"


def test_an_untrusted_pki_makes_no_upstream_requests(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    pcs = FakePcs()
    pcs.load(sim.collateral(now=EVIDENCE_TIME), sim.ca)
    pcs.start()
    try:
        evil = SimulatedPlatform.create(fmspc="10A0F0F00000", ca="processor", now=EVIDENCE_TIME, seed="evil")
        with _pcs_server(tmp_path / "srv", inputs, pcs.url) as server, server.client() as c:
            for i in range(100):
                platform = SimulatedPlatform.create(
                    fmspc=f"{0x20000000 + i:012X}", ca="processor", now=EVIDENCE_TIME, pki=evil.pki,
                    name=f"evil-{i}",
                )
                r = c.post(ATTEST, json={"quote": b64url(platform.sgx_quote())})
                assert r.status_code == 400, r.text
                assert r.json()["error"]["code"] == "InvalidParameter" and "trusted" in r.text
            assert sum(pcs.calls.values()) < 5 and sum(pcs.calls.values()) == 0, pcs.calls
            # A platform of the trusted PKI: collateral is fetched (four items) and the quote verifies.
            assert c.post(ATTEST, json={"quote": b64url(sim.sgx_quote())}).status_code == 200
            assert sum(pcs.calls.values()) == 4, pcs.calls
    finally:
        pcs.stop()


def test_an_unreachable_pcs_is_503_with_retry_after_not_a_bad_quote(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    with refused_port() as port, \
            _pcs_server(tmp_path / "srv", inputs, f"http://127.0.0.1:{port}") as server, \
            server.client() as c:  # connections to the PCS are refused
        r = c.post(ATTEST, json={"quote": b64url(sim.sgx_quote())})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == r.headers["x-ms-error-code"] == "ServiceUnavailable"
        assert int(r.headers["retry-after"]) > 0
        _no_internals(r.text, str(port))
        # A quote that is wrong is still 400, whatever the upstream's state.
        evil = SimulatedPlatform.create(fmspc="10A0F0F00000", ca="processor", now=EVIDENCE_TIME, seed="evil")
        r = c.post(ATTEST, json={"quote": b64url(evil.sgx_quote())})
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"


@pytest.mark.slow
def test_attestations_ride_out_a_database_outage(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    with RestartablePostgres() as pg:
        args = [*inputs.serve_args(), "--database-url", pg.url]
        with Server(tmp_path / "srv", args, tls=False) as server:
            body = json.dumps({"quote": b64url(sim.sgx_quote())})
            policy = ('version=1.0; authorizationrules{=> permit();}; issuancerules{'
                      '=> issue(type="outage-test", value=true);};')
            server.put_policy("SgxEnclave", policy)
            results: list[int] = []
            stop = threading.Event()

            def load() -> None:
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    while not stop.is_set():
                        try:
                            r = c.post(ATTEST, content=body, headers={"Content-Type": "application/json"})
                            ok = r.status_code == 200 and "outage-test" in r.text  # under the stored policy
                            results.append(200 if ok else r.status_code)
                        except httpx.TransportError:
                            results.append(0)
                        time.sleep(0.01)

            threads = [threading.Thread(target=load) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            pg.stop()
            outage_start = time.monotonic()
            with server.client() as c:
                time.sleep(2.0)
                r = c.get("/policies/SgxEnclave", params={"api-version": "2022-08-01"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable", r.text
                assert "retry-after" in r.headers
                _no_internals(r.text, str(pg.tmp), "PGSQL")  # its socket
                during = len(results)
                time.sleep(max(0.0, 15.0 - (time.monotonic() - outage_start)))
                served_in_outage = len(results) - during
                pg.start()
                # Recovery without a restart: management works again within a few seconds.
                deadline = time.monotonic() + 20
                while True:
                    r = c.get("/policies/SgxEnclave", params={"api-version": "2022-08-01"},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                    if r.status_code == 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert r.status_code == 200, r.text
            time.sleep(2.0)
            stop.set()
            for t in threads:
                t.join()
            ok = sum(1 for x in results if x == 200)
            assert served_in_outage > 50
            assert ok >= 0.99 * len(results), (ok, len(results), sorted(set(results)))
            log = server.log()
        assert log.count("database unreachable") == 1, log[-3000:]
        assert log.count("database reachable again") == 1, log[-3000:]
