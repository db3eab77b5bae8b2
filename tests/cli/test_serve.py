"""``affidavit serve --port 0``: the OS picks the port, the server keeps its socket and says which port
it got, and the issuer it publishes carries that port (no free-port race in tests or in deployments)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service.helpers import Server


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_zero_is_reported_and_published(tmp_path: Path, workers: str) -> None:
    with Server(tmp_path, ("--admin-token", "t", "--workers", workers), tls=False) as server:
        assert server.port != 0
        with server.client() as c:
            meta = c.get("/.well-known/openid-configuration").json()
        assert meta["issuer"] == server.url
        assert meta["jwks_uri"] == server.url + "/certs"


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_an_idle_kept_alive_client_does_not_hold_the_shutdown(tmp_path: Path, tls: bool) -> None:
    """A pooled client that never reads again (every SDK keeps its connection) used to hold SIGTERM for
    the whole graceful timeout (5 s) over TLS, waiting for a close_notify that never comes."""
    server = Server(tmp_path, ("--admin-token", "t"), tls=tls).start()
    with server.client() as client:
        assert client.get("/.well-known/openid-configuration").status_code == 200
        start = time.monotonic()
        server.stop()
        took = time.monotonic() - start
    assert took < 2.0, f"shutdown took {took:.1f} s with an idle keep-alive connection open"
