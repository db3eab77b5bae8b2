"""Several service instances sharing one cache database (SQLite file or PostgreSQL 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from affidavit.collateral.cache import CollateralCache
from affidavit.collateral.items import CollateralSet
from tests.collateral.conftest import AZURE_AT
from tests.pg import fresh_database, postgres_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def cache_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def test_instances_never_regress_a_shared_cache(
    cache_url: str, anchors: Any, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    old, new = CollateralSet.from_json(standard), CollateralSet.from_json(early)
    a = CollateralCache.open(cache_url, anchors)
    b = CollateralCache.open(cache_url, anchors)  # opened before A stores anything: an empty view
    try:
        assert a.offer_set(new, AZURE_AT) == [True] * 4
        # B still believes the cache is empty and offers the older (standard, number 17) documents.
        assert b.offer(old.tcb_info, AZURE_AT) is False
        assert b.get(old.tcb_info.key) == new.tcb_info  # B picked up A's newer row instead
        reopened = CollateralCache.open(cache_url, anchors)
        assert [e.item for e in reopened.entries()] == sorted(new.items, key=lambda i: i.key)
        reopened.close()
    finally:
        a.close()
        b.close()
