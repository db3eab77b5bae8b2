"""Issue 11 against a real server: no request pins a worker, drafts don't accumulate, stalled clients are
cut off, a killed worker is replaced."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from affidavit.simulate import SimulatedPlatform
from tests.policy.test_limits import doubling_attack
from tests.service.conftest import Inputs
from tests.service.helpers import Server, b64url
from tests.service.test_workers import _listening_sockets, _started_workers

ATTEST = "/attest/SgxEnclave?api-version=2022-08-01"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class MetadataProbe(threading.Thread):
    """GETs the metadata document in a loop and records the slowest answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.worst, self.count, self.errors = url, 0.0, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.done.is_set():
                start = time.perf_counter()
                try:
                    ok = c.get("/.well-known/openid-configuration").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst = max(self.worst, time.perf_counter() - start)
                self.count += 1
                self.errors += not ok
                time.sleep(0.02)


def test_a_policy_bomb_is_answered_quickly_and_does_not_stall_the_worker(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    # The comparison budget is lifted so that the last draft runs into the wall-time limit (1 s): the
    # metadata probe on the same (single) worker must still be answered, as evaluation is off the loop.
    args = [*inputs.serve_args(), "--policy-limit", "max_comparisons=1000000000"]
    with Server(tmp_path / "srv", args, tls=False) as server, server.client() as c:
        quote = b64url(sim.sgx_quote())
        probe = MetadataProbe(server.url)
        probe.start()
        time.sleep(0.2)
        # 1. The request: 15 doubling rules and a join, 1.5 KB.
        start = time.perf_counter()
        r = c.post(ATTEST, json={"quote": quote, "draftPolicyForAttestation": doubling_attack()})
        elapsed = time.perf_counter() - start
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "PolicyEvaluationError"
        assert "max_claims" in r.json()["error"]["message"]
        assert elapsed < 2.0
        # 2. A draft that would scan 8,192 claims 4,000 times: stopped by the wall-time limit.
        rules = ['=> add(type="A", value="a");'] + ['c:[type=="A"] => add(type="A", value=c.value);'] * 13
        rules += ['c:[type=="A", value=="x"] => permit();'] * 4000
        slow = "version=1.0; authorizationrules{" + "\n".join(rules) + "};"
        start = time.perf_counter()
        r = c.post(ATTEST, json={"quote": quote, "draftPolicyForAttestation": slow})
        elapsed = time.perf_counter() - start
        assert r.status_code == 400 and "max_seconds" in r.json()["error"]["message"], r.text
        assert elapsed < 3.0
        time.sleep(0.2)
        probe.done.set()
        probe.join()
        assert probe.count >= 10 and probe.errors == 0
        assert probe.worst < 1.0, f"a metadata GET waited {probe.worst:.2f} s behind a policy"
        # Ordinary attestations are unaffected.
        assert c.post(ATTEST, json={"quote": quote}).status_code == 200


def _draft(i: int) -> str:
    """A distinct 1 MiB draft: 9,000 one-token rules (7 to 9 MB compiled: 32 of them kept in a cache
    would grow the worker by 230 MB or more) and a comment filling it up."""
    rules = "\n".join(["=> permit();"] * 9_000)
    text = f'version=1.0; authorizationrules{{ => add(type="n", value="{i}");\n{rules}\n'
    return text + "// " + "p" * ((1 << 20) - len(text) - 8) + "\n};"


@pytest.mark.slow
def test_distinct_large_drafts_do_not_accumulate(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    args = [*inputs.serve_args(), "--max-body-bytes", str(3 << 20), "--policy-limit", "max_seconds=30"]
    with Server(tmp_path / "srv", args, tls=False) as server, server.client() as c:
        assert server.proc is not None
        quote = b64url(sim.sgx_quote())
        c.post(ATTEST, json={"quote": quote, "draftPolicyForAttestation": _draft(-1)})  # warm up
        base = _rss_mb(server.proc.pid)
        for i in range(32):
            draft = _draft(i)
            assert len(draft) == (1 << 20) - 2  # 1 MiB with the JSON quotes
            r = c.post(ATTEST, json={"quote": quote, "draftPolicyForAttestation": draft})
            assert r.status_code == 200, r.text[:300]
            grown = _rss_mb(server.proc.pid) - base
            assert grown < 200, f"worker grew {grown:.0f} MB after {i + 1} drafts"


def _stall(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    return s


def _closed_by_server(s: socket.socket, deadline: float) -> bool:
    """True once the server closed ``s`` (EOF after any answer it wrote) before ``deadline``."""
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except (TimeoutError, OSError):
        return False


def test_stalled_connections_are_closed_while_normal_requests_succeed(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    args = [*inputs.serve_args(), "--header-timeout", "3", "--body-timeout", "3"]
    with Server(tmp_path / "srv", args, tls=False) as server:
        body = json.dumps({"quote": b64url(sim.sgx_quote())}).encode()
        start = time.monotonic()
        stalled = [_stall(server.port, b"POST /attest/SgxEnclave HT") for _ in range(180)]
        head = (f"POST {ATTEST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        stalled += [_stall(server.port, head + body[:10]) for _ in range(20)]
        statuses: list[int] = []
        with server.client() as c:
            while time.monotonic() - start < 5:
                statuses.append(c.post(ATTEST, content=body, headers={"Content-Type": "application/json"})
                                .status_code)
        deadline = start + 30
        closed = sum(_closed_by_server(s, deadline) for s in stalled)
        took = time.monotonic() - start
        for s in stalled:
            s.close()
        assert closed == 200 and took < 30, (closed, took)
        assert statuses and set(statuses) == {200}


def test_requests_beyond_the_concurrency_limit_get_503_with_retry_after(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    args = [*inputs.serve_args(), "--max-concurrency", "2", "--body-timeout", "2", "--max-connections", "8"]
    with Server(tmp_path / "srv", args, tls=False) as server:
        body = json.dumps({"quote": b64url(sim.sgx_quote())}).encode()
        head = (f"POST {ATTEST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        busy = [_stall(server.port, head + body[:5]) for _ in range(2)]  # two requests in progress
        time.sleep(0.3)
        with server.client() as c:
            r = c.post(ATTEST, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "ServiceUnavailable"
            answers = [s.recv(4096) for s in busy]  # their bodies time out: 408, connection closed
            assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
            time.sleep(0.2)
            r = c.post(ATTEST, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200
        idle = [_stall(server.port, b"") for _ in range(8)]
        time.sleep(0.3)
        extra = _stall(server.port, b"")
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")  # beyond --max-connections
        for s in [*idle, extra, *busy]:
            s.close()


def test_a_killed_worker_is_replaced_and_the_service_stays_up(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    server = Server(tmp_path / "srv", [*inputs.serve_args(), "--workers", "2"], tls=False).start()
    try:
        workers = _started_workers(server, 2)
        body = json.dumps({"quote": b64url(sim.sgx_quote())})
        results: list[int] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:  # a new connection each time, so the kernel spreads them over the workers
                    with httpx.Client(base_url=server.url, timeout=10) as c:
                        results.append(c.post(ATTEST, content=body,
                                              headers={"Content-Type": "application/json"}).status_code)
                except httpx.TransportError:
                    results.append(0)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        replaced: list[int] = []
        while time.monotonic() < deadline:
            current = _started_workers_now(server)
            if len(current) == 2 and workers[0] not in current and _listening_sockets(server.port) == 2:
                replaced = current
                break
            time.sleep(0.1)
        before = len(results)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert server.alive()
        assert replaced and workers[1] in replaced
        after = results[before:]
        assert after and set(after) == {200}, after
        ok = sum(1 for r in results if r == 200)
        assert ok >= 0.95 * len(results), (ok, len(results))
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0


def _started_workers_now(server: Server) -> list[int]:
    from tests.service.test_workers import _children

    assert server.proc is not None
    return _children(server.proc.pid)
