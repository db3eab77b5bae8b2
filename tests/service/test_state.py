"""The worker state keeps the event loop free: the key ring is refreshed in the background."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from affidavit.service import ServiceConfig
from affidavit.service.state import build_state


def test_keyring_refreshes_in_the_background(tmp_path: Path) -> None:
    from affidavit.store import rotate_keyring

    config = ServiceConfig(data_dir=tmp_path, admin_token="x", pcs_url=None, key_reload_seconds=0.2)
    state = build_state(config)
    before = state.keyring().current.kid

    async def run() -> str:
        await state.start()
        try:
            # delay=0: the new key signs at once (a later next key is the ring's valid_until refresh)
            rotate_keyring(state.store, issuer=state.issuer, bits=2048, now=state.clock(), kek=state.kek,
                           delay=timedelta(0))
            for _ in range(50):
                await asyncio.sleep(0.05)
                if state._keyring.peek().current.kid != before:  # read without calling keyring()
                    break
            return str(state._keyring.peek().current.kid)
        finally:
            await state.aclose()

    assert asyncio.run(run()) != before


def test_every_registered_type_has_its_verifier_at_start(tmp_path: Path) -> None:
    from affidavit.attestation_types import all_types
    from affidavit.evidence.contract import EvidenceVerifier

    state = build_state(ServiceConfig(data_dir=tmp_path, admin_token="x", pcs_url=None))
    try:
        for entry in all_types():
            assert isinstance(state.evidence_verifier(entry.name), EvidenceVerifier), entry.name
    finally:
        state.close()
