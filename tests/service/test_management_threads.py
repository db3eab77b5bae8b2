"""Issue 13 point 7: management routes never call the store on the event loop. The app runs with a store
whose every method records the calls made on a thread with a running event loop; each management route is
driven through httpx's ASGI transport and must leave that record empty."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from affidavit.jose import b64url
from affidavit.service import ServiceConfig, create_app
from affidavit.service.state import ServiceState, build_state
from tests.service.helpers import AsgiClient, Signer, certificate_payload, make_signer, sign_jws

API = "?api-version=2022-08-01"
PERMIT = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"


class LoopGuardedStore:
    """The real store; each method call is recorded (name, thread) and, when made from a thread that runs
    an event loop, also listed in ``on_loop``."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, str]] = []
        self.on_loop: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread().name))
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # a worker thread: where store calls belong
            else:
                self.on_loop.append(name)
            return attr(*args, **kwargs)

        return guarded


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[AsgiClient, ServiceState, LoopGuardedStore, Signer]]:
    signer = make_signer("management signer")
    (tmp_path / "signer.pem").write_text(signer.cert_pem)
    cfg = ServiceConfig(data_dir=tmp_path, mode="isolated", admin_token="t0ken",
                        policy_signer_certs=(tmp_path / "signer.pem",), extra={"shadow_samples": 4})
    state = build_state(cfg)
    store = LoopGuardedStore(state.store)
    state.store = store
    state.forget_policy("SgxEnclave")  # nothing cached: the routes read the (guarded) store
    state._keyring = None  # the key ring is read again, through the guarded store, on first use
    client = AsgiClient(create_app(cfg, state=state))
    yield client, state, store, signer
    client.close()
    state.store = store._store
    state.close()


def test_management_routes_call_the_store_only_from_worker_threads(
    guarded: tuple[AsgiClient, ServiceState, LoopGuardedStore, Signer],
) -> None:
    client, _state, store, signer = guarded
    auth = {"Authorization": "Bearer t0ken"}
    other = make_signer("second signer")
    policy = sign_jws({"AttestationPolicy": b64url(PERMIT.encode())}, signer)
    add = json.dumps(sign_jws(certificate_payload(other), signer))
    calls = [
        ("GET", "/policies/SgxEnclave", "", "text/plain"),
        ("PUT", "/policies/SgxEnclave", policy, "text/plain"),
        ("GET", "/policies/SgxEnclave/history", "", "text/plain"),
        ("POST", "/policies/SgxEnclave:diff", PERMIT, "text/plain"),
        ("POST", "/policies/SgxEnclave:reset", sign_jws(None, signer), "text/plain"),
        ("GET", "/certificates", "", "application/json"),
        ("POST", "/certificates:add", add, "application/json"),
        ("POST", "/certificates:remove", add, "application/json"),
    ]
    for method, url, body, media in calls:
        before = len(store.calls)
        r = client.request(method, url + API, content=body, headers={"Content-Type": media, **auth})
        assert r.status_code == 200, (method, url, r.text)
        assert len(store.calls) > before, f"{method} {url} did not reach the store"
    assert store.on_loop == [], f"store calls on the event loop: {store.on_loop}"
    names = {name for name, _thread in store.calls}
    assert {"get_policy", "set_policy", "reset_policy", "policy_history", "list_certificates",
            "add_certificate", "remove_certificate", "list_signing_keys"} <= names, names


def test_the_guard_sees_a_call_on_the_event_loop(tmp_path: Path) -> None:
    """The guard itself: a store call from a coroutine is recorded (so an empty record means something)."""
    from affidavit.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as real:
        store = LoopGuardedStore(real)

        async def on_loop() -> None:
            store.get_policy("SgxEnclave")
            await asyncio.to_thread(store.get_policy, "Tpm")

        asyncio.run(on_loop())
        assert store.on_loop == ["get_policy"] and len(store.calls) == 2


@pytest.mark.parametrize("url", ["/.well-known/openid-configuration", "/certs"])
def test_metadata_reads_the_key_ring_from_worker_threads(
    guarded: tuple[AsgiClient, ServiceState, LoopGuardedStore, Signer], url: str,
) -> None:
    """The key ring's first read (and a next key's takeover) goes to the store: never on the event loop."""
    client, _state, store, _signer = guarded
    r = client.get(url + API)
    assert r.status_code == 200, r.text
    assert "list_signing_keys" in {name for name, _thread in store.calls}
    assert store.on_loop == [], f"store calls on the event loop: {store.on_loop}"
