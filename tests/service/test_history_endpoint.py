"""``GET /policies/{type}/history`` and ``POST /policies/{type}:diff`` in process: authentication, limits,
filters, and diff refused unless shadow samples are on; history shared by two apps on one database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.policy import policy_hash
from affidavit.service import ServiceConfig, create_app
from tests.service.helpers import AsgiClient, unsigned_policy

AUTH = {"Authorization": "Bearer x"}
P1 = "version=1.0; authorizationrules { => permit(); };"
P2 = "version=1.0; authorizationrules { => deny(); };"


def _put(c: AsgiClient, text: str) -> None:
    r = c.request("PUT", "/policies/Tpm?api-version=2022-08-01", content=unsigned_policy(text),
                  headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text


def test_history_endpoint(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path, admin_token="x")
    a, b = AsgiClient(create_app(config)), AsgiClient(create_app(config))  # two servers, one database
    try:
        assert a.get("/policies/Tpm/history").status_code == 401
        _put(a, P1)
        _put(a, P2)
        r = b.get("/policies/tpm/history?api-version=2022-08-01", headers=AUTH)
        doc = r.json()
        assert r.status_code == 200 and doc["attestationType"] == "Tpm" and doc["current"] == policy_hash(P2)
        assert [(e["action"], e["text"], e["hash"]) for e in doc["history"]] == [
            ("set", P1, policy_hash(P1)), ("set", P2, policy_hash(P2))]
        assert doc["history"][0]["actor"].startswith("admin-token@") and doc["history"][0]["signer"] is None
        assert doc["history"][0]["jws"] == unsigned_policy(P1)
        one = b.get(f"/policies/Tpm/history?hash={policy_hash(P1)}", headers=AUTH).json()["history"]
        assert [e["text"] for e in one] == [P1]
        newest = b.get("/policies/Tpm/history?limit=1", headers=AUTH).json()["history"]
        assert [e["text"] for e in newest] == [P2]
        for bad in ("0", "101", "x", "-1"):
            r = b.get(f"/policies/Tpm/history?limit={bad}", headers=AUTH)
            assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"
        r = b.post("/policies/Tpm:diff", content=P1, headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 400 and "--shadow-samples" in r.json()["error"]["message"]
    finally:
        a.close()
        b.close()


def test_diff_with_shadow_samples_but_none_recorded(tmp_path: Path) -> None:
    c = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path, admin_token="x",
                                            extra={"shadow_samples": 5})))
    try:
        text = {**AUTH, "Content-Type": "text/plain"}
        r = c.post("/policies/SgxEnclave:diff", content=P2, headers=text)
        assert r.status_code == 200 and r.json()["samples"] == 0 and r.json()["flipped"] == []
        r = c.post("/policies/SgxEnclave:diff", content="nonsense", headers=text)
        assert r.status_code == 400 and r.json()["error"]["code"] == "PolicyParsingError"
    finally:
        c.close()


@pytest.fixture(scope="module")
def shadow_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiClient]:
    config = ServiceConfig(data_dir=tmp_path_factory.mktemp("fuzz"), admin_token="x",
                           extra={"shadow_samples": 2})
    c = AsgiClient(create_app(config))
    yield c
    c.close()


@given(st.binary(max_size=300), st.text(max_size=20), st.text(max_size=60))
def test_any_diff_body_or_history_query_is_answered_not_crashed(
    shadow_client: AsgiClient, body: bytes, limit: str, hash_: str
) -> None:
    r = shadow_client.post("/policies/SgxEnclave:diff", content=body,
                           headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code in (200, 400), r.text
    r = shadow_client.get("/policies/Tpm/history", params={"limit": limit, "hash": hash_}, headers=AUTH)
    assert r.status_code in (200, 400), r.text
