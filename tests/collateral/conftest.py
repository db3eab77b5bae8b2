"""Fixtures for the collateral tests: real vector collateral, the Intel root key, a fake PCS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.collateral.fake_pcs import FakePcs

AZURE = "sgx/azure-dcsv2-sgx-00906ed50000-2025-05"
AZURE_AT = datetime(2025, 6, 10, tzinfo=UTC)
PHALA_TDX = "sgx/phala-tdx-v4-b0c06f000000-2025-06"
PHALA_SGX = "sgx/phala-sgx-v3-00a067110000-2025-06"
PHALA_AT = datetime(2025, 7, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Platform:
    """What ``platform_of(quote)`` returns, for tests that do not start from a quote."""

    fmspc: str
    ca: str
    tee: str = "sgx"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def anchors(vectors: Path) -> list[ec.EllipticCurvePublicKey]:
    root = x509.load_pem_x509_certificate((vectors / "sgx/intel-sgx-root-ca.pem").read_bytes())
    key = root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return [key]


@pytest.fixture(scope="session")
def standard(vectors: Path) -> dict[str, Any]:
    """Azure DCsv2 (FMSPC 00906ED50000, processor CA), standard update: tcbEvaluationDataNumber 17."""
    return read_json(vectors / AZURE / "collateral_2025-05_standard.json")


@pytest.fixture(scope="session")
def early(vectors: Path) -> dict[str, Any]:
    """The same platform's early update: tcbEvaluationDataNumber 19, same validity window."""
    return read_json(vectors / AZURE / "collateral_2025-05_early.json")


@pytest.fixture
def pcs(standard: dict[str, Any]) -> Iterator[FakePcs]:
    server = FakePcs()
    server.load(standard, "processor")
    server.start()
    yield server
    server.stop()
