"""The verified cache: what may enter, what may replace what, and persistence."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.collateral import CollateralError
from affidavit.collateral.cache import CollateralCache
from affidavit.collateral.items import ROOT_CA_CRL_KEY, CollateralSet, tcb_info_key
from tests.collateral.conftest import AZURE_AT


def open_cache(tmp_path: Path, anchors: list[ec.EllipticCurvePublicKey]) -> CollateralCache:
    return CollateralCache.open(f"sqlite:///{tmp_path / 'cache.db'}", anchors)


def test_valid_items_enter_and_persist(tmp_path: Path, anchors: Any, standard: dict[str, Any]) -> None:
    items = CollateralSet.from_json(standard)
    cache = open_cache(tmp_path, anchors)
    assert cache.offer_set(items, AZURE_AT) == [True] * 4
    assert cache.offer_set(items, AZURE_AT) == [False] * 4  # same documents: nothing to do
    cache.close()
    reopened = open_cache(tmp_path, anchors)
    for item in items.items:
        assert reopened.get(item.key) == item
    assert [e.stored_at for e in reopened.entries()] == [AZURE_AT] * 4


def test_newer_replaces_older_never_the_reverse(
    tmp_path: Path, anchors: Any, standard: dict[str, Any], early: dict[str, Any]
) -> None:
    std, new = CollateralSet.from_json(standard).tcb_info, CollateralSet.from_json(early).tcb_info
    assert (std.number, new.number) == (17, 19)
    cache = open_cache(tmp_path, anchors)
    cache.offer(CollateralSet.from_json(standard).root_ca_crl, AZURE_AT)
    assert cache.offer(std, AZURE_AT) and cache.offer(new, AZURE_AT)
    assert not cache.offer(std, AZURE_AT)
    assert cache.get(std.key) == new
    # The database refuses too, e.g. when another instance shares it with an older view.
    assert not cache.db.upsert_if_newer(std, AZURE_AT)
    assert open_cache(tmp_path, anchors).get(std.key) == new


def test_invalid_documents_never_enter(tmp_path: Path, anchors: Any, standard: dict[str, Any]) -> None:
    items = CollateralSet.from_json(standard)
    cache = open_cache(tmp_path, anchors)
    cache.offer(items.root_ca_crl, AZURE_AT)
    sig = items.tcb_info.signature
    forged = dataclasses.replace(items.tcb_info, signature=sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    body = items.tcb_info.body.replace('"OutOfDate"', '"UpToDate"', 1)
    edited = dataclasses.replace(items.tcb_info, body=body)
    assert edited.body != items.tcb_info.body
    newer = dataclasses.replace(edited, number=99)  # a higher rank does not help an unsigned document
    no_chain = dataclasses.replace(items.qe_identity, chain=items.pck_crl.chain)  # signed by the wrong key
    for bad in (forged, edited, newer, no_chain):
        with pytest.raises(CollateralError) as err:
            cache.offer(bad, AZURE_AT)
        assert err.value.code == "collateral_invalid"
    with pytest.raises(CollateralError) as err:  # a CRL under the wrong issuer chain
        cache.offer(dataclasses.replace(items.pck_crl, chain=items.tcb_info.chain), AZURE_AT)
    assert cache.get(items.tcb_info.key) is None and cache.get(items.qe_identity.key) is None
    assert [e.item.key for e in cache.entries()] == [ROOT_CA_CRL_KEY]


def test_untrusted_anchor_rejects_everything(tmp_path: Path, standard: dict[str, Any]) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    cache = open_cache(tmp_path, [other])
    for item in CollateralSet.from_json(standard).items:
        with pytest.raises(CollateralError):
            cache.offer(item, AZURE_AT)
    assert cache.entries() == []


def test_expired_and_not_yet_valid_documents_are_refused(
    tmp_path: Path, anchors: Any, standard: dict[str, Any]
) -> None:
    tcb = CollateralSet.from_json(standard).tcb_info
    cache = open_cache(tmp_path, anchors)
    with pytest.raises(CollateralError) as err:
        cache.offer(tcb, tcb.next_update + timedelta(seconds=1))
    assert err.value.code == "collateral_expired"
    with pytest.raises(CollateralError) as err:
        cache.offer(tcb, tcb.issue_date - timedelta(seconds=1))
    assert err.value.code == "collateral_invalid"
    assert cache.get(tcb_info_key("sgx", "00906ED50000")) is None


def test_unsupported_cache_url() -> None:
    with pytest.raises(CollateralError):
        CollateralCache.open("mysql://localhost/x", [])
