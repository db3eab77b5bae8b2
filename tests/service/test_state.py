"""The worker state keeps the event loop free: the key ring is refreshed in the background."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from affidavit.service import ServiceConfig
from affidavit.service.state import GIL_SWITCH_INTERVAL, build_state


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



def test_a_started_worker_has_paid_its_one_time_costs(tmp_path: Path) -> None:
    """Before a worker's app serves: anyio's asyncio backend is loaded (the first ``run_in_threadpool``
    imports it: 10-40 ms on the loop, which bench/attest.py saw as a 40 ms stall at the first key-ring
    refresh, 15 s in); what startup built is frozen out of the collector's passes (generation-1 passes over
    it took 1.3-3.8 ms on the loop); the GIL switch interval is short (the loop waited up to 5 ms for the
    GIL while the signing thread ran Python). A fresh interpreter, as a worker is: no other test has
    imported anyio's backend or frozen anything in it."""
    import os
    import subprocess
    import sys

    from affidavit.service.config import CONFIG_ENV

    script = """
import asyncio, gc, sys
from affidavit.service.app import app_from_environment
app = app_from_environment()
async def run():
    async with app.router.lifespan_context(app):
        return "anyio._backends._asyncio" in sys.modules, gc.get_freeze_count(), sys.getswitchinterval()
print(*asyncio.run(run()))
"""
    config = ServiceConfig(data_dir=tmp_path, admin_token="x", pcs_url=None)
    env = {**os.environ, CONFIG_ENV: config.to_json()}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    loaded, frozen, switch = out.stdout.split()
    assert loaded == "True"
    assert int(frozen) > 10_000
    assert float(switch) == GIL_SWITCH_INTERVAL < 0.005  # CPython's default: 5 ms
