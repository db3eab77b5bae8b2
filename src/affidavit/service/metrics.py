"""Prometheus metrics: the families the service exports at ``GET /metrics`` (docs/operations.md).

Counters and histograms are recorded with ``prometheus-client``. ``affidavit serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh private directory before any worker starts
(``affidavit.service.multiproc``), so every worker writes its samples to memory-mapped files there and a
scrape of any worker returns the sum over all of them (the library's multiprocess mode); without the
variable (the app in a test process) the process's own registry is served. Live gauges of workers that
have died are dropped at the next scrape (:func:`_forget_dead_workers`); their counters stay, since a
counter that went down would read as a reset.

Label values come from bounded sets only (route templates, the four attestation types, stable error
codes), never from request text, so a client cannot blow up the series count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from affidavit.service.multiproc import MULTIPROC_ENV

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "affidavit_http_requests_total", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "affidavit_http_request_duration_seconds", "Time from request to the end of the response",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "affidavit_http_requests_in_flight", "Requests being served now", multiprocess_mode="livesum"
)
ATTESTATIONS = Counter(
    "affidavit_attestations_total",
    "Attestation requests by type and outcome (permitted, denied, error, challenge) and error code",
    ["type", "outcome", "error_code"],
)
ATTESTATION_DURATION = Histogram(
    "affidavit_attestation_duration_seconds", "Time to answer an attestation request, by type",
    ["type"], buckets=LATENCY_BUCKETS,
)
POLICY_EVALUATIONS = Counter(
    "affidavit_policy_evaluations_total", "Attestation policy evaluations by type and result "
    "(permit, deny, error)", ["type", "result"],
)
COLLATERAL_LOOKUPS = Counter(
    "affidavit_collateral_cache_lookups_total", "Collateral items asked of the verified cache: hit (fresh), "
    "miss (not fresh: fetched upstream), stale (a miss then served past nextUpdate within the grace period)",
    ["result"],
)
COLLATERAL_UPSTREAM_ERRORS = Counter(
    "affidavit_collateral_upstream_errors_total", "Failed fetches from Intel PCS or the PCCS"
)
# Event-loop stalls (service.loopwatch): fine steps up to 3 ms, where the service's budget (2 ms) lies.
STALL_BUCKETS = (0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003, 0.005,
                 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LOOP_STALL = Histogram(
    "affidavit_event_loop_stall_seconds", "How late the event loop ran a timer that fell due (sampled every "
    "5 ms in every worker, the time the OS ran other processes excluded)", buckets=STALL_BUCKETS,
)
LOOP_STALL_MAX = Gauge(
    "affidavit_event_loop_stall_max_seconds", "The longest event-loop stall since the worker started (the "
    "largest over live workers)", multiprocess_mode="livemax",
)
DATABASE_ERRORS = Counter(
    "affidavit_database_errors_total", "Database failures seen by requests and readiness checks", ["source"]
)

_LIVE_GAUGE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_workers(directory: str) -> None:
    """Drop the live-gauge files of workers that no longer run (a killed or restarted worker)."""
    from prometheus_client import multiprocess

    for name in os.listdir(directory):
        m = _LIVE_GAUGE.match(name)
        if m and not _alive(int(m.group(1))):
            multiprocess.mark_process_dead(int(m.group(1)), directory)  # type: ignore[no-untyped-call]


class _ProcessRegistry(Collector):
    """The metrics of this process's default registry (single-process mode)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


class SigningKeyCollector(Collector):
    """Key age, computed at scrape time from the worker's key ring (every replica loads the same ring)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        age = GaugeMetricFamily(
            "affidavit_signing_key_age_seconds", "Age of the current token signing key"
        )
        published = GaugeMetricFamily("affidavit_signing_keys_published", "Keys in /certs")
        try:
            ring = self.state.keyring()
        except Exception:  # noqa: BLE001 -- a scrape must not fail on a database outage
            return
        now = datetime.now(UTC)
        created = getattr(ring.current, "created_at", None)
        if isinstance(created, datetime):
            age.add_metric([], max(0.0, (now - created).total_seconds()))
            yield age
        published.add_metric([], len(ring.published(now)))
        yield published


def render(state: Any) -> bytes:
    """The exposition text: every worker's samples (multiprocess mode) or this process's, plus the
    signing-key gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and os.path.isdir(directory):
        from prometheus_client import multiprocess

        _forget_dead_workers(directory)
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    registry.register(SigningKeyCollector(state))
    return generate_latest(registry)


# -- recording -------------------------------------------------------------------------------------------

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the label sets are few and ``labels()`` costs a lock and
    several lookups per call, on every request."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    _child(HTTP_REQUESTS, route, method, str(status)).inc()
    _child(HTTP_DURATION, route, method).observe(seconds)


def record_attestation(att_type: str, outcome: str, error_code: str, seconds: float) -> None:
    _child(ATTESTATIONS, att_type, outcome, error_code).inc()
    _child(ATTESTATION_DURATION, att_type).observe(seconds)
    result = {"permitted": "permit", "denied": "deny"}.get(outcome)
    if result is not None:
        _child(POLICY_EVALUATIONS, att_type, result).inc()


def collateral_event(event: str) -> None:
    """The collateral provider's hook (``CachingPcsProvider.on_event``): hit, miss, stale, upstream_error."""
    if event == "upstream_error":
        COLLATERAL_UPSTREAM_ERRORS.inc()
    elif event in ("hit", "miss", "stale"):
        _child(COLLATERAL_LOOKUPS, event).inc()


_stall_max = [0.0]


def loop_stall(seconds: float) -> None:
    """One tick of the worker's ``loopwatch.LoopStallMonitor``."""
    LOOP_STALL.observe(seconds)
    if seconds > _stall_max[0]:
        _stall_max[0] = seconds
        LOOP_STALL_MAX.set(seconds)


def database_error(source: str) -> None:
    DATABASE_ERRORS.labels(source).inc()
