"""Issue 10 points 2 and 3: management always needs an authenticated caller; the history records the
caller and the signer; a management JWS's exp/nbf/iat are enforced; the last signer survives concurrent
removals on two servers sharing one database."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from affidavit.jose import b64url
from affidavit.service import ServiceConfig, create_app
from affidavit.service.state import ServiceState, build_state
from affidavit.store import open_store
from affidavit.tokens import certificate_thumbprint
from tests.service.helpers import (
    AsgiClient,
    Signer,
    certificate_payload,
    make_signer,
    sign_jws,
    unsigned_policy,
)

API = "?api-version=2022-08-01"
PERMIT = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"


@dataclass
class Isolated:
    data: Path
    signers: tuple[Signer, Signer]
    client: AsgiClient
    state: ServiceState

    @property
    def token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def auth(self, bearer: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {bearer or self.token}"}


def _isolated(data: Path, signers: tuple[Signer, ...], **config: Any) -> tuple[AsgiClient, ServiceState]:
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(signers):
        (data / f"signer-{i}.pem").write_text(s.cert_pem)
        paths.append(data / f"signer-{i}.pem")
    cfg = ServiceConfig(data_dir=data, mode="isolated", policy_signer_certs=tuple(paths), **config)
    state = build_state(cfg)
    return AsgiClient(create_app(cfg, state=state)), state


@pytest.fixture
def iso(tmp_path: Path) -> Iterator[Isolated]:
    signers = (make_signer("first signer"), make_signer("second signer"))
    client, state = _isolated(tmp_path / "iso", signers[:1])  # no --admin-token given; the second is added
    yield Isolated(tmp_path / "iso", signers, client, state)
    client.close()
    state.close()


def _calls(iso: Isolated) -> list[tuple[str, str, str, str]]:
    a, b = iso.signers
    policy = sign_jws({"AttestationPolicy": b64url(PERMIT.encode())}, a)
    add = json.dumps(sign_jws(certificate_payload(b), a))
    return [
        ("GET", "/policies/SgxEnclave", "", "text/plain"),
        ("PUT", "/policies/SgxEnclave", policy, "text/plain"),
        ("POST", "/policies/SgxEnclave:reset", sign_jws(None, a), "text/plain"),
        ("GET", "/certificates", "", "application/json"),
        ("POST", "/certificates:add", add, "application/json"),
        ("POST", "/certificates:remove", add, "application/json"),
    ]


def test_isolated_mode_without_admin_token_generates_one(iso: Isolated) -> None:
    path = iso.data / "admin-token"
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(iso.token) >= 32


def test_every_management_call_needs_a_caller_even_with_a_valid_signature(iso: Isolated) -> None:
    for method, url, body, media in _calls(iso):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = iso.client.request(method, url + API, content=body,
                                   headers={"Content-Type": media, **headers})
            assert r.status_code == 401, (method, url, r.text)
            assert r.json()["error"]["code"] == "Unauthorized"
        r = iso.client.request(method, url + API, content=body, headers={"Content-Type": media, **iso.auth()})
        assert r.status_code == 200, (method, url, r.text)


def test_history_records_the_caller_and_the_signer(iso: Isolated) -> None:
    for method, url, body, media in _calls(iso):
        iso.client.request(method, url + API, content=body, headers={"Content-Type": media, **iso.auth()})
    rows = iso.state.store.history()
    changes = [r for r in rows if r.actor != "configuration" and r.kind != "key"]
    assert [(r.kind, r.action) for r in changes] == [
        ("policy", "set"), ("policy", "reset"), ("certificate", "add"), ("certificate", "remove")]
    thumb = certificate_thumbprint(iso.signers[0].cert)
    for r in changes:
        assert r.caller == "admin-token"
        assert r.signer is not None and r.signer.startswith(thumb) and "first signer" in r.signer


def test_aad_mode_records_the_caller_of_unsigned_changes(tmp_path: Path) -> None:
    cfg = ServiceConfig(data_dir=tmp_path, admin_token="t0ken")
    state = build_state(cfg)
    client = AsgiClient(create_app(cfg, state=state))
    try:
        r = client.request("PUT", "/policies/Tpm" + API, content=unsigned_policy(PERMIT),
                           headers={"Content-Type": "text/plain", "Authorization": "Bearer t0ken"})
        assert r.status_code == 200
        (row,) = state.store.policy_history("Tpm")
        assert (row.caller, row.signer) == ("admin-token", None)
    finally:
        client.close()
        state.close()


@pytest.mark.parametrize(("claims", "ok"), [
    ({"exp": -3600}, False),
    ({"exp": -200}, True),  # within 5 minutes of skew
    ({"nbf": 3600}, False),
    ({"nbf": 200}, True),
    ({"iat": 3600}, False),
    ({"iat": -86400 * 365}, True),  # an old iat alone is no error: SDK policies are replayed by design
    ({"exp": "tomorrow"}, False),
])
def test_management_jws_times_are_enforced(iso: Isolated, claims: dict[str, int], ok: bool) -> None:
    now = int(time.time())
    payload = {"AttestationPolicy": b64url(PERMIT.encode()),
               **{k: (now + v if isinstance(v, int) else v) for k, v in claims.items()}}
    r = iso.client.request("PUT", "/policies/SgxEnclave" + API, content=sign_jws(payload, iso.signers[0]),
                           headers={"Content-Type": "text/plain", **iso.auth()})
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidOperation"


def test_two_servers_removing_each_other_leave_one_signer(tmp_path: Path) -> None:
    """A removes B on one server while B removes A on another, sharing one database (point 3)."""
    a, b = make_signer("A"), make_signer("B")
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    kek = tmp_path / "kek"  # servers sharing a database share its key-encryption key
    kek.write_text("00" * 32)
    shared = {"database_url": db, "admin_token": "tok", "key_encryption_key_file": kek}
    one = _isolated(tmp_path / "one", (a, b), **shared)
    two = _isolated(tmp_path / "two", (a, b), **shared)
    # Widen the window between a handler's checks and its removal, as load on a real server would.
    for _client, state in (one, two):
        original = state.store.list_certificates

        def slow(original: Any = original) -> list[bytes]:
            out = original()
            time.sleep(0.3)
            return out

        state.store.list_certificates = slow  # type: ignore[method-assign]
    results: list[httpx.Response | None] = [None, None]
    barrier = threading.Barrier(2)

    def remove(i: int, client: AsgiClient, by: Signer, victim: Signer) -> None:
        barrier.wait()
        results[i] = client.post("/certificates:remove" + API,
                                 content=json.dumps(sign_jws(certificate_payload(victim), by)),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer tok"})

    threads = [threading.Thread(target=remove, args=(0, one[0], a, b)),
               threading.Thread(target=remove, args=(1, two[0], b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        statuses = sorted(r.status_code for r in results if r is not None)
        assert statuses == [200, 400]
        with open_store(db) as store:
            assert len(store.list_certificates()) == 1
    finally:
        for client, state in (one, two):
            client.close()
            state.close()


def test_no_credential_at_all_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from affidavit.service import ServiceError
    from affidavit.service import state as state_module

    monkeypatch.setattr(state_module, "admin_token_for", lambda config: None)
    with pytest.raises(ServiceError) as info:
        build_state(ServiceConfig(data_dir=tmp_path))
    assert info.value.code == "configuration"
