"""``affidavit serve --workers N``: every worker serves, and the supervisor stops them all."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path

from affidavit.simulate import SimulatedPlatform
from tests.service.conftest import Inputs
from tests.service.helpers import Server, b64url


def _children(pid: int) -> list[int]:
    """Worker processes of the supervisor (multiprocessing's spawned children, not its resource tracker)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return out


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listening_sockets(port: int) -> int:
    """LISTEN entries for ``port`` in /proc/net/tcp: one per worker with SO_REUSEPORT, one in all when a
    single socket is shared (where the first worker to wake takes a burst of connections)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for r in rows if r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A")


def _started_workers(server: Server, count: int) -> list[int]:
    """The workers' pids once each listens (the server is ready as soon as one of them answers)."""
    assert server.proc is not None
    deadline = time.monotonic() + 20
    while _listening_sockets(server.port) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _listening_sockets(server.port) == count
    workers = _children(server.proc.pid)
    assert len(workers) == count
    return workers


def _wait_gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_concurrent_clients_are_spread_over_all_workers(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform
) -> None:
    server = Server(tmp_path / "srv", [*inputs.serve_args(), "--workers", "2"], tls=False).start()
    try:
        workers = _started_workers(server, 2)
        before = {w: _cpu(w) for w in workers}
        body = json.dumps({"quote": b64url(sim.sgx_quote())})
        # Open every connection in one burst, as a busy front end does: with one shared listening socket
        # the first worker to wake accepts them all and keeps them (keep-alive), the others idle.
        conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(16)]
        for conn in conns:
            conn.connect()
        failures: list[str] = []

        def client(conn: http.client.HTTPConnection) -> None:
            for _ in range(8):
                conn.request("POST", "/attest/SgxEnclave?api-version=2022-08-01", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                if r.status != 200:
                    failures.append(text.decode(errors="replace"))
            conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        used = {w: _cpu(w) - before[w] for w in workers}
        # 16 connections hashed over two sockets: each worker takes a share (all on one: p = 2/65536).
        total = sum(used.values())
        assert total > 0 and all(u >= 0.03 * total for u in used.values()), used
    finally:
        server.stop()
    assert _wait_gone(workers)


# A worker killed under load is replaced: tests/service/test_bounds.py.
