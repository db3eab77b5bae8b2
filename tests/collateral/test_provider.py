"""CachingPcsProvider end to end: real quotes verify through a (fake) PCS, the cache survives outages,
bad documents never enter, the grace period ends as configured, first requests are coalesced."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from affidavit.collateral import CollateralError
from affidavit.collateral.items import tcb_info_key
from affidavit.collateral.provider import CachingPcsProvider
from affidavit.evidence.dcap import DcapVerifier, SgxCollateral, TrustAnchors, platform_of
from tests.collateral.conftest import AZURE, AZURE_AT, PHALA_AT, PHALA_SGX, PHALA_TDX, Platform, read_json
from tests.collateral.fake_pcs import PCK_CRL, QE, ROOT_CRL, TCB, FakePcs

T = TypeVar("T")
AZURE_PLATFORM = Platform("00906ED50000", "processor", "sgx")
TCB_NEXT_UPDATE = datetime(2025, 6, 26, 19, 31, 7, tzinfo=UTC)  # of the Azure standard/early TCB Info


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def provider(pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, **kw: Any) -> CachingPcsProvider:
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0.0)
    kw.setdefault("retry_interval", timedelta(0))
    return CachingPcsProvider(
        pcs.url, cache_url=f"sqlite:///{tmp_path / 'affidavit.db'}", trust_anchors=anchors, clock=clock, **kw
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(AZURE_AT)


CASES = [
    # (vector set, quote, collateral, CA, verification time, expected TCB status)
    (AZURE, "quote_intelsdk_release.bin", "collateral_2025-05_standard.json", AZURE_AT, "OutOfDate"),
    (PHALA_SGX, "quote.bin", "collateral.json", PHALA_AT, "ConfigurationAndSWHardeningNeeded"),
    (PHALA_TDX, "quote.bin", "collateral.json", PHALA_AT, "UpToDate"),
    (
        "sgx/tdx-v5-90c06f000000-2026-02",
        "quote_gotdx_v5_sample.bin",
        "collateral.json",
        datetime(2026, 2, 25, tzinfo=UTC),
        "UpToDate",
    ),
    (
        "sgx/automata-sgx-v3-00606a000000",
        "quote.bin",
        "collateral_2025-02_tcbinfo_v2.json",
        datetime(2025, 3, 1, tzinfo=UTC),
        "SWHardeningNeeded",
    ),
]


@pytest.mark.parametrize(
    ("vset", "quote_name", "coll_name", "at", "status"), CASES, ids=[c[0][4:] for c in CASES]
)
def test_real_quotes_verify_through_the_client(
    vectors: Path,
    tmp_path: Path,
    anchors: Any,
    vset: str,
    quote_name: str,
    coll_name: str,
    at: datetime,
    status: str,
) -> None:
    quote = (vectors / vset / quote_name).read_bytes()
    served = read_json(vectors / vset / coll_name)
    platform = platform_of(quote)
    pcs = FakePcs()
    pcs.load(served, platform.ca)
    pcs.start()
    try:
        p = provider(pcs, tmp_path, anchors, Clock(at))

        async def go() -> SgxCollateral:
            try:
                return await p.get(platform)
            finally:
                await p.aclose()

        collateral = run(go)
    finally:
        pcs.stop()
    result = DcapVerifier(TrustAnchors.intel()).verify(quote, collateral, at)
    assert result.tcb_status == status
    # The token names the collateral actually served.
    assert result.collateral_hashes["tcbinfohash"] == hashlib.sha256(served["tcb_info"].encode()).hexdigest()
    assert result.collateral_hashes["qeidhash"] == hashlib.sha256(served["qe_identity"].encode()).hexdigest()
    assert (
        result.collateral_hashes["tcbinfocrlhash"]
        == hashlib.sha256(bytes.fromhex(served["root_ca_crl"])).hexdigest()
    )


def test_cache_serves_without_upstream_while_valid(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, standard: dict[str, Any]
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, refresh_before=timedelta(0))
        first = await p.get(AZURE_PLATFORM)
        assert dict(pcs.calls) == {ROOT_CRL: 1, PCK_CRL: 1, QE: 1, TCB: 1}
        pcs.faults["*"] = "down"
        clock.now = TCB_NEXT_UPDATE - timedelta(hours=1)
        assert await p.get(AZURE_PLATFORM) is first  # same items: the same assembled collateral
        assert sum(pcs.calls.values()) == 4  # valid items never go upstream
        await p.aclose()
        # A restarted service has the cache from the database: the outage is survived across restarts.
        pcs.stop()
        again = provider(pcs, tmp_path, anchors, clock)
        got = await again.get(AZURE_PLATFORM)
        assert got.tcb_info_json.decode() == standard["tcb_info"]
        await again.aclose()

    run(go)


def test_refresh_before_next_update_in_background(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, refresh_before=timedelta(days=2))
        await p.get(AZURE_PLATFORM)
        pcs.load(early, "processor")  # Intel publishes a newer TCB Info (evaluation number 19)
        clock.now = TCB_NEXT_UPDATE - timedelta(days=1)  # inside the refresh window
        served = await p.get(AZURE_PLATFORM)  # answered at once from the cache ...
        assert served.tcb_info_json.decode() == standard["tcb_info"]
        await p.wait_background()  # ... while the refresh runs
        assert p.cache.get(tcb_info_key("sgx", "00906ED50000")).number == 19  # type: ignore[union-attr]
        refreshed = await p.get(AZURE_PLATFORM)
        assert refreshed.tcb_info_json.decode() == early["tcb_info"]
        await p.aclose()

    run(go)


def test_refresh_due_refreshes_everything_near_expiry(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, early: dict[str, Any]
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, refresh_before=timedelta(days=2))
        await p.get(AZURE_PLATFORM)
        assert await p.refresh_due(AZURE_AT) == 0  # nothing due yet
        pcs.load(early, "processor")
        # 2025-06-25: TCB Info, QE identity and PCK CRL are within 2 days of nextUpdate; the root CRL is not.
        assert await p.refresh_due(datetime(2025, 6, 25, tzinfo=UTC)) == 3
        assert dict(pcs.calls) == {TCB: 2, QE: 2, PCK_CRL: 2, ROOT_CRL: 1}
        assert p.cache.get(tcb_info_key("sgx", "00906ED50000")).number == 19  # type: ignore[union-attr]
        await p.aclose()

    run(go)


@pytest.mark.parametrize("fault", ["bad_signature", "garbage", "wrong_fmspc", "down"])
def test_bad_documents_never_enter_the_cache(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, fault: str, vectors: Path
) -> None:
    pcs.load(read_json(vectors / PHALA_SGX / "collateral.json"), "processor")  # another FMSPC to confuse with
    pcs.load(read_json(vectors / AZURE / "collateral_2025-05_standard.json"), "processor")

    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock)
        pcs.faults[TCB] = fault
        with pytest.raises(CollateralError) as err:
            await p.get(AZURE_PLATFORM)
        assert err.value.code in {"collateral_unavailable", "collateral_not_found"}
        assert p.cache.get(tcb_info_key("sgx", "00906ED50000")) is None
        assert p.cache.get(tcb_info_key("sgx", "00A067110000")) is None  # nor the wrong platform's
        del pcs.faults[TCB]
        assert (await p.get(AZURE_PLATFORM)).tcb_info.fmspc.hex() == "00906ed50000"  # recovers with PCS
        await p.aclose()

    run(go)


def test_bad_or_older_refresh_keeps_the_good_document(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    pcs.load(early, "processor")

    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, refresh_before=timedelta(days=30))
        first = await p.get(AZURE_PLATFORM)
        assert first.tcb_info_json.decode() == early["tcb_info"]
        pcs.faults[TCB] = "bad_signature"
        assert await p.refresh_due() == 2  # QE identity and PCK CRL refresh, the forged TCB Info fails
        pcs.faults.clear()
        pcs.load(standard, "processor")  # PCS now answers with an older document (evaluation number 17)
        await p.refresh_due()
        assert (await p.get(AZURE_PLATFORM)).tcb_info_json.decode() == early["tcb_info"]
        stored = json.loads(p.cache.get(tcb_info_key("sgx", "00906ED50000")).body)  # type: ignore[union-attr]
        assert stored["tcbEvaluationDataNumber"] == 19
        await p.aclose()

    run(go)


def test_grace_period_ends_as_configured(pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, grace=timedelta(days=3))
        await p.get(AZURE_PLATFORM)
        pcs.faults["*"] = "down"
        clock.now = TCB_NEXT_UPDATE + timedelta(days=2)  # past nextUpdate, inside the grace period
        stale = await p.get(AZURE_PLATFORM)
        assert stale.tcb_info_json  # served (upstream was tried and failed)
        assert pcs.calls[TCB] == 2
        clock.now = TCB_NEXT_UPDATE + timedelta(days=3, seconds=1)
        with pytest.raises(CollateralError) as err:
            await p.get(AZURE_PLATFORM)
        assert err.value.code == "collateral_unavailable"  # upstream down: an outage, retryable
        assert "expired at" in err.value.message and "grace period" in err.value.message
        pcs.faults.clear()  # once PCS is back with a current document (here: none newer), still expired
        with pytest.raises(CollateralError):
            await p.get(AZURE_PLATFORM)
        await p.aclose()

    run(go)


def test_no_grace_means_expiry_at_next_update(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock)
        await p.get(AZURE_PLATFORM)
        pcs.faults["*"] = "down"
        clock.now = TCB_NEXT_UPDATE + timedelta(seconds=1)
        with pytest.raises(CollateralError) as err:
            await p.get(AZURE_PLATFORM)
        assert err.value.code == "collateral_unavailable"
        await p.aclose()

    run(go)


def test_concurrent_first_requests_make_one_upstream_call(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock
) -> None:
    pcs.delay = 0.2

    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock)
        results = await asyncio.gather(*(p.get(AZURE_PLATFORM) for _ in range(20)))
        assert all(r is results[0] for r in results)
        assert dict(pcs.calls) == {ROOT_CRL: 1, PCK_CRL: 1, QE: 1, TCB: 1}
        await p.aclose()

    run(go)


def test_failed_fetches_are_not_repeated_within_retry_interval(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, retry_interval=timedelta(minutes=5))
        pcs.faults[TCB] = "down"
        for _ in range(3):
            with pytest.raises(CollateralError):
                await p.get(AZURE_PLATFORM)
        assert pcs.calls[TCB] == 1
        clock.now += timedelta(minutes=5)
        pcs.faults.clear()
        await p.get(AZURE_PLATFORM)
        assert pcs.calls[TCB] == 2
        await p.aclose()

    run(go)


def test_cache_only_mode_without_pcs(tmp_path: Path, anchors: Any, clock: Clock) -> None:
    async def go() -> None:
        url = f"sqlite:///{tmp_path / 'c.db'}"
        p = CachingPcsProvider(None, cache_url=url, trust_anchors=anchors, clock=clock)
        with pytest.raises(CollateralError) as err:
            await p.get(AZURE_PLATFORM)
        assert err.value.code == "collateral_not_found"
        await p.aclose()

    run(go)


def test_background_refresh_loop(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, early: dict[str, Any]
) -> None:
    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, refresh_before=timedelta(days=2))
        await p.get(AZURE_PLATFORM)
        pcs.load(early, "processor")
        clock.now = TCB_NEXT_UPDATE - timedelta(days=1)
        p.start(interval=0.02)  # no request needed: the loop refreshes what nears nextUpdate
        key = tcb_info_key("sgx", "00906ED50000")
        for _ in range(200):
            if p.cache.get(key).number == 19:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert p.cache.get(key).number == 19  # type: ignore[union-attr]
        await p.aclose()

    run(go)


def test_an_upstream_outage_is_logged_once_per_transition(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock)  # retry_interval 0: every get tries upstream again
        pcs.faults["*"] = "down"
        for _ in range(5):
            with pytest.raises(CollateralError) as err:
                await p.get(AZURE_PLATFORM)
            assert err.value.code == "collateral_unavailable"
        pcs.faults.clear()
        await p.get(AZURE_PLATFORM)
        await p.aclose()

    with caplog.at_level(logging.WARNING, logger="affidavit.collateral.provider"):
        run(go)
    lines = [r.getMessage() for r in caplog.records if r.name == "affidavit.collateral.provider"]
    assert sum("unreachable" in m for m in lines) == 1, lines
    assert sum("reachable again" in m for m in lines) == 1, lines
    assert len(lines) == 2, lines


def test_serving_within_the_grace_is_logged_once_per_failed_fetch(
    pcs: FakePcs, tmp_path: Path, anchors: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    async def go() -> None:
        p = provider(pcs, tmp_path, anchors, clock, grace=timedelta(days=3),
                     retry_interval=timedelta(hours=1))
        await p.get(AZURE_PLATFORM)
        pcs.faults["*"] = "down"
        clock.now = TCB_NEXT_UPDATE + timedelta(days=1)
        for _ in range(20):  # one failed fetch, then 19 requests served from the cache within the grace
            await p.get(AZURE_PLATFORM)
        await p.aclose()

    with caplog.at_level(logging.WARNING, logger="affidavit.collateral.provider"):
        run(go)
    lines = [r.getMessage() for r in caplog.records if r.name == "affidavit.collateral.provider"]
    assert sum("past its nextUpdate" in m for m in lines) <= 4, lines  # at most once per item
    assert sum("unreachable" in m for m in lines) == 1, lines
