"""Fixtures for the service tests: simulated platforms, a collateral tree, policy signers, live servers.

One evidence clock serves real and simulated evidence: the real Open Enclave report of the MAA recording
verifies against the Azure DCsv2 collateral of 2025-06 (``../shared/vectors``), and the simulated platforms
issue their collateral for the same instant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from affidavit.simulate import SimulatedPlatform
from tests.service.helpers import ADMIN_TOKEN, Server, Signer, make_signer

EVIDENCE_TIME = datetime(2025, 6, 10, tzinfo=UTC)
EVIDENCE_TIME_ARG = "2025-06-10T00:00:00Z"
OE_SET = "sgx/azure-maa-openenclave-claims"
AZURE_COLLATERAL = "sgx/azure-dcsv2-sgx-00906ed50000-2025-05/collateral_2025-05_standard.json"


@dataclass(frozen=True)
class Inputs:
    collateral_dir: Path
    intel_root: Path
    sim_root: Path
    oe_report: bytes
    oe_runtime: bytes

    def serve_args(self) -> list[str]:
        return [
            "--collateral-dir", str(self.collateral_dir),
            "--trust-root", str(self.intel_root),
            "--trust-root", str(self.sim_root),
            "--evidence-time", EVIDENCE_TIME_ARG,
            "--admin-token", ADMIN_TOKEN,
        ]


@pytest.fixture(scope="session")
def sim() -> SimulatedPlatform:
    return SimulatedPlatform.create(fmspc="00A0F0F00000", ca="processor", now=EVIDENCE_TIME, seed="svc")


@pytest.fixture(scope="session")
def sim_td(sim: SimulatedPlatform) -> SimulatedPlatform:
    return SimulatedPlatform.create(
        fmspc="00B0F0F00000", ca="platform", tee="tdx", now=EVIDENCE_TIME, pki=sim.pki, name="td-0"
    )


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory, vectors: Path, sim: SimulatedPlatform,
           sim_td: SimulatedPlatform) -> Inputs:
    root = tmp_path_factory.mktemp("service-inputs")
    coll = root / "collateral"
    coll.mkdir()
    (coll / "sim-sgx.json").write_text(json.dumps(sim.collateral(now=EVIDENCE_TIME)))
    (coll / "sim-tdx.json").write_text(json.dumps(sim_td.collateral(now=EVIDENCE_TIME)))
    (coll / "azure-dcsv2.json").symlink_to(vectors / AZURE_COLLATERAL)  # read in place, not copied
    (root / "sim-root.pem").write_bytes(sim.root_pem)
    return Inputs(
        collateral_dir=coll,
        intel_root=vectors / "sgx" / "intel-sgx-root-ca.pem",
        sim_root=root / "sim-root.pem",
        oe_report=(vectors / OE_SET / "maa2022_oe_report.bin").read_bytes(),
        oe_runtime=(vectors / OE_SET / "maa2022_runtime_data.bin").read_bytes(),
    )


@dataclass(frozen=True)
class Signers:
    admin: Signer  # registered at start (isolated mode)
    second: Signer  # added and removed by the tests
    stranger: Signer  # never registered
    expired: Signer  # registered at start, validity over


@pytest.fixture(scope="session")
def signers() -> Signers:
    now = datetime.now(UTC)
    return Signers(
        admin=make_signer("Affidavit test policy signer"),
        second=make_signer("Affidavit second signer"),
        stranger=make_signer("Not registered"),
        expired=make_signer(
            "Expired signer", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        ),
    )


def _running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aad_server(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Iterator[Server]:
    yield from _running(Server(tmp_path_factory.mktemp("aad"), inputs.serve_args()))


@pytest.fixture(scope="session")
def isolated_server(
    tmp_path_factory: pytest.TempPathFactory, inputs: Inputs, signers: Signers
) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("isolated")
    args = inputs.serve_args() + ["--mode", "isolated"]
    for name, signer in (("admin", signers.admin), ("expired", signers.expired)):
        (base / f"{name}.pem").write_text(signer.cert_pem)
        args += ["--policy-signer-cert", str(base / f"{name}.pem")]
    yield from _running(Server(base / "data", args))
