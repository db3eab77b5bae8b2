"""The real SEV-SNP vectors (../shared/vectors/snp), one entry per expected.json case."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import VECTORS

SNP = VECTORS / "snp"


@dataclass(frozen=True)
class Case:
    set: str
    name: str
    base: Path
    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.set}/{self.name}"

    @property
    def report(self) -> bytes:
        return (self.base / self.raw["report"]).read_bytes()

    @property
    def vek(self) -> bytes:
        return (self.base / self.raw["vek"]).read_bytes()

    @property
    def chain(self) -> list[bytes]:
        return [(self.base / p).read_bytes() for p in self.raw["ca_certificates"]]

    @property
    def ark(self) -> bytes:
        return b"".join((self.base / p).read_bytes() for p in self.raw["trusted_ark"])

    @property
    def now(self) -> datetime:
        return parse_time(self.raw["verify_at"])

    @property
    def expected(self) -> dict[str, Any]:
        return dict(self.raw["expected"])


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def all_cases() -> list[Case]:
    cases = []
    for path in sorted(SNP.glob("*/expected.json")):
        data = json.loads(path.read_text())
        for raw in data.get("cases", []):
            cases.append(Case(data["set"], raw["name"], path.parent, raw))
    return cases


CASES = all_cases() if SNP.is_dir() else []
POSITIVE = [c for c in CASES if c.expected["verified"]]
NEGATIVE = [c for c in CASES if not c.expected["verified"]]
