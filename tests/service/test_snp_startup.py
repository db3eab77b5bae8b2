"""The SevSnpVm verifier is built when the service starts: a bad ``--snp-trust-root`` stops ``affidavit
serve`` with one line naming the flag and the file and a non-zero exit, instead of failing the first
SevSnpVm request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from affidavit.service import ServiceConfig, ServiceError
from affidavit.service.snp_route import load_trust
from affidavit.service.state import build_state
from tests.conftest import ROOT, VECTORS
from tests.service.helpers import ADMIN_TOKEN

MILAN = VECTORS / "snp" / "amd-roots" / "milan"


def _bad_roots(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error says about it)."""
    not_pem = tmp / "not-pem.pem"
    not_pem.write_bytes(b"not a certificate\n")
    garbage = tmp / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    ask_only = tmp / "ask-only.pem"
    ask_only.write_bytes((MILAN / "ask.pem").read_bytes())
    return {
        "missing": (tmp / "missing.pem", "cannot read it"),
        "not-pem": (not_pem, "no PEM certificate"),
        "garbage": (garbage, "not one DER SEQUENCE"),
        "no-ark": (ask_only, "no ARK certificate"),
    }


@pytest.mark.parametrize("case", ["missing", "not-pem", "garbage", "no-ark"])
def test_build_state_refuses_a_bad_trust_root(tmp_path: Path, case: str) -> None:
    path, says = _bad_roots(tmp_path)[case]
    config = ServiceConfig(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN,
                           extra={"snp_trust_roots": [str(path)], "snp_kds_url": "none"})
    with pytest.raises(ServiceError) as caught:
        build_state(config)
    assert caught.value.code == "configuration"
    assert f"--snp-trust-root {path}" in caught.value.message and says in caught.value.message


def test_good_roots_load() -> None:
    trust = load_trust([str(MILAN / "ark.pem"), str(MILAN / "ask.pem")])
    assert set(trust.arks) == {"Milan"}
    assert set(load_trust([]).arks) == {"Milan", "Genoa", "Turin"}  # the shipped ones


def test_serve_exits_with_one_line(tmp_path: Path) -> None:
    """The real command: exit 1 before listening, one ``error:`` line on stderr, no traceback."""
    path, says = _bad_roots(tmp_path)["no-ark"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-m", "affidavit", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--admin-token", ADMIN_TOKEN, "--kds-url", "none",
         "--snp-trust-root", str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: configuration: --snp-trust-root") and says in lines[0]
    assert "Traceback" not in done.stderr and "Listening" not in done.stdout
