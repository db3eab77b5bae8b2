from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest

from affidavit.store import (
    KeyEncryptionKey,
    Store,
    StoreError,
    load_keyring,
    load_or_create_keyring,
    open_store,
    rotate_keyring,
    thumbprint,
    to_stored,
)
from affidavit.tokens import SigningKey, jwks

ISSUER = "https://affidavit.test"
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEK = KeyEncryptionKey.generate()
NOW = timedelta(0)  # rotation delay of an emergency rotation: the new key is current at once


def test_certificates(store: Store) -> None:
    assert store.list_certificates() == []
    assert store.add_certificate(b"one", actor="a") is True
    assert store.add_certificate(b"two", actor="a") is True
    assert store.add_certificate(b"one", actor="b") is False
    assert store.list_certificates() == [b"one", b"two"]
    assert store.remove_certificate(b"one", actor="c") is True
    assert store.remove_certificate(b"one", actor="c") is False
    assert store.list_certificates() == [b"two"]
    hist = store.history("certificate")
    assert [(c.subject, c.action, c.actor) for c in hist] == [
        (thumbprint(b"one"), "add", "a"),
        (thumbprint(b"two"), "add", "a"),
        (thumbprint(b"one"), "remove", "c"),
    ]


def test_seed_certificates_only_once(store: Store) -> None:
    assert store.seed_certificates([b"a", b"b", b"a"], actor="config") == 2
    assert store.seed_certificates([b"c"], actor="config") == 0
    assert store.list_certificates() == [b"a", b"b"]  # in the configured order


def test_first_start_creates_one_key_and_reloads_it(db_url: str) -> None:
    with open_store(db_url) as s:
        ring = load_or_create_keyring(s, ISSUER, now=T0, kek=KEK)
        again = load_or_create_keyring(s, ISSUER, now=T0 + HOUR, kek=KEK)
        assert again.current.kid == ring.current.kid
        assert again.current.created_at == T0
        assert [k.kid for k in s.list_signing_keys()] == [ring.current.kid]


def test_concurrent_first_start_agrees_on_one_key(db_url: str) -> None:
    n = 4
    barrier = threading.Barrier(n)
    kids: list[str] = []
    errors: list[BaseException] = []

    def server() -> None:
        try:
            with open_store(db_url) as s:
                barrier.wait(10)
                ring = load_or_create_keyring(s, ISSUER, now=datetime.now(UTC), kek=KEK)
                kids.append(ring.current.kid)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=server) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(kids) == n and len(set(kids)) == 1
    with open_store(db_url) as s:
        assert [k.kid for k in s.list_signing_keys()] == kids[:1]


def test_one_current_key_is_enforced(store: Store) -> None:
    a = to_stored(SigningKey.generate(ISSUER, now=T0), KEK)
    b = to_stored(SigningKey.generate(ISSUER, now=T0), KEK)
    store.add_signing_key(a)
    with pytest.raises(StoreError) as err:
        store.add_signing_key(b)
    assert err.value.code == "conflict"
    with pytest.raises(StoreError):
        store.add_signing_key(dataclasses.replace(a, retired_at=T0))  # duplicate kid
    assert [k.kid for k in store.list_signing_keys()] == [a.kid]
    assert store.ensure_current_signing_key(b) == a
    # a retired key can sit beside the current one
    store.add_signing_key(dataclasses.replace(b, created_at=T0 - HOUR, current_at=T0 - HOUR, retired_at=T0))
    assert store.retire_signing_key(a.kid, T0 + HOUR) is True
    assert store.retire_signing_key(a.kid, T0 + HOUR) is False
    assert store.current_signing_key(T0 + 2 * HOUR) is None
    assert store.delete_signing_key(b.kid) is True and store.delete_signing_key(b.kid) is False


def test_rotation_keeps_old_key_published_then_drops_it(db_url: str) -> None:
    with open_store(db_url) as server_a, open_store(db_url) as server_b:
        first = load_or_create_keyring(server_a, ISSUER, now=T0, kek=KEK)
        rotated_at = T0 + 2 * HOUR
        ring = rotate_keyring(server_b, ISSUER, 2048, now=rotated_at, kek=KEK, delay=NOW)
        assert ring.current.kid != first.current.kid
        # both servers publish the same JWKS: new key first, old key still there for its tokens
        for s in (server_a, server_b):
            loaded = load_keyring(s, now=rotated_at + 7 * HOUR)
            assert loaded is not None
            assert [k["kid"] for k in jwks(loaded.published(rotated_at + 7 * HOUR))["keys"]] == [
                ring.current.kid, first.current.kid,
            ]
        later = rotated_at + 8 * HOUR
        loaded = load_keyring(server_a, now=later)
        assert loaded is not None and [k.kid for k in loaded.published(later)] == [ring.current.kid]
        assert len(server_a.list_signing_keys()) == 2  # not yet deleted: the next rotation does that
        third = rotate_keyring(server_a, ISSUER, now=later + HOUR, kek=KEK, delay=NOW)
        kids = {k.kid for k in server_b.list_signing_keys()}
        assert kids == {third.current.kid, ring.current.kid}
        actions = [(c.subject, c.action) for c in server_b.history("key")]
        assert (first.current.kid, "delete") in actions and (first.current.kid, "retire") in actions


def test_key_round_trips_through_the_store(store: Store) -> None:
    ring = load_or_create_keyring(store, ISSUER, 3072, now=T0, kek=KEK)
    loaded = load_keyring(store, now=T0)
    assert loaded is not None
    assert ring.current.bits == 3072
    assert loaded.current.jwk == ring.current.jwk
    assert loaded.current.created_at == T0


def test_reload_reuses_parsed_keys(store: Store) -> None:
    ring = load_or_create_keyring(store, ISSUER, now=T0, kek=KEK)
    again = load_or_create_keyring(store, ISSUER, now=T0, reuse=ring, kek=KEK)
    assert again.current is ring.current
    rotated = rotate_keyring(store, ISSUER, now=T0 + HOUR, kek=KEK, delay=NOW)
    reloaded = load_keyring(store, now=T0 + HOUR, reuse=ring)
    assert reloaded is not None and reloaded.current.kid == rotated.current.kid
    assert reloaded.retired[0].key is ring.current


SERVER_START = """
import sys, time
from datetime import UTC, datetime
from affidavit.store import KeyEncryptionKey, load_or_create_keyring, open_store
kek = KeyEncryptionKey(bytes(32))
with open_store(sys.argv[1]) as s:
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
    print(load_or_create_keyring(s, "https://affidavit.test", now=datetime.now(UTC), kek=kek).current.kid)
"""


def test_servers_starting_together_in_separate_processes_share_one_key(db_url: str) -> None:
    import subprocess
    import sys
    import time

    start_at = str(time.time() + 3.0)
    procs = [
        subprocess.Popen([sys.executable, "-c", SERVER_START, db_url, start_at], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    kids = {out.strip() for out, _ in outputs}
    assert len(kids) == 1
    with open_store(db_url) as s:
        assert [k.kid for k in s.list_signing_keys()] == list(kids)


def test_legacy_plaintext_keys_are_sealed_in_place(store: Store) -> None:
    """A row as Affidavit wrote it before keys were sealed: PEM in ``pem``, no certificate column."""
    from affidavit.store import StoredKey, seal_legacy_keys

    legacy = SigningKey.generate(ISSUER, now=T0)
    store.add_signing_key(StoredKey(legacy.kid, b"", T0, T0, legacy_pem=legacy.to_pem()))
    published = load_keyring(store, now=T0)  # readable before the first start seals it
    assert published is not None and published.current.kid == legacy.kid
    assert seal_legacy_keys(store, KEK) == [legacy.kid]
    assert seal_legacy_keys(store, KEK) == []  # once
    (row,) = store.list_signing_keys()
    assert row.legacy_pem is None and row.sealed is not None and row.kek_id == KEK.id
    assert row.certificate == legacy.certificate_der
    ring = load_keyring(store, now=T0 + HOUR, kek=KEK, require_signer=True)
    assert ring is not None and ring.current.kid == legacy.kid
    assert ring.current.sign(b"x") == legacy.sign(b"x")  # RSA PKCS#1 v1.5 is deterministic
    with pytest.raises(StoreError, match="cannot open without a key-encryption key") as err:
        load_keyring(store, now=T0, require_signer=True)
    assert err.value.code == "no_signer"
