"""Live servers for the CLI tests: aad mode with the tests' admin token and shadow samples, and isolated
mode with a registered signer. Plain HTTP on loopback; the service fixtures (simulated platforms,
collateral, signers) are the service tests' own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from affidavit.cli import main
from tests.service.conftest import Inputs, Signers, inputs, signers, sim, sim_td  # noqa: F401
from tests.service.helpers import ADMIN_TOKEN, Server

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``affidavit ARGS`` in process: (exit status, stdout, stderr)."""

    def go(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return go


@pytest.fixture(scope="session")
def admin_token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "admin-token"
    path.write_text(ADMIN_TOKEN + "\n")
    return path


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[Server]:  # noqa: F811
    server = Server(tmp_path_factory.mktemp("cli-aad"), [*inputs.serve_args(), "--shadow-samples", "20"],
                    tls=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cli_isolated(
    tmp_path_factory: pytest.TempPathFactory, inputs: Inputs, signers: Signers  # noqa: F811
) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("cli-isolated")
    (base / "admin.pem").write_text(signers.admin.cert_pem)
    server = Server(base / "data", [*inputs.serve_args(), "--mode", "isolated",
                                    "--policy-signer-cert", str(base / "admin.pem")], tls=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
