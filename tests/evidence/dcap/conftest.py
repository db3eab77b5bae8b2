"""Fixtures for the DCAP tests: the real vector cases, one shared verifier (its caches keep tests fast)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from affidavit.evidence.dcap import DcapVerifier, SgxCollateral, TrustAnchors, load_collateral

_VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "vectors" / "sgx"


@dataclass(frozen=True)
class Case:
    set: str
    name: str
    quote_path: Path
    collateral_path: Path
    at: datetime
    expected: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.set}/{self.name}"

    def quote(self) -> bytes:
        return self.quote_path.read_bytes()

    def collateral(self) -> SgxCollateral:
        return load_collateral(self.collateral_path.read_text())


def all_cases(root: Path) -> list[Case]:
    cases = []
    for f in sorted(root.glob("*/expected.json")):
        doc = json.loads(f.read_text())
        for c in doc.get("cases", []):
            cases.append(
                Case(
                    set=f.parent.name,
                    name=c["name"],
                    quote_path=f.parent / c["quote"],
                    collateral_path=f.parent / c["collateral"],
                    at=datetime.fromisoformat(c["verify_at"]),
                    expected=c["expected"],
                )
            )
    return cases


def vector_cases() -> list[Case]:
    """Cases for parametrisation (collected before fixtures exist, so read the same path as `vectors`)."""
    import os

    root = Path(os.environ["AFFIDAVIT_VECTORS"]) / "sgx" if "AFFIDAVIT_VECTORS" in os.environ else _VECTORS
    return all_cases(root)


@pytest.fixture(scope="session")
def sgx_vectors(vectors: Path) -> Path:
    return vectors / "sgx"


@pytest.fixture(scope="session")
def verifier() -> DcapVerifier:
    return DcapVerifier(TrustAnchors.intel())

from tests.simulated_platforms import (  # noqa: E402, F401 -- fixtures of tests/evidence/dcap/test_simulated.py
    now,
    sgx_collateral,
    sgx_platform,
    sgx_verifier,
    tdx_collateral,
    tdx_platform,
    tdx_verifier,
)
