"""``GET /healthz`` (the process serves) and ``GET /readyz`` (it can answer attestations), unauthenticated.

Liveness touches nothing: a process that answers it has a running event loop, and restarting it would
not fix a database outage. Readiness runs one trivial query (``Store.ping``) bounded by
``READY_TIMEOUT``; when the database does not answer, the replica is still ready if it serves from its
caches within the allowed staleness, which the state reports through an optional hook,
``state.database_staleness() -> (seconds since the database last answered, seconds allowed) | None``
(the outage behaviour of the store; without the hook an unreachable database means not ready). The
collateral state (cached items, how many are past ``nextUpdate``, upstream failures) is reported but does
not decide readiness: the collateral cache is shared by every replica, so taking one out of the load
balancer would not help, and per-platform expiry is answered per request.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from affidavit.service import metrics
from affidavit.service.common import state_of
from affidavit.service.errors import JSON_MEDIA

READY_TIMEOUT = 2.0  # seconds the database gets to answer a readiness probe
log = logging.getLogger("affidavit.service")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, media_type=JSON_MEDIA, headers={"cache-control": "no-store"})


async def readyz(request: Request) -> Response:
    state = state_of(request)
    database = await database_check(state)
    ready = database["status"] in ("ok", "stale")
    body = {
        "status": "ready" if ready else "not_ready",
        "database": database,
        "collateral": collateral_state(state),
    }
    return JSONResponse(
        body, status_code=200 if ready else 503, media_type=JSON_MEDIA, headers={"cache-control": "no-store"}
    )


async def database_check(state: Any) -> dict[str, Any]:
    """``{"status": "ok"|"stale"|"unavailable", ...}`` for the store behind ``state``."""
    from affidavit.errors import AffidavitError

    error: str
    try:
        await asyncio.wait_for(asyncio.to_thread(state.store.ping), READY_TIMEOUT)
        return {"status": "ok"}
    except TimeoutError:
        error = f"no answer within {READY_TIMEOUT:g} s"
        log.warning("readiness: the database gave %s", error)
    except AffidavitError as exc:
        # The driver's text names hosts and ports: it goes to the log, the unauthenticated probe gets less.
        error = "the database does not answer"
        log.warning("readiness: %s", exc.message)
    metrics.database_error("readiness")
    out: dict[str, Any] = {"status": "unavailable", "error": error}
    hook = getattr(state, "database_staleness", None)
    staleness = hook() if callable(hook) else None
    if staleness is not None:
        age, allowed = staleness
        out.update(stale_seconds=round(float(age), 3), allowed_staleness_seconds=float(allowed))
        if age <= allowed:
            out["status"] = "stale"
    return out


def collateral_state(state: Any) -> dict[str, Any]:
    """What the collateral provider holds, cheaply (in-memory indexes only)."""
    provider = state.collateral
    files = getattr(provider, "files", None)
    if files is not None:  # DirectoryProvider
        return {"source": "directory", "files": len(files)}
    cache = getattr(provider, "cache", None)
    if cache is None:
        return {"source": type(provider).__name__}
    now = state.evidence_clock() if hasattr(state, "evidence_clock") else datetime.now(UTC)
    entries = cache.entries()
    expired = [e for e in entries if e.item.next_update < now]
    grace = getattr(provider, "grace", None)
    out: dict[str, Any] = {
        "source": "pcs" if getattr(provider, "client", None) is not None else "cache",
        "items": len(entries),
        "expired": len(expired),
        "upstream_failures": len(getattr(provider, "_failures", {})),
    }
    if grace is not None:
        out["expired_beyond_grace"] = sum(1 for e in expired if e.item.next_update + grace < now)
    if entries:
        from affidavit.timefmt import format_time

        out["next_update"] = format_time(min(e.item.next_update for e in entries))
    return out
