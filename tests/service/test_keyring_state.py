"""A server's key ring: a next key is published at once and takes over at its time, without waiting for
the reload interval; a server cannot start when the current key is out of its reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from affidavit.service import ServiceConfig, ServiceError
from affidavit.service.state import build_state
from affidavit.store import rotate_keyring

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_next_key_takes_over_at_its_time(tmp_path: Path) -> None:
    now = [T0]
    config = ServiceConfig(data_dir=tmp_path, admin_token="x", key_reload_seconds=3600)
    state = build_state(config, clock=lambda: now[0])
    try:
        first = state.keyring().current.kid
        rotate_keyring(state.store, state.issuer, now=T0, kek=state.kek, delay=timedelta(minutes=10))
        state._keyring.refresh()  # a reload (in the background in service): the next key is published, unused
        ring = state.keyring()
        (upcoming,) = ring.next
        assert ring.current.kid == first and [k.kid for k in ring.published(T0)] == [first, upcoming.key.kid]
        assert upcoming.key.signer is not None  # opened ahead of its turn
        now[0] = T0 + timedelta(minutes=10)  # no reload due (3600 s), but the switch time has come
        assert state.keyring().current.kid == upcoming.key.kid
        assert [k.kid for k in state.keyring().published(now[0])] == [upcoming.key.kid, first]
    finally:
        state.close()


def test_a_server_without_the_kek_of_its_keys_does_not_start(tmp_path: Path) -> None:
    state = build_state(ServiceConfig(data_dir=tmp_path / "a", admin_token="x"))
    url = state.config.store_url
    state.close()
    (tmp_path / "other-kek").write_text("77" * 32)
    with pytest.raises(ServiceError, match="sealed under key-encryption key") as err:
        build_state(ServiceConfig(data_dir=tmp_path / "b", database_url=url, admin_token="x",
                                  key_encryption_key_file=tmp_path / "other-kek"))
    assert err.value.code == "configuration"
