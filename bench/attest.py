"""POST /attest/SgxEnclave throughput and latency over loopback, against the crypto floor of the same run.

Both token signing algorithms are measured (``--algorithms RS256,ES256``), one server run each. The floor is
what the cryptography alone costs per attestation: one token signature (RSA-2048, or ECDSA P-256) and two
ECDSA P-256 verifications (the quote and the QE report; collateral and the PCK chain are verified once and
cached). It is measured on one core with nothing else of the benchmark running, before and after the
server run (the mean of the two is the floor: other load on the machine varies). ``affidavit serve`` runs
with one worker per core (SQLite, simulated Intel PKI as the only trust anchor, plain HTTP on loopback) and
concurrent keep-alive clients in this process post pre-built requests for a fixed time.

    .venv/bin/python bench/attest.py [--seconds 15] [--clients 8] [--workers N] [--algorithms RS256,ES256]
                                     [--no-floor-app]

Ends with one JSON line. ``ratio`` = attestations per server CPU-second (the uvicorn workers' user+system
time, from /proc) / floor attestations per CPU-second: per-core efficiency, unaffected by the load generator
and by other processes sharing the cores. ``ratio_wall`` is the wall-clock form (per worker / floor), equal
to it on an otherwise idle machine whose cores the service saturates.

Unless ``--no-floor-app``, the same requests then drive bench/floor_app.py, a minimal ASGI app on the same
uvicorn + httptools + uvloop stack doing only the unavoidable work (its docstring): ``stack_floor_ratio`` is
its ratio to the crypto floor, ``of_stack_floor`` the service's efficiency over its own, both from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

ROOT = Path(__file__).resolve().parents[1]


def crypto_floor(seconds: float, algorithm: str = "RS256") -> float:
    """Attestation-equivalents per CPU-second: one token signature (RSA-2048 for RS256, ECDSA P-256 for
    ES256) + 2 x ECDSA P-256 verify (one thread)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    message = os.urandom(1000)
    ec_sig = ec_key.sign(message, ec.ECDSA(hashes.SHA256()))
    ec_pub = ec_key.public_key()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        if algorithm == "ES256":
            ec_key.sign(message, ec.ECDSA(hashes.SHA256()))
        else:
            rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        ec_pub.verify(ec_sig, message, ec.ECDSA(hashes.SHA256()))
        ec_pub.verify(ec_sig, message, ec.ECDSA(hashes.SHA256()))
        done += 1
    return done / (time.process_time() - cpu)


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, user+system CPU seconds) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants (uvicorn's supervisor and workers)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[p][1] for p in tree if p in stats)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def requests(count: int, tmp: Path) -> list[bytes]:
    """Pre-built HTTP/1.1 requests (distinct quotes and runtime data), and the server's collateral/root."""
    from affidavit.simulate import SimulatedPlatform

    now = datetime.now(UTC)
    platform = SimulatedPlatform.create(fmspc="00A0BE0C0000", ca="processor", now=now, seed="bench")
    (tmp / "collateral").mkdir()
    (tmp / "collateral" / "sim.json").write_text(json.dumps(platform.collateral(now=now)))
    (tmp / "root.pem").write_bytes(platform.root_pem)
    out = []
    for i in range(count):
        runtime = json.dumps({"client": i, "key": b64url(os.urandom(32))}).encode()
        quote = platform.sgx_quote(
            mrenclave=hashlib.sha256(b"enclave").digest(), mrsigner=hashlib.sha256(b"signer").digest(),
            isv_prod_id=1, isv_svn=2, report_data=hashlib.sha256(runtime).digest(),
        )
        data = {"data": b64url(runtime), "dataType": "Binary"}
        body = json.dumps({"quote": b64url(quote), "runtimeData": data})
        out.append(
            (
                "POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
    return out


async def client(port: int, reqs: list[bytes], offset: int, stop_at: float, lat: list[float],
                 errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = offset
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(reqs[n % len(reqs)])
            n += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200 or not body.startswith(b'{"token":"'):
                errors.append(status)
    finally:
        writer.close()


STALL_METRIC = "affidavit_event_loop_stall_seconds_bucket"
STALL_MAX_METRIC = "affidavit_event_loop_stall_max_seconds"


def scrape(port: int) -> tuple[dict[float, float], float]:
    """The server's loop-stall histogram (cumulative count per bucket bound, summed over the workers)
    and the longest stall since start of any live worker, from ``GET /metrics``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    buckets: dict[float, float] = {}
    longest = 0.0
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(STALL_METRIC + "{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(STALL_MAX_METRIC + " ") or line.startswith(STALL_MAX_METRIC + "{"):
            longest = max(longest, float(line.rsplit(" ", 1)[1]))
    return buckets, longest


def longest_stall_ms(before: dict[float, float], after: dict[float, float]) -> tuple[float, int]:
    """The upper bound (ms) of the highest histogram bucket that gained ticks between two scrapes (the
    longest stall in that time, at the histogram's resolution: 0.25 ms below 2 ms), and the ticks."""
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = delta.get(float("inf"), 0.0)
    if not total:
        return float("nan"), 0
    shown = [f"<={b * 1000:g}ms: {int(n)}" for b, n in sorted(delta.items()) if b != float("inf")]
    print("event-loop stalls (ticks at or under each bound):", ", ".join(shown), f", all: {int(total)}")
    bound = min(b for b, n in delta.items() if n >= total)
    return bound * 1000, int(total)


async def drive(
    port: int, reqs: list[bytes], clients: int, seconds: float, server_pid: int, *, stalls: bool = True
) -> tuple[list[float], list[int], float, float, dict[str, float]]:
    warm_lat: list[float] = []
    warm_err: list[int] = []
    await asyncio.gather(*(client(port, reqs, i, time.perf_counter() + 2.0, warm_lat, warm_err)
                           for i in range(clients)))
    lat: list[float] = []
    errors: list[int] = []
    stalls0 = (await asyncio.to_thread(scrape, port))[0] if stalls else {}
    cpu0, start, own0 = tree_cpu(server_pid), time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(port, reqs, i * 7, start + seconds, lat, errors) for i in range(clients)))
    elapsed, own = time.perf_counter() - start, time.process_time() - own0
    server_cpu = tree_cpu(server_pid) - cpu0
    stalls1, since_start = (await asyncio.to_thread(scrape, port)) if stalls else ({}, float("nan"))
    longest, ticks = longest_stall_ms(stalls0, stalls1)
    print(f"load generator CPU: {own:.1f} s ({own / elapsed:.2f} cores)")
    loop = {"max_loop_stall_ms": longest, "loop_ticks": ticks,
            "max_loop_stall_ms_since_start": since_start * 1000}
    return lat, errors, elapsed, server_cpu, loop


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /certs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--floor-seconds", type=float, default=3.0)
    parser.add_argument("--no-floor-app", dest="floor_app", action="store_false",
                        help="skip the minimal app on the same stack (bench/floor_app.py)")
    parser.add_argument("--algorithms", default="RS256,ES256",
                        help="token signing algorithms to measure, one server run each (default both)")
    args = parser.parse_args()
    algorithms = [a.strip().upper() for a in args.algorithms.split(",") if a.strip()]
    if not algorithms or set(algorithms) - {"RS256", "ES256"}:
        raise SystemExit("--algorithms takes RS256 and/or ES256")

    results = {alg: run_one(args, alg) for alg in algorithms}
    figures = dict(results[algorithms[0]])  # the first algorithm's figures at the top, as before
    figures["by_algorithm"] = results
    if len(results) == 2:
        figures["es256_over_rs256"] = round(
            results["ES256"]["per_cpu_second"] / results["RS256"]["per_cpu_second"], 3)
    print(json.dumps(figures))
    failed = any(r["errors"] or r.get("stack_floor_errors") for r in results.values())
    return 1 if failed else 0


def _p99(lat: list[float]) -> float:
    ms = sorted(x * 1000 for x in lat)
    return ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")


def serve_and_drive(
    cmd: list[str], log_path: Path, reqs: list[bytes], args: argparse.Namespace, *, stalls: bool = True
) -> tuple[list[float], list[int], float, float, dict[str, float]]:
    """Start ``cmd`` (``{port}`` replaced by a free port) in its own session, drive it, stop it."""
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
    proc = None
    try:
        with open(log_path, "wb") as log:  # the access log: a line per request
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True)
        wait_ready(port, proc)
        return asyncio.run(drive(port, reqs, args.clients, args.seconds, proc.pid, stalls=stalls))
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the supervisor and its workers, started by us
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run_one(args: argparse.Namespace, algorithm: str) -> dict[str, float | int | str]:
    """One server signing with ``algorithm``, driven for ``--seconds``; its figures."""
    floor_before = crypto_floor(args.floor_seconds, algorithm)
    sign = "RSA-2048" if algorithm == "RS256" else "ECDSA P-256"
    print(f"[{algorithm}] crypto floor: {floor_before:,.0f} attestations/s per core "
          f"({sign} sign + 2 x ECDSA P-256 verify)")

    tmp = Path(tempfile.mkdtemp(prefix="affidavit-bench-"))
    try:
        reqs = requests(64, tmp)
        cmd = [sys.executable, "-m", "affidavit", "serve", "--port", "{port}",
               "--data-dir", str(tmp / "data"), "--collateral-dir", str(tmp / "collateral"),
               "--trust-root", str(tmp / "root.pem"), "--workers", str(args.workers),
               "--signing-algorithm", algorithm, "--log-level", "warning"]
        lat, errors, elapsed, server_cpu, loop = serve_and_drive(cmd, tmp / "server.log", reqs, args)
        stack = None
        if args.floor_app:
            cmd = [sys.executable, str(ROOT / "bench" / "floor_app.py"), "--port", "{port}",
                   "--workers", str(args.workers), "--algorithm", algorithm]
            f_lat, f_err, f_elapsed, f_cpu, _ = serve_and_drive(cmd, tmp / "floor_app.log", reqs, args,
                                                               stalls=False)
            stack = {"per_cpu_second": len(f_lat) / f_cpu if f_cpu > 0 else float("nan"),
                     "errors": len(f_err), "p99_ms": _p99(f_lat)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # measured again after the run: on a machine shared with other load, the mean of the two is what the
    # server's CPU-seconds compare with (the load varies over a run)
    floor_after = crypto_floor(args.floor_seconds, algorithm)
    floor = (floor_before + floor_after) / 2
    print(f"[{algorithm}] crypto floor after the run: {floor_after:,.0f} /s per core (mean {floor:,.0f})")
    rate = len(lat) / elapsed
    lat_ms = sorted(x * 1000 for x in lat)
    p50 = statistics.median(lat_ms) if lat_ms else float("nan")
    p99 = lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))] if lat_ms else float("nan")
    per_core = rate / args.workers
    per_cpu_second = len(lat) / server_cpu if server_cpu > 0 else float("nan")
    ratio = per_cpu_second / floor
    print(f"[{algorithm}] workers: {args.workers}, clients: {args.clients}, {elapsed:.1f} s, {len(lat)} "
          f"attestations, {len(errors)} errors; server CPU {server_cpu:.1f} s "
          f"({server_cpu / elapsed:.2f} cores busy)")
    print(f"[{algorithm}] throughput: {rate:,.0f} attestations/s ({per_core:,.0f} per worker, wall clock)")
    print(f"[{algorithm}] efficiency: {per_cpu_second:,.0f} attestations per server CPU-second, "
          f"{1000 / per_cpu_second:.2f} ms CPU each")
    print(f"[{algorithm}] latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"[{algorithm}] longest event-loop stall in the run: {loop['max_loop_stall_ms']:.2f} ms "
          f"(upper bound, {loop['loop_ticks']} ticks; since the workers started: "
          f"{loop['max_loop_stall_ms_since_start']:.1f} ms)")
    print(f"[{algorithm}] ratio to the crypto floor, per CPU-second: {ratio:.2f} "
          f"(wall clock per worker: {per_core / floor:.2f})")
    figures: dict[str, float | int | str] = {
        "algorithm": algorithm,
        "attestations_per_s": round(rate, 1), "per_worker": round(per_core, 1),
        "per_cpu_second": round(per_cpu_second, 1), "floor_per_cpu_second": round(floor, 1),
        "floor_before": round(floor_before, 1), "floor_after": round(floor_after, 1),
        "ratio_wall": round(per_core / floor, 3), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
        "errors": len(errors), "workers": args.workers, "clients": args.clients, "seconds": round(elapsed, 2),
        "ratio": round(ratio, 3),
        "max_loop_stall_ms": round(loop["max_loop_stall_ms"], 2), "loop_ticks": loop["loop_ticks"],
        "max_loop_stall_ms_since_start": round(loop["max_loop_stall_ms_since_start"], 2),
    }
    if stack is not None:
        # the stack's own floor (bench/floor_app.py), measured in this run: how far the service is from it
        stack_ratio = stack["per_cpu_second"] / floor
        of_stack = per_cpu_second / stack["per_cpu_second"]
        print(f"[{algorithm}] minimal app on the same stack: {stack['per_cpu_second']:,.0f} per server "
              f"CPU-second, {stack_ratio:.2f} of the crypto floor ({stack['errors']} errors, p99 "
              f"{stack['p99_ms']:.1f} ms); the service is {of_stack:.2f} of it")
        figures.update({
            "stack_floor_per_cpu_second": round(stack["per_cpu_second"], 1),
            "stack_floor_ratio": round(stack_ratio, 3),
            "of_stack_floor": round(of_stack, 3),
            "stack_floor_errors": stack["errors"], "stack_floor_p99_ms": round(stack["p99_ms"], 2),
        })
    return figures


if __name__ == "__main__":
    sys.exit(main())
