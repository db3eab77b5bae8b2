"""Issue 10 in the store (SQLite and PostgreSQL): who did it (caller and signer), the last signer that
cannot be removed even by concurrent removals, and the TPM challenge ledger shared by every server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from affidavit.store import Store, StoreError, open_store
from affidavit.store.backend import connect
from affidavit.store.schema import MIGRATIONS
from affidavit.store.store import LastCertificate


def test_history_records_caller_and_signer_apart(store: Store) -> None:
    store.set_policy("Tpm", "p", jws="a.b.c", signer_cert_der=b"c", actor="signer:AB CN=x",
                     caller="oidc:https://idp#alice", signer="AB CN=x")
    store.reset_policy("Tpm", actor="admin-token@127.0.0.1", caller="admin-token")
    store.add_certificate(b"cert", actor="signer:CD CN=y", caller="admin-token", signer="CD CN=y")
    rows = store.history()
    assert [(r.caller, r.signer) for r in rows] == [
        ("oidc:https://idp#alice", "AB CN=x"), ("admin-token", None), ("admin-token", "CD CN=y")]
    assert [(h.caller, h.signer) for h in store.policy_history("Tpm")] == [
        ("oidc:https://idp#alice", "AB CN=x"), ("admin-token", None)]


def test_schema_1_databases_migrate_and_keep_their_history(db_url: str) -> None:
    backend = connect(db_url)
    with backend.write() as cur:  # a database as the previous release left it
        cur.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for sql in MIGRATIONS[0]:
            cur.execute(sql.format(**backend.types))
        cur.execute("INSERT INTO schema_version (version) VALUES (1)")
        cur.execute("INSERT INTO history (kind, subject, action, hash, actor, at) VALUES "
                    "('policy', 'Tpm', 'reset', NULL, 'old', '2025-01-01T00:00:00.000000Z')")
    backend.close()
    with open_store(db_url) as s:
        (old,) = s.history()
        assert (old.actor, old.caller, old.signer) == ("old", None, None)
        assert s.consume_tpm_challenge(b"c" * 16, expires_at=2, now=1)


def _race(store_a: Store, store_b: Store, work: Callable[[Store], object]) -> list[object]:
    """Run ``work`` on two stores at once (two servers on one database), results in order a, b."""
    results: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int, s: Store) -> None:
        barrier.wait()
        try:
            results[i] = work(s)
        except StoreError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate((store_a, store_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("attempt", range(5))
def test_two_concurrent_removals_never_leave_no_signer(db_url: str, attempt: int) -> None:
    with open_store(db_url) as a, open_store(db_url) as b:
        a.seed_certificates([b"A", b"B"], actor="configuration")
        # A removes B on one server while B removes A on another.
        results = _race(a, b, lambda s: s.remove_certificate(b"B" if s is a else b"A", actor="x",
                                                             keep_last=True))
        assert sorted(type(r).__name__ for r in results) == ["LastCertificate", "bool"]
        assert len(a.list_certificates()) == 1


def test_the_last_certificate_stays(store: Store) -> None:
    store.seed_certificates([b"only"], actor="configuration")
    with pytest.raises(LastCertificate):
        store.remove_certificate(b"only", actor="x", keep_last=True)
    assert store.remove_certificate(b"absent", actor="x", keep_last=True) is False
    assert store.list_certificates() == [b"only"]


def test_a_challenge_is_consumed_once_across_stores(db_url: str) -> None:
    with open_store(db_url) as a, open_store(db_url) as b:
        challenge = b"\x01" * 16
        assert a.consume_tpm_challenge(challenge, expires_at=1300, now=1000)
        assert not b.consume_tpm_challenge(challenge, expires_at=1300, now=1001)
        assert not a.consume_tpm_challenge(challenge, expires_at=1300, now=1299)
        # Concurrent use of a fresh challenge: exactly one wins.
        fresh = b"\x02" * 16
        results = _race(a, b, lambda s: s.consume_tpm_challenge(fresh, expires_at=1300, now=1000))
        assert sorted(results) == [False, True]  # type: ignore[type-var]


def test_the_ledger_is_never_flushed_before_expiry(store: Store) -> None:
    victim = b"\xee" * 16
    assert store.consume_tpm_challenge(victim, expires_at=1300, now=1000)
    for i in range(300):  # an attacker's flood of fresh challenges
        store.consume_tpm_challenge(i.to_bytes(16, "big"), expires_at=1300, now=1000)
    assert not store.consume_tpm_challenge(victim, expires_at=1300, now=1200)
    # Once expired (its service_context no longer opens), the row goes on the next use.
    assert store.consume_tpm_challenge(b"\xaa" * 16, expires_at=1700, now=1400)
    assert store.tpm_challenges_held() == 1
