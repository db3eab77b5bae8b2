"""AMD KDS collateral through the shared verified cache, the KDS client's throttling, and the offline
directory provider on the real vectors."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from affidavit.collateral import CollateralCache, CollateralError
from affidavit.collateral.amd import (
    AmdDirectoryProvider,
    CachingKdsProvider,
    KdsClient,
    KdsConfig,
    chain_key,
    vcek_item,
    vcek_key,
)
from affidavit.collateral.provider import CachingPcsProvider
from affidavit.evidence.snp import parse_report, verify_report
from affidavit.simulate.snp import SimulatedAmdPki, Tcb
from tests.collateral.fake_kds import FakeKds
from tests.conftest import VECTORS

NOW = dt.datetime.now(dt.UTC)
TCB = Tcb(bootloader=4, tee=0, snp=24, microcode=219, fmc=1)


@pytest.fixture(scope="module", params=["Milan", "Turin"])
def pki(request: pytest.FixtureRequest) -> SimulatedAmdPki:
    return SimulatedAmdPki.create(request.param, now=NOW)


@pytest.fixture()
def kds(pki: SimulatedAmdPki) -> Iterator[tuple[FakeKds, str]]:
    fake = FakeKds(pki)
    url = fake.start()
    yield fake, url
    fake.stop()


def _provider(pki: SimulatedAmdPki, url: str, tmp_path: Path, **kw: object) -> CachingKdsProvider:
    cache = CollateralCache.open(f"sqlite:///{tmp_path}/c.db", [], amd_trust=pki.trust())
    client = KdsClient(KdsConfig(base_url=url, min_interval=0.0, throttle=30.0))
    return CachingKdsProvider(None, cache=cache, client=client, **kw)  # type: ignore[arg-type]


def test_fetch_verify_and_serve_from_cache(
    pki: SimulatedAmdPki, kds: tuple[FakeKds, str], tmp_path: Path
) -> None:
    fake, url = kds
    vcek = pki.vcek(tcb=TCB, now=NOW)
    fake.add(vcek)
    report = vcek.report(version=2)

    async def run() -> None:
        provider = _provider(pki, url, tmp_path, default_product=pki.product)
        got = await provider.get_snp(parse_report(report))
        result = verify_report(report, got.vek, got.chain, pki.trust(), NOW, crl=got.crl)
        assert result.product == pki.product
        assert got.crl is not None
        again = await provider.get_snp(parse_report(report))
        assert again == got
        assert fake.calls == {"vcek": 1, "vcek_chain": 1, "crl": 1}
        await provider.aclose()

    asyncio.run(run())
    path, query = next(q for q in fake.queries if "cert_chain" not in q[0] and "crl" not in q[0])
    if pki.product == "Turin":
        assert path.endswith("/" + vcek.chip_id[:8].hex()) and query["fmcSPL"] == "1"
    else:
        assert path.endswith("/" + vcek.chip_id.hex()) and "fmcSPL" not in query
    assert query["ucodeSPL"] == "219" and query["blSPL"] == "4"

    async def reopened() -> None:  # a restart serves the persisted cache without KDS
        cache = CollateralCache.open(f"sqlite:///{tmp_path}/c.db", [], amd_trust=pki.trust())
        provider = CachingKdsProvider(None, cache=cache, default_product=pki.product)
        got = await provider.get_snp(parse_report(report))
        assert got.vek == vcek.der

    asyncio.run(reopened())


def test_concurrent_first_requests_are_coalesced(
    pki: SimulatedAmdPki, kds: tuple[FakeKds, str], tmp_path: Path
) -> None:
    fake, url = kds
    fake.delay = 0.05
    vcek = pki.vcek(tcb=TCB, now=NOW)
    fake.add(vcek)
    report = parse_report(vcek.report(version=3))

    async def run() -> None:
        provider = _provider(pki, url, tmp_path)
        results = await asyncio.gather(*(provider.get_snp(report) for _ in range(10)))
        assert len({r.vek for r in results}) == 1
        await provider.aclose()

    asyncio.run(run())
    assert fake.calls["vcek"] == 1


def test_kds_throttle_is_respected(pki: SimulatedAmdPki, kds: tuple[FakeKds, str], tmp_path: Path) -> None:
    fake, url = kds
    vcek = pki.vcek(tcb=TCB, now=NOW)
    fake.add(vcek)
    fake.throttle = 120
    report = parse_report(vcek.report(version=3))

    async def run() -> None:
        provider = _provider(pki, url, tmp_path)
        with pytest.raises(CollateralError):
            await provider.get_snp(report)
        sent = len(fake.queries)
        fake.throttle = None
        with pytest.raises(CollateralError):  # still inside Retry-After: KDS is not asked
            await provider.client.item(vcek_key(pki.product, vcek.chip_id[:8] if pki.product == "Turin"
                                                else vcek.chip_id, "0" * 16))  # type: ignore[union-attr]
        assert len(fake.queries) == sent
        await provider.aclose()

    asyncio.run(run())


def test_spacing_between_requests(pki: SimulatedAmdPki, kds: tuple[FakeKds, str]) -> None:
    _, url = kds
    client = KdsClient(KdsConfig(base_url=url, min_interval=0.2))

    async def run() -> float:
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(client.item(chain_key(pki.product)) for _ in range(3)))
        await client.aclose()
        return asyncio.get_running_loop().time() - start

    assert asyncio.run(run()) >= 0.4


def test_the_cache_refuses_foreign_or_mislabelled_items(pki: SimulatedAmdPki, tmp_path: Path) -> None:
    cache = CollateralCache.open(f"sqlite:///{tmp_path}/c.db", [], amd_trust=pki.trust())
    rogue = SimulatedAmdPki.create(pki.product, now=NOW).vcek(tcb=TCB, now=NOW)
    hw = rogue.chip_id[:8] if pki.product == "Turin" else rogue.chip_id
    tcbm = parse_report(rogue.report()).tcb("reported", pki.product).tcbm
    with pytest.raises(CollateralError):
        cache.offer(vcek_item(vcek_key(pki.product, hw, tcbm), rogue.der), NOW)
    good = pki.vcek(tcb=TCB, now=NOW)
    with pytest.raises(CollateralError, match="hwID"):  # the right PKI, filed under another chip
        cache.offer(vcek_item(vcek_key(pki.product, hw, tcbm), good.der), NOW)
    good_hw = good.chip_id[:8] if pki.product == "Turin" else good.chip_id
    with pytest.raises(CollateralError, match="SPL"):
        cache.offer(vcek_item(vcek_key(pki.product, good_hw, "0" * 16), good.der), NOW)
    assert cache.offer(vcek_item(vcek_key(pki.product, good_hw, tcbm), good.der), NOW)
    assert cache.entries()


def test_intel_provider_leaves_amd_items_alone(pki: SimulatedAmdPki, tmp_path: Path) -> None:
    cache = CollateralCache.open(f"sqlite:///{tmp_path}/c.db", [], amd_trust=pki.trust())
    good = pki.vcek(tcb=TCB, now=NOW, lifetime=dt.timedelta(days=2))
    tcbm = parse_report(good.report()).tcb("reported", pki.product).tcbm
    hw = good.chip_id[:8] if pki.product == "Turin" else good.chip_id
    cache.offer(vcek_item(vcek_key(pki.product, hw, tcbm), good.der), NOW)

    class Exploding:
        config = KdsConfig()

        async def item(self, key: object) -> None:
            raise AssertionError(f"the Intel provider tried to refresh {key}")

        async def aclose(self) -> None:
            pass

    intel = CachingPcsProvider(None, cache=cache, client=Exploding())  # type: ignore[arg-type]
    assert asyncio.run(intel.refresh_due(NOW + dt.timedelta(days=1, hours=12))) == 0


SNP = VECTORS / "snp"


@pytest.mark.parametrize("case", ["oak-turin-v5", "oak-genoa-v5", "trustee-milan-v2-vcek"])
def test_directory_provider_on_real_kds_files(case: str) -> None:
    import json

    data = json.loads((SNP / case / "expected.json").read_text())["cases"][0]
    provider = AmdDirectoryProvider(SNP / "amd-roots", default_product=data["chain"]["product"])
    report_bytes = (SNP / case / data["report"]).read_bytes()
    # The VCEK is not in amd-roots: not found, with a clear message.
    with pytest.raises(CollateralError, match="no VCEK"):
        asyncio.run(provider.get_snp(parse_report(report_bytes)))
    provider._index((SNP / case / data["vek"]).read_bytes())
    got = asyncio.run(provider.get_snp(parse_report(report_bytes)))
    now = dt.datetime.fromisoformat(data["verify_at"].replace("Z", "+00:00"))
    assert verify_report(report_bytes, got.vek, got.chain, None, now).product == data["chain"]["product"]
