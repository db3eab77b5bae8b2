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

import asyncio
import bisect
import os
import re
import threading
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
    signing-key gauges. This worker's collected samples are written first."""
    flush()
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
#
# In multiprocess mode every sample is a locked write into a memory-mapped file: the seven a request makes
# (two counters, two histograms of two values each, one more counter) and the in-flight gauge cost 30-70 us
# of the event loop per attestation. They are collected here and written together, at the latest
# FLUSH_SECONDS after the first one, at once whenever the worker has no request in flight (a quiet worker's
# samples are never late), and before this worker renders a scrape; another worker's scrape of a busy
# worker sees its samples up to FLUSH_SECONDS late. Histograms are written as one sum and one count per
# bucket for all the values collected.

FLUSH_SECONDS = 0.25

_children: dict[tuple[Any, ...], Any] = {}
_pending_counts: dict[Any, float] = {}
_pending_values: dict[Any, list[float]] = {}
_pending_lock = threading.Lock()
_flush_handle: list[Any] = [None, None]  # the timer handle and its loop
_in_flight = [0, 0]  # [requests in flight now, the value the gauge was last written with]


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the label sets are few and ``labels()`` costs a lock and
    several lookups per call, on every request."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _count(child: Any, amount: float = 1.0) -> None:
    with _pending_lock:
        _pending_counts[child] = _pending_counts.get(child, 0.0) + amount
    _schedule()


def _observe(child: Any, value: float) -> None:
    with _pending_lock:
        values = _pending_values.get(child)
        if values is None:
            _pending_values[child] = [value]
        else:
            values.append(value)
    _schedule()


def _schedule() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop in this thread: write now
        flush()
        return
    if _flush_handle[0] is not None and _flush_handle[1] is loop:
        return
    _flush_handle[0], _flush_handle[1] = loop.call_later(FLUSH_SECONDS, flush), loop


def flush() -> None:
    """Write the samples collected so far (module comment above)."""
    with _pending_lock:
        counts, values = dict(_pending_counts), dict(_pending_values)
        _pending_counts.clear()
        _pending_values.clear()
        handle, _flush_handle[0], _flush_handle[1] = _flush_handle[0], None, None
        in_flight = _in_flight[0]
        write_gauge = in_flight != _in_flight[1]
        _in_flight[1] = in_flight
    if handle is not None:
        try:
            handle.cancel()
        except RuntimeError:  # the loop that scheduled it has closed
            pass
    if write_gauge:
        HTTP_IN_FLIGHT.set(in_flight)
    for child, amount in counts.items():
        child.inc(amount)
    for child, observed in values.items():
        _observe_all(child, observed)


def _observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, as one sum and one count per bucket where the child
    exposes its parts (prometheus-client's Histogram does), else value by value."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    per_bucket = [0] * len(bounds)
    for value in values:
        per_bucket[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value, as observe finds
    total.inc(sum(values))
    for bucket, n in zip(buckets, per_bucket, strict=True):
        if n:
            bucket.inc(n)


def request_started() -> None:
    """One more HTTP request in flight (``affidavit_http_requests_in_flight``)."""
    _in_flight[0] += 1


def request_ended() -> None:
    _in_flight[0] -= 1


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    _count(_child(HTTP_REQUESTS, route, method, str(status)))
    _observe(_child(HTTP_DURATION, route, method), seconds)


def record_attestation(att_type: str, outcome: str, error_code: str, seconds: float) -> None:
    _count(_child(ATTESTATIONS, att_type, outcome, error_code))
    _observe(_child(ATTESTATION_DURATION, att_type), seconds)
    result = {"permitted": "permit", "denied": "deny"}.get(outcome)
    if result is not None:
        _count(_child(POLICY_EVALUATIONS, att_type, result))


def request_finished() -> None:
    """A request's samples are recorded: written now if nothing else is in flight in this worker."""
    if _in_flight[0] <= 0:
        flush()


def collateral_event(event: str) -> None:
    """The collateral provider's hook (``CachingPcsProvider.on_event``): hit, miss, stale, upstream_error."""
    if event == "upstream_error":
        COLLATERAL_UPSTREAM_ERRORS.inc()
    elif event in ("hit", "miss", "stale"):
        _child(COLLATERAL_LOOKUPS, event).inc()


_stall_max = [0.0]


def loop_stall(seconds: float) -> None:
    """One tick of the worker's ``loopwatch.LoopStallMonitor`` (200 a second: collected like requests')."""
    _observe(LOOP_STALL, seconds)
    if seconds > _stall_max[0]:
        _stall_max[0] = seconds
        LOOP_STALL_MAX.set(seconds)


def database_error(source: str) -> None:
    DATABASE_ERRORS.labels(source).inc()
