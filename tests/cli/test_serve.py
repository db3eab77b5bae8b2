"""``affidavit serve --port 0``: the OS picks the port, the server keeps its socket and says which port
it got, and the issuer it publishes carries that port (no free-port race in tests or in deployments)."""

from __future__ import annotations

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
