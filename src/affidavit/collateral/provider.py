"""``CachingPcsProvider``: collateral from Intel PCS / a PCCS, through the verified cache.

Serving rules, item by item (root CA CRL, PCK CRL, QE identity, TCB Info):
- valid in the cache: served; within ``refresh_before`` of its nextUpdate a background refresh starts;
- missing (an FMSPC never seen) or past nextUpdate: fetched now, one upstream call per item however many
  requests wait for it;
- upstream fails: the cached item is served while valid, and past nextUpdate only within ``grace``;
  after that the request fails with ``collateral_unavailable`` (upstream unreachable: the service
  answers 503 with Retry-After) or ``collateral_expired`` (upstream answered, with nothing newer). A
  failed item is not asked for again for ``retry_interval`` (failures remembered: at most
  ``MAX_FAILURES``), so an outage does not make every request wait on upstream.
The clock is injectable and ``get`` takes ``now``, so every rule is testable at any time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.bounded import BoundedDict
from affidavit.collateral import CollateralError
from affidavit.collateral.cache import CollateralCache
from affidavit.collateral.items import (
    KINDS,
    ROOT_CA_CRL_KEY,
    CollateralItem,
    CollateralSet,
    ItemKey,
    platform_keys,
)
from affidavit.collateral.pcs import INTEL_PCS_URL, PcsClient, PcsConfig

log = logging.getLogger(__name__)

_ASSEMBLED_MAX = 256
MAX_FAILURES = 4096  # items whose last fetch failed, remembered for retry_interval

def anchor_keys(trust: Any = None) -> list[ec.EllipticCurvePublicKey]:
    """Root public keys from a ``TrustAnchors``, PEM (text, bytes or a file path), or keys/certificates.

    None means Intel's SGX Root CA as shipped with the verifier.
    """
    if trust is None:
        from affidavit.evidence.dcap import TrustAnchors

        trust = TrustAnchors.intel()
    if isinstance(trust, Path):
        trust = trust.read_bytes()
    if isinstance(trust, str | bytes):
        from affidavit.evidence.dcap import TrustAnchors

        trust = TrustAnchors.from_pem(trust)
    if hasattr(trust, "keys") and isinstance(trust.keys, dict):
        return list(trust.keys.values())
    keys: list[ec.EllipticCurvePublicKey] = []
    for entry in trust:
        key = entry.public_key() if isinstance(entry, x509.Certificate) else entry
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CollateralError("trust anchors must be ECDSA public keys or certificates")
        keys.append(key)
    return keys


class CachingPcsProvider:
    """A ``CollateralProvider`` over Intel PCS / a PCCS with a verified, persistent cache."""

    def __init__(
        self,
        pcs_url: str | None = INTEL_PCS_URL,
        *,
        api_key: str | None = None,
        update: str = "standard",
        cache_url: str = "sqlite:///affidavit.db",
        grace: timedelta = timedelta(0),
        trust_anchors: Any = None,
        refresh_before: timedelta = timedelta(days=1),
        retry_interval: timedelta = timedelta(minutes=1),
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        root_ca_crl_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        client: PcsClient | None = None,
        cache: CollateralCache | None = None,
        serves: Callable[[ItemKey], bool] | None = None,
    ) -> None:
        if grace < timedelta(0) or refresh_before < timedelta(0):
            raise CollateralError("grace and refresh_before must not be negative")
        self.grace = grace
        self.refresh_before = refresh_before
        self.retry_interval = retry_interval
        self._clock = clock or (lambda: datetime.now(UTC))
        self.cache = cache or CollateralCache.open(cache_url, anchor_keys(trust_anchors))
        if client is None and pcs_url:
            config = PcsConfig(
                base_url=pcs_url,
                api_key=api_key,
                update=update,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                root_ca_crl_url=root_ca_crl_url,
            )
            client = PcsClient(config)
        self.client = client  # None: serve the cache (filled by `affidavit collateral import`) only
        # Which cached items this provider's client refreshes: Intel's kinds by default; the shared
        # cache also holds AMD items (`collateral.amd.CachingKdsProvider` reuses this class with KDS).
        self._serves = serves or (lambda key: key.kind in KINDS)
        self._inflight: dict[ItemKey, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # negative cache: bounded (oldest forgotten first), and only ever holds platforms whose PCK chain
        # verified (the service checks the chain before asking for collateral)
        self._failed_at: BoundedDict[ItemKey, datetime] = BoundedDict(MAX_FAILURES)
        self._failures: BoundedDict[ItemKey, CollateralError] = BoundedDict(MAX_FAILURES)
        self._assembled: BoundedDict[tuple[tuple[ItemKey, tuple[int, datetime]], ...], Any] = (
            BoundedDict(_ASSEMBLED_MAX)
        )
        self._refresher: asyncio.Task[None] | None = None
        self._upstream_down = False  # logged once when upstream stops answering, once when it is back
        self._grace_logged: BoundedDict[ItemKey, datetime] = BoundedDict(MAX_FAILURES)
        # Told "hit", "miss", "stale" (served past nextUpdate within grace) and "upstream_error", for the
        # service's metrics; the provider itself keeps no counts.
        self.on_event: Callable[[str], None] | None = None

    def _note(self, event: str) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # --- the CollateralProvider protocol -------------------------------------------------------------

    async def get(self, platform: Any, now: datetime | None = None) -> Any:
        """The ``SgxCollateral`` for ``platform`` (``fmspc``, ``ca``, ``tee``); raises CollateralError."""
        now = now or self._clock()
        keys = platform_keys(str(platform.fmspc), str(platform.ca), str(getattr(platform, "tee", "sgx")))
        root = await self._item(keys[0], now)  # first: the others' signers are checked against it
        pck, qe, tcb = await asyncio.gather(*(self._item(k, now) for k in keys[1:]))
        return self._assemble(CollateralSet(root_ca_crl=root, pck_crl=pck, qe_identity=qe, tcb_info=tcb))

    # --- serving and refreshing items ----------------------------------------------------------------

    async def _item(self, key: ItemKey, now: datetime) -> CollateralItem:
        cached = self.cache.get(key)
        if cached is not None and now <= cached.next_update:
            if now >= cached.next_update - self.refresh_before and self._may_attempt(key, now):
                self._refresh_in_background(key, now)
            self._note("hit")
            return cached
        self._note("miss")
        failure = self._failures.get(key)
        if self._may_attempt(key, now):
            try:
                await self._fetch(key, now)
                failure = None
            except CollateralError as exc:
                failure = exc
        current = self.cache.get(key)
        if current is None:
            reason = failure.message if failure else "upstream returned nothing usable"
            code = "collateral_not_found" if failure and failure.code == "collateral_not_found" else None
            raise CollateralError(f"no collateral for {key}: {reason}", code=code or "collateral_unavailable")
        if now <= current.next_update:
            return current
        if failure is None:  # upstream answered, but with nothing newer: don't ask again at once
            failure = CollateralError(f"upstream has nothing newer than the expired {key}")
            self._failed_at.put(key, now)
            self._failures.put(key, failure)
        if now <= current.next_update + self.grace:
            if self._grace_logged.get(key) == self._failed_at.get(key):
                return current  # already said for this failure (one line per retry_interval, not per request)
            self._grace_logged.put(key, self._failed_at.get(key, now))
            log.warning(
                "serving collateral %s past its nextUpdate %s (grace until %s): %s",
                key,
                current.next_update.isoformat(),
                (current.next_update + self.grace).isoformat(),
                failure.message,
            )
            self._note("stale")
            return current
        raise CollateralError(
            f"collateral {key} expired at {current.next_update:%Y-%m-%dT%H:%M:%SZ} and the grace period of "
            f"{self.grace} has ended; no fresh collateral could be fetched ({failure.message})",
            # nothing valid cached and upstream unreachable: an outage (503), not a bad quote
            code="collateral_unavailable" if failure.code == "collateral_unavailable"
            else "collateral_expired",
        )

    def _may_attempt(self, key: ItemKey, now: datetime) -> bool:
        """False while a failed fetch of ``key`` is more recent than ``retry_interval`` (spares upstream)."""
        failed_at = self._failed_at.get(key)
        return failed_at is None or not (failed_at <= now < failed_at + self.retry_interval)

    async def _fetch(self, key: ItemKey, now: datetime) -> None:
        """Fetch ``key`` upstream and offer it to the cache; concurrent callers share one fetch."""
        task = self._inflight.get(key)
        if task is None:
            if self.client is None:
                raise CollateralError(
                    f"no collateral for {key} in the cache and no PCS/PCCS configured",
                    code="collateral_not_found",
                )
            task = asyncio.get_running_loop().create_task(self._fetch_and_store(key, now))
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))  # type: ignore[misc]
        await asyncio.shield(task)

    async def _fetch_and_store(self, key: ItemKey, now: datetime) -> None:
        assert self.client is not None
        try:
            item = await self.client.item(key)
            await asyncio.to_thread(self.cache.offer, item, now)
        except CollateralError as exc:
            self._note("upstream_error")
            self._failed_at.put(key, now)
            self._failures.put(key, exc)
            upstream = self.client.config.base_url
            if exc.code != "collateral_unavailable":  # a bad or missing document: worth a line each time
                log.warning("fetching collateral %s from %s failed: %s", key, upstream, exc)
            elif not self._upstream_down:  # an outage: one line when it begins, not one per item or retry
                self._upstream_down = True
                log.warning("collateral upstream %s unreachable: %s", upstream, exc.message)
            raise
        if self._upstream_down:
            self._upstream_down = False
            log.warning("collateral upstream %s reachable again", self.client.config.base_url)
        self._failed_at.pop(key, None)
        self._failures.pop(key, None)

    def _refresh_in_background(self, key: ItemKey, now: datetime) -> None:
        if self.client is None or key in self._inflight:
            return
        task = asyncio.get_running_loop().create_task(self._quiet_fetch(key, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quiet_fetch(self, key: ItemKey, now: datetime) -> bool:
        try:
            await self._fetch(key, now)
            return True
        except CollateralError as exc:
            if exc.code != "collateral_unavailable":  # an outage is logged by _fetch_and_store, once
                log.warning("background refresh of collateral %s failed: %s", key, exc)
            return False

    async def refresh_due(self, now: datetime | None = None) -> int:
        """Refresh every cached item within ``refresh_before`` of its nextUpdate (or past it).

        Returns how many refreshes succeeded; failures are logged and the cached items kept.
        """
        now = now or self._clock()
        due = sorted(
            e.item.key
            for e in self.cache.entries()
            if now >= e.item.next_update - self.refresh_before and self._serves(e.item.key)
        )
        if self.client is None or not due:
            return 0
        done = 0
        if ROOT_CA_CRL_KEY in due:  # first: the other items' signers are checked against it
            due.remove(ROOT_CA_CRL_KEY)
            done += await self._quiet_fetch(ROOT_CA_CRL_KEY, now)
        results = await asyncio.gather(*(self._quiet_fetch(k, now) for k in due))
        return done + sum(results)

    def start(self, interval: float = 3600.0) -> None:
        """Run :meth:`refresh_due` every ``interval`` seconds in the running event loop."""
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(interval))

    async def _refresh_loop(self, interval: float) -> None:
        while True:
            await self.refresh_due()
            await asyncio.sleep(interval)

    async def wait_background(self) -> None:
        """Wait for background refreshes started so far (tests, orderly shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
        self.cache.close()

    # --- assembly -----------------------------------------------------------------------------------

    def _assemble(self, collateral: CollateralSet) -> Any:
        """The verifier's ``SgxCollateral`` for four items; reused while the items stay the same."""
        ident = tuple((i.key, i.rank()) for i in collateral.items)
        found = self._assembled.use(ident)
        if found is not None:
            return found
        from affidavit.evidence import EvidenceError
        from affidavit.evidence.dcap import load_collateral

        try:
            built = load_collateral(collateral.to_json())
        except EvidenceError as exc:
            raise CollateralError(f"cached collateral cannot be loaded: {exc.message}") from exc
        self._assembled.put(ident, built)
        return built
