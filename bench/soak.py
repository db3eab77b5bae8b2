"""Soak: mixed traffic against ``affidavit serve --workers 2`` for a while, watching memory and 5xx.

Traffic, all at once over loopback (plain HTTP, SQLite, the simulated Intel PKI as the only trust anchor):
valid attestations (keep-alive clients), invalid evidence (a flipped signature byte; an untrusted PKI
with a fresh FMSPC each time), draft policies (distinct ones of 1 to 256 KiB, and the issue-11 doubling
bomb), management calls (GET and PUT of a policy), and stalled connections (half a request line, held
open until the server cuts them). Every 30 s it prints the RSS of each worker and the counts so far, and
it ends with one JSON line. A healthy run has flat worker memory and no 5xx.

    .venv/bin/python bench/soak.py [--minutes 10] [--workers 2]      (or: make soak)

This is a benchmark, not a test: neither ``make test`` nor ``make bench`` runs it (it takes minutes).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "soak-admin-token"
ATTEST = "/attest/SgxEnclave?api-version=2022-08-01"
REPORT_EVERY = 30.0
BANNER_PORT = re.compile(r"Affidavit attestation service \(\w+ mode\) at https?://[^\s:/]+:(\d+)")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def workers_of(pid: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's spawned children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return sorted(out)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def doubling_bomb() -> str:
    rules = ['=> add(type="A", value="a");', '=> add(type="B", value="a");']
    for _ in range(15):
        rules += [f'c:[type=="{t}"] => add(type="{t}", value=c.value);' for t in "AB"]
    rules.append('c:[type=="A"] && d:[type=="B", value==c.value] => permit();')
    return "version=1.0; authorizationrules{" + "\n".join(rules) + "};"


def random_draft(rng: random.Random) -> str:
    """A distinct permitting draft of 1 to 256 KiB (rules plus a comment)."""
    rules = "\n".join(['c:[type=="x-ms-sgx-is-debuggable"] => permit();'] * rng.randint(1, 300))
    pad = "// " + "p" * rng.randint(1 << 10, 1 << 18)
    return f"version=1.0; authorizationrules{{\n{rules}\n{pad}\n}}; // {rng.random()}"


class Soak:
    def __init__(self, minutes: float, workers: int, tmp: Path) -> None:
        from affidavit.simulate import SimulatedPlatform

        self.minutes = minutes
        self.deadline = 0.0
        self.port = 0  # the server binds port 0 and says in its banner which port it got (start)
        self.url = ""
        now = datetime.now(UTC)
        self.sim = SimulatedPlatform.create(fmspc="00A0BE0C0000", ca="processor", now=now, seed="soak")
        self.evil = SimulatedPlatform.create(fmspc="00A0BE0C0001", ca="processor", now=now, seed="evil")
        (tmp / "collateral").mkdir()
        (tmp / "collateral" / "sim.json").write_text(json.dumps(self.sim.collateral(now=now)))
        (tmp / "root.pem").write_bytes(self.sim.root_pem)
        self.cmd = [sys.executable, "-m", "affidavit", "serve", "--host", "127.0.0.1",
                    "--port", "0", "--data-dir", str(tmp / "data"),
                    "--collateral-dir", str(tmp / "collateral"),
                    "--trust-root", str(tmp / "root.pem"), "--admin-token", ADMIN, "--workers", str(workers),
                    "--log-level", "warning", "--header-timeout", "5"]
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def count(self, kind: str, status: int | str) -> None:
        with self.lock:
            self.counts[f"{kind}:{status}"] += 1

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
        env["PYTHONPATH"] = str(ROOT / "src")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        for _ in range(600):
            if not self.port:
                found = BANNER_PORT.search(self.log.read_text(errors="replace"))
                if found is None:
                    time.sleep(0.1)
                    continue
                self.port = int(found.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
            try:
                if httpx.get(self.url + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + self.log.read_text(errors="replace"))

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    # --- traffic ------------------------------------------------------------------------------------

    def _loop(self, kind: str, make: Any, pause: float = 0.0) -> None:
        rng = random.Random(f"{kind}{threading.get_ident()}")
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                try:
                    method, path, kwargs = make(rng)
                    r = c.request(method, path, **kwargs)
                    self.count(kind, r.status_code)
                except httpx.HTTPError as exc:
                    self.count(kind, type(exc).__name__)
                if pause:
                    self.stop.wait(pause)

    def valid(self, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        return "POST", ATTEST, {"json": {"quote": self.good_quote}}

    def invalid(self, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        if rng.random() < 0.5:
            return "POST", ATTEST, {"json": {"quote": self.bad_quote}}
        from affidavit.simulate import SimulatedPlatform

        stranger = SimulatedPlatform.create(fmspc=f"{rng.getrandbits(48):012X}", ca="processor",
                                            now=self.sim.created, pki=self.evil.pki, name=f"e{rng.random()}")
        return "POST", ATTEST, {"json": {"quote": b64url(stranger.sgx_quote())}}

    def draft(self, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        text = doubling_bomb() if rng.random() < 0.2 else random_draft(rng)
        return "POST", ATTEST, {"json": {"quote": self.good_quote, "draftPolicyForAttestation": text}}

    def manage(self, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        if rng.random() < 0.5:
            return "GET", "/policies/SgxEnclave?api-version=2022-08-01", {"headers": headers}
        text = f'version=1.0; authorizationrules{{=> permit();}}; // {rng.random()}'
        body = json.dumps({"AttestationPolicy": b64url(text.encode())})
        jws = "eyJhbGciOiJub25lIn0." + b64url(body.encode()) + "."
        return "PUT", "/policies/SgxEnclave?api-version=2022-08-01", {
            "headers": {**headers, "Content-Type": "text/plain"}, "content": jws}

    def stalls(self) -> None:
        """Keeps about 50 stalled connections open; counts those the server closed."""
        held: list[tuple[socket.socket, float]] = []
        while not self.stop.is_set():
            while len(held) < 50:
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    s.sendall(b"POST /attest/SgxEnclave HT")
                    s.setblocking(False)
                    held.append((s, time.monotonic()))
                except OSError:
                    self.count("stall", "connect_failed")
                    break
            still = []
            for s, opened in held:
                try:
                    gone = s.recv(4096) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    s.close()
                    self.count("stall", "closed_by_server")
                elif time.monotonic() - opened > 60:
                    s.close()
                    self.count("stall", "still_open_after_60s")
                else:
                    still.append((s, opened))
            held = still
            self.stop.wait(0.5)
        for s, _ in held:
            s.close()

    # --- the run ------------------------------------------------------------------------------------

    def snapshot(self, elapsed: float) -> dict[str, Any]:
        assert self.proc is not None
        with self.lock:
            counts = dict(self.counts)
        fivexx = sum(n for k, n in counts.items() if k.split(":", 1)[1].startswith("5"))
        rss = {str(p): rss_mb(p) for p in workers_of(self.proc.pid)}
        requests = sum(n for k, n in counts.items() if not k.startswith("stall:"))
        return {"elapsed_s": round(elapsed), "rss_mb": rss, "requests": requests, "5xx": fivexx,
                "counts": counts}

    def run(self) -> dict[str, Any]:
        self.good_quote = b64url(self.sim.sgx_quote())
        bad = bytearray(self.sim.sgx_quote())
        bad[-100] ^= 1
        self.bad_quote = b64url(bytes(bad))
        self.start()
        assert self.proc is not None
        threads = [threading.Thread(target=self._loop, args=("valid", self.valid)) for _ in range(3)]
        threads += [threading.Thread(target=self._loop, args=("invalid", self.invalid, 0.05))]
        threads += [threading.Thread(target=self._loop, args=("draft", self.draft, 0.1))]
        threads += [threading.Thread(target=self._loop, args=("manage", self.manage, 0.2))]
        threads += [threading.Thread(target=self.stalls)]
        start = time.monotonic()
        time.sleep(2.0)
        first = self.snapshot(0)
        for t in threads:
            t.start()
        reports = []
        try:
            end = start + self.minutes * 60
            while time.monotonic() < end:
                time.sleep(min(REPORT_EVERY, max(0.0, end - time.monotonic())))
                snap = self.snapshot(time.monotonic() - start)
                reports.append(snap)
                print(f"[{snap['elapsed_s']:>4} s] rss MB per worker {snap['rss_mb']}  requests "
                      f"{snap['requests']}  5xx {snap['5xx']}  {snap['counts']}", flush=True)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        last = self.snapshot(time.monotonic() - start)
        alive = self.proc.poll() is None
        self.terminate()
        start_rss = list(first["rss_mb"].values())
        end_rss = list(last["rss_mb"].values())
        # Growth after warm-up: the first report against the last (caches fill in the first seconds).
        warm = list(reports[0]["rss_mb"].values()) if reports else start_rss
        return {
            "bench": "soak",
            "minutes": self.minutes,
            "requests": last["requests"],
            "5xx": last["5xx"],
            "transport_errors": sum(n for k, n in last["counts"].items()
                                    if not k.split(":", 1)[1][:1].isdigit() and not k.startswith("stall:")),
            "counts": last["counts"],
            "rss_mb_start": start_rss,
            "rss_mb_after_first_report": warm,
            "rss_mb_end": end_rss,
            "rss_growth_after_warmup_mb": round(max(e - w for e, w in zip(end_rss, warm, strict=False))
                                                if end_rss and warm else 0.0, 1),
            "server_alive": alive,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="affidavit-soak-"))
    soak = Soak(args.minutes, args.workers, tmp)
    try:
        summary = soak.run()
    finally:
        soak.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["5xx"] == 0 and summary["server_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
