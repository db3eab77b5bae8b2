from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from affidavit.store import Store, StoredPolicy, open_store, policy_hash
from affidavit.store.store import Store as StoreClass

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"


def test_unset_policy_means_default(store: Store) -> None:
    assert store.get_policy("SgxEnclave") is None
    assert store.policy_history("SgxEnclave") == []


def test_set_get_reset_with_history(store: Store) -> None:
    cert = bytes(range(256)) * 3
    stored = store.set_policy("SgxEnclave", POLICY, jws="h.p.s", signer_cert_der=cert, actor="alice", at=T0)
    assert stored == StoredPolicy("SgxEnclave", POLICY, "h.p.s", cert, policy_hash(POLICY), T0)
    assert store.get_policy("SgxEnclave") == stored
    assert store.get_policy("OpenEnclave") is None  # types are independent

    text2 = "version=1.0; authorizationrules{ => deny(); }; // ü"
    t1 = T0 + timedelta(minutes=5, microseconds=7)
    store.set_policy("SgxEnclave", text2, jws="a.b.", signer_cert_der=None, actor="bob", at=t1)
    got = store.get_policy("SgxEnclave")
    assert got is not None and got.text == text2 and got.signer_cert_der is None and got.updated_at == t1

    assert store.reset_policy("SgxEnclave", actor="carol", at=T0 + timedelta(hours=1)) is True
    assert store.get_policy("SgxEnclave") is None
    assert store.reset_policy("SgxEnclave", actor="carol", at=T0 + timedelta(hours=2)) is False

    history = store.policy_history("SgxEnclave")
    assert [(h.action, h.hash, h.actor, h.at) for h in history] == [
        ("set", policy_hash(POLICY), "alice", T0),
        ("set", policy_hash(text2), "bob", t1),
        ("reset", None, "carol", T0 + timedelta(hours=1)),
        ("reset", None, "carol", T0 + timedelta(hours=2)),
    ]


def test_two_stores_on_one_database_agree(db_url: str) -> None:
    with open_store(db_url) as a, open_store(db_url) as b:
        a.set_policy("Tpm", POLICY, jws="x.y.", signer_cert_der=None, actor="a")
        assert b.get_policy("Tpm") == a.get_policy("Tpm")
        b.reset_policy("Tpm", actor="b")
        assert a.get_policy("Tpm") is None
        assert [c.actor for c in a.policy_history("Tpm")] == ["a", "b"]


class Injected(Exception):
    pass


def _fail(*args: object, **kwargs: object) -> None:
    raise Injected("history write failed")


def test_failed_change_leaves_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history row is written after the data row in the same transaction; failing it must undo both."""
    first = store.set_policy("SgxEnclave", POLICY, jws="1.1.", signer_cert_der=None, actor="a", at=T0)
    store.add_certificate(b"cert-1", actor="a")
    monkeypatch.setattr(StoreClass, "_record", _fail)
    with pytest.raises(Injected):
        store.set_policy("SgxEnclave", "other", jws="2.2.", signer_cert_der=b"x", actor="evil")
    with pytest.raises(Injected):
        store.set_policy("OpenEnclave", "other", jws="2.2.", signer_cert_der=None, actor="evil")
    with pytest.raises(Injected):
        store.reset_policy("SgxEnclave", actor="evil")
    with pytest.raises(Injected):
        store.add_certificate(b"cert-2", actor="evil")
    with pytest.raises(Injected):
        store.remove_certificate(b"cert-1", actor="evil")
    monkeypatch.undo()
    assert store.get_policy("SgxEnclave") == first
    assert store.get_policy("OpenEnclave") is None
    assert store.list_certificates() == [b"cert-1"]
    assert [c.actor for c in store.history()] == ["a", "a"]
    # and the store still works afterwards
    store.set_policy("SgxEnclave", "v2", jws="3.3.", signer_cert_der=None, actor="b")
    assert store.get_policy("SgxEnclave").text == "v2"  # type: ignore[union-attr]


CRASH = textwrap.dedent(
    """
    import os, sys
    from affidavit.store import open_store
    from affidavit.store.store import Store
    def crash(*a, **k):
        os._exit(3)  # the process dies between the policy write and the commit
    s = open_store(sys.argv[1])
    Store._record = crash
    s.set_policy("SgxEnclave", "half-written", jws="c.c.", signer_cert_der=None, actor="crash")
    """
)


def test_crash_mid_change_leaves_old_policy(store: Store, db_url: str) -> None:
    before = store.set_policy("SgxEnclave", POLICY, jws="1.1.", signer_cert_der=None, actor="a", at=T0)
    proc = subprocess.run([sys.executable, "-c", CRASH, db_url], capture_output=True, timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()
    with open_store(db_url) as fresh:
        assert fresh.get_policy("SgxEnclave") == before
        assert [c.actor for c in fresh.history()] == ["a"]
        fresh.set_policy("SgxEnclave", "after", jws="2.2.", signer_cert_der=None, actor="b")  # not locked


def test_concurrent_writers(db_url: str) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with open_store(db_url) as s:
                for i in range(10):
                    text = f"p{n}-{i}"
                    s.set_policy("SgxEnclave", text, jws=f"{n}.{i}.", signer_cert_der=None, actor=f"w{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with open_store(db_url) as s:
        history = s.policy_history("SgxEnclave")
        assert len(history) == 40
        last = history[-1]
        current = s.get_policy("SgxEnclave")
        assert current is not None and current.hash == last.hash
