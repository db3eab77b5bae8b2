"""Issue 15, point 7: three replicas on one PostgreSQL behind HAProxy (health checks on /readyz), under
continuous attestation load: one replica is killed with SIGKILL, the signing key is rotated, a policy is
changed. The client sees no failed request, every token verifies against /certs of every live replica (as
fetched after the token arrived, which is when a relying party would fetch it), and every replica
enforces the new policy within 2 s."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from affidavit.relying_party import RelyingPartyError, keys_from_jwks, verify_token
from affidavit.simulate import SimulatedPlatform
from tests.conftest import ROOT
from tests.pg import fresh_database, postgres_url  # noqa: F401 -- the session's PostgreSQL
from tests.service.conftest import Inputs
from tests.service.helpers import ADMIN_TOKEN, Server, b64url, jwt_body, jwt_header, unsigned_policy

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
API = {"api-version": "2022-08-01"}
POLICY = (
    'version=1.0; authorizationrules{=> permit();}; issuancerules{=> issue(type="ha-policy", value="v2");};'
)
POLICY_DEADLINE = 2.0  # seconds every replica gets to enforce a new policy
LOAD_THREADS = 3
CERTS_INTERVAL = 0.2  # how often the relying-party side fetches every replica's /certs
KEY_RELOAD = 1.0  # the replicas' --key-reload-interval
ROTATION_DELAY = 4.0  # `keys rotate --delay`: more than a reload plus the relying party's refetch interval
ROTATION_WINDOW = ROTATION_DELAY + KEY_RELOAD + 3.0  # load after a rotation: the new key signs for a while

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy not installed (scripts/system-deps.sh)"),
]


def _haproxy_config(listener: int, backends: list[int]) -> str:
    """``listener``: the file descriptor of a socket the test bound to port 0 (HAProxy's ``fd@``), so the
    port is known before the replicas start (their issuer) and nobody can take it in between."""
    servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check" for i, p in enumerate(backends))
    return f"""global
    maxconn 512
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A dead replica refuses connections or drops the one in flight: retry on another one. Attestation
    # and reads are idempotent; a management write that reached a replica is answered by it.
    # L7 retries replay only a request whose body HAProxy holds whole: buffer it before forwarding.
    retries 3
    option redispatch 1
    option http-buffer-request
    retry-on conn-failure empty-response response-timeout 503

frontend attest
    bind fd@{listener}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    # A probe on a loaded replica may take a while: only a replica that fails three in a row leaves.
    timeout check 3s
    default-server inter 300ms fall 3 rise 2
{servers}
"""


@dataclass
class Cluster:
    replicas: list[Server]
    lb_port: int
    database_url: str
    haproxy: subprocess.Popen[bytes]
    kek: Path
    killed: set[int] = field(default_factory=set)  # ports of replicas killed on purpose

    def kill(self, replica: Server) -> None:
        """SIGKILL, as the OOM killer or a dying node would: no shutdown, connections reset."""
        assert replica.proc is not None
        self.killed.add(replica.port)
        os.kill(replica.proc.pid, signal.SIGKILL)
        replica.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def live(self) -> list[Server]:
        return [r for r in self.replicas if r.port not in self.killed and r.alive()]


@pytest.fixture
def cluster(tmp_path: Path, inputs: Inputs, postgres_url: str) -> Iterator[Cluster]:  # noqa: F811
    database = fresh_database(postgres_url)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    lb_port = listener.getsockname()[1]
    kek = tmp_path / "kek"  # replicas share the database's key-encryption key (docs/operations.md)
    kek.write_text("00" * 32)
    args = [*inputs.serve_args(), "--database-url", database, "--issuer", f"http://127.0.0.1:{lb_port}",
            "--key-encryption-key-file", str(kek), "--key-reload-interval", f"{KEY_RELOAD}s"]
    replicas = [Server(tmp_path / f"replica-{i}", args, tls=False) for i in range(3)]
    started: list[Server] = []
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        for replica in replicas:  # one after the other: the first creates the schema and the first key
            started.append(replica.start())
        config = tmp_path / "haproxy.cfg"
        config.write_text(_haproxy_config(listener.fileno(), [r.port for r in replicas]))
        log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 -- handed to the process
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   pass_fds=(listener.fileno(),))
        log.close()
        listener.close()  # HAProxy holds it now: connections are its alone
        deadline = time.monotonic() + 20
        while True:
            assert haproxy.poll() is None, (tmp_path / "haproxy.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{lb_port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "haproxy.log").read_text()
            time.sleep(0.1)
        time.sleep(0.6)  # every server through its first health checks
        yield Cluster(replicas, lb_port, database, haproxy, kek)
    finally:
        listener.close()
        if haproxy is not None and haproxy.poll() is None:
            os.kill(haproxy.pid, signal.SIGTERM)
            try:
                haproxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(haproxy.pid, signal.SIGKILL)
                haproxy.wait()
        for replica in started:
            replica.stop()


@dataclass
class Outcome:
    sent: float
    received: float
    status: int | None
    token: str | None = None
    error: str | None = None


@dataclass
class Load:
    """Attestation requests through the load balancer from ``LOAD_THREADS`` keep-alive clients."""

    url: str
    body: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for _ in range(LOAD_THREADS):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever happens
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    r = client.post("/attest/SgxEnclave", params=API, json=self.body)
                    token = r.json().get("token") if r.status_code == 200 else None
                    error = None if token else r.text[:300]
                    out = Outcome(sent, time.monotonic(), r.status_code, token, error)
                except (httpx.HTTPError, ValueError) as exc:
                    out = Outcome(sent, time.monotonic(), None, None, repr(exc))
                with self._lock:
                    self.outcomes.append(out)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        return list(self.outcomes)


@dataclass
class CertsWatcher:
    """The relying parties' view: every live replica's /certs, fetched every ``CERTS_INTERVAL``."""

    cluster: Cluster
    snapshots: dict[int, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CertsWatcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for replica in self.cluster.live():
                    fetched = time.monotonic()
                    try:
                        jwks = client.get(replica.url + "/certs").json()
                    except (httpx.HTTPError, ValueError) as exc:
                        if replica.port not in self.cluster.killed:
                            self.errors.append(f"{replica.port}: {exc!r}")
                        continue
                    self.snapshots.setdefault(replica.port, []).append((fetched, keys_from_jwks(jwks)))
                time.sleep(CERTS_INTERVAL)

    def stop(self) -> None:
        time.sleep(2 * CERTS_INTERVAL + 0.5)  # a snapshot after the last token from every replica
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def keys_after(self, port: int, when: float) -> dict[str, Any] | None:
        return next((keys for fetched, keys in self.snapshots.get(port, []) if fetched >= when), None)


def _manage_policy(cluster: Cluster, text: str) -> float:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"}
    r = httpx.put(cluster.url + "/policies/SgxEnclave", params=API, content=unsigned_policy(text),
                  headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return time.monotonic()


def _policy_samples(
    replica: Server, body: dict[str, Any], since: float, out: list[tuple[float, bool]]
) -> None:
    """Attest at ``replica`` itself for ``POLICY_DEADLINE + 1`` s after ``since``: (sent, new policy?)."""
    with httpx.Client(base_url=replica.url, timeout=10) as client:
        while time.monotonic() - since < POLICY_DEADLINE + 1.0:
            sent = time.monotonic()
            r = client.post("/attest/SgxEnclave", params=API, json=body)
            assert r.status_code == 200, r.text
            out.append((sent, jwt_body(r.json()["token"]).get("ha-policy") == "v2"))


def _check_policy_everywhere(cluster: Cluster, body: dict[str, Any], changed: float) -> None:
    """Every replica enforces the new policy for every request it gets ``POLICY_DEADLINE`` after the change
    was acknowledged (a request sent later and answered under the old policy would be a violation)."""
    samples: dict[int, list[tuple[float, bool]]] = {r.port: [] for r in cluster.live()}
    threads = [threading.Thread(target=_policy_samples, args=(r, body, changed, samples[r.port]))
               for r in cluster.live()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for port, got in samples.items():
        late = [new for sent, new in got if sent >= changed + POLICY_DEADLINE]
        assert late and all(late), f"replica {port}: old policy after {POLICY_DEADLINE} s: {got}"


def _rotate(cluster: Cluster) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run(
        [sys.executable, "-m", "affidavit", "keys", "rotate", "--database-url", cluster.database_url,
         "--key-encryption-key-file", str(cluster.kek), "--issuer", cluster.url,
         "--delay", f"{ROTATION_DELAY}s", "--json"], capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    import json

    return str(json.loads(result.stdout)["new"])


class KidUnknownAtReplica(AssertionError):
    """A token signed with a key that some replica's /certs did not list when the token arrived."""


def _scenario(cluster: Cluster, sim: SimulatedPlatform) -> None:
    body = {"quote": b64url(sim.sgx_quote())}
    watcher = CertsWatcher(cluster).start()
    load = Load(cluster.url, body).start()
    changed = float("inf")
    try:
        time.sleep(2.0)
        cluster.kill(cluster.replicas[1])
        time.sleep(1.5)
        changed = _manage_policy(cluster, POLICY)
        _check_policy_everywhere(cluster, body, changed)
        new_kid = _rotate(cluster)
        time.sleep(ROTATION_WINDOW)  # published everywhere first, then signing
    finally:
        outcomes = load.stop()
        watcher.stop()

    failed = [o for o in outcomes if o.status != 200 or not o.token]
    assert outcomes and not failed, f"{len(failed)} of {len(outcomes)} failed, e.g. {failed[:3]}"
    late = [o for o in outcomes if o.sent >= changed + POLICY_DEADLINE]
    assert late and all(jwt_body(o.token or "").get("ha-policy") == "v2" for o in late)
    assert not watcher.errors, watcher.errors[:3]
    live = cluster.live()
    for replica in live:
        assert new_kid in watcher.snapshots[replica.port][-1][1], "the new key is published everywhere"
    assert any(jwt_header(o.token or "")["kid"] == new_kid for o in outcomes), "the new key signs"

    unknown: list[str] = []
    for o in outcomes:
        assert o.token is not None
        for replica in live:
            keys = watcher.keys_after(replica.port, o.received)
            assert keys is not None, "no /certs snapshot after the token"
            try:
                verify_token(o.token, keys, issuer=cluster.url, now=time.time())
            except RelyingPartyError as exc:
                if exc.code != "unknown_kid":
                    raise AssertionError(f"token rejected at replica {replica.port}: {exc.message}") from None
                unknown.append(f"kid {jwt_header(o.token)['kid']} unknown at replica {replica.port}")
    if unknown:
        raise KidUnknownAtReplica(f"{len(unknown)} verifications failed, e.g. {unknown[:3]}")


def test_replica_killed_key_rotated_and_policy_changed_under_load(
    cluster: Cluster, sim: SimulatedPlatform
) -> None:
    _scenario(cluster, sim)
