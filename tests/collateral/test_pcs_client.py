"""The PCS/PCCS client against a fake PCS on loopback serving real collateral with real headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralSet, tcb_info_key
from affidavit.collateral.pcs import INTEL_ROOT_CA_CRL_URL, PcsClient, PcsConfig
from tests.collateral.conftest import PHALA_TDX, read_json
from tests.collateral.fake_pcs import PCK_CRL, QE, TCB, FakePcs


def fetch(client: PcsClient, *args: str) -> CollateralSet:
    async def run() -> CollateralSet:
        try:
            return await client.fetch(*args)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_fetch_returns_the_served_collateral_exactly(pcs: FakePcs, standard: dict[str, Any]) -> None:
    client = PcsClient(PcsConfig(base_url=pcs.url, api_key="secret-key", update="early"))
    got = fetch(client, "00906ed50000", "processor", "sgx")
    assert got.to_json() == standard
    paths = {path: (query, headers) for path, query, headers in pcs.requests}
    tcb_query, tcb_headers = paths["/sgx/certification/v4/tcb"]
    assert tcb_query == {"fmspc": ["00906ED50000"], "update": ["early"]}
    assert tcb_headers["Ocp-Apim-Subscription-Key"] == "secret-key"
    assert paths["/sgx/certification/v4/qe/identity"][0] == {"update": ["early"]}
    assert paths["/sgx/certification/v4/pckcrl"][0] == {"ca": ["processor"], "encoding": ["der"]}


def test_tdx_paths(vectors: Any) -> None:
    tdx = read_json(vectors / PHALA_TDX / "collateral.json")
    server = FakePcs()
    server.load(tdx, "platform")
    server.start()
    try:
        got = fetch(PcsClient(PcsConfig(base_url=server.url)), "B0C06F000000", "platform", "tdx")
    finally:
        server.stop()
    assert got.to_json() == tdx
    assert got.tee == "tdx" and got.qe_identity.key.tee == "tdx"
    paths = {p for p, _, _ in server.requests}
    assert paths >= {"/tdx/certification/v4/tcb", "/tdx/certification/v4/qe/identity"}


def test_no_api_key_header_unless_configured(pcs: FakePcs) -> None:
    fetch(PcsClient(PcsConfig(base_url=pcs.url)), "00906ED50000", "processor")
    assert all("Ocp-Apim-Subscription-Key" not in h for _, _, h in pcs.requests)


def test_transient_failures_are_retried_with_backoff(pcs: FakePcs, standard: dict[str, Any]) -> None:
    pcs.flaky[TCB] = 2
    client = PcsClient(PcsConfig(base_url=pcs.url, retries=2, backoff=0.01))
    assert fetch(client, "00906ED50000", "processor").to_json() == standard
    assert pcs.calls[TCB] == 3


def test_retries_are_bounded(pcs: FakePcs) -> None:
    pcs.faults[QE] = "down"
    client = PcsClient(PcsConfig(base_url=pcs.url, retries=1, backoff=0.01))
    with pytest.raises(CollateralError) as err:
        fetch(client, "00906ED50000", "processor")
    assert err.value.code == "collateral_unavailable"
    assert pcs.calls[QE] == 2


def test_slow_upstream_times_out(pcs: FakePcs) -> None:
    pcs.delay = 1.0
    client = PcsClient(PcsConfig(base_url=pcs.url, timeout=0.2, retries=1, backoff=0.01))
    with pytest.raises(CollateralError) as err:
        fetch(client, "00906ED50000", "processor")
    assert err.value.code == "collateral_unavailable" and "Timeout" in err.value.message


def test_not_found_is_not_retried(pcs: FakePcs) -> None:
    client = PcsClient(PcsConfig(base_url=pcs.url, retries=3, backoff=0.01))
    with pytest.raises(CollateralError) as err:
        fetch(client, "112233445566", "processor")
    assert err.value.code == "collateral_not_found"
    assert pcs.calls[TCB] == 1


def test_garbage_is_rejected(pcs: FakePcs) -> None:
    pcs.faults[PCK_CRL] = "garbage"
    with pytest.raises(CollateralError) as err:
        fetch(PcsClient(PcsConfig(base_url=pcs.url)), "00906ED50000", "processor")
    assert err.value.code == "collateral_invalid"


def test_wrong_fmspc_is_rejected(pcs: FakePcs, vectors: Any) -> None:
    pcs.load(read_json(vectors / "sgx/phala-sgx-v3-00a067110000-2025-06/collateral.json"), "processor")
    pcs.faults[TCB] = "wrong_fmspc"

    async def run() -> None:
        client = PcsClient(PcsConfig(base_url=pcs.url))
        try:
            await client.item(tcb_info_key("sgx", "00906ED50000"))
        finally:
            await client.aclose()

    with pytest.raises(CollateralError) as err:
        asyncio.run(run())
    assert err.value.code == "collateral_mismatch"


def test_root_ca_crl_location() -> None:
    assert PcsConfig().root_crl_url() == INTEL_ROOT_CA_CRL_URL
    assert PcsConfig(base_url="https://pccs.local:8081/").root_crl_url() == (
        "https://pccs.local:8081/sgx/certification/v4/rootcacrl"
    )
    with pytest.raises(CollateralError):
        PcsConfig(update="latest")
