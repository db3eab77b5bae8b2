"""Issue 10 point 8: secrets stay off the process table.

``--admin-token-file`` and ``--pcs-api-key-file`` (and ``AFFIDAVIT_ADMIN_TOKEN_FILE`` /
``AFFIDAVIT_PCS_API_KEY_FILE``) keep them out of ``ps``; workers get no secret in their environment or
command line, whichever way it was given (files: the operator's, or 0600 ones in ``<data-dir>/secrets``).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from affidavit.cli import build_parser
from affidavit.cli.serve import config_from_args
from affidavit.jose import b64url
from affidavit.service import ServiceConfig, ServiceError
from affidavit.service.config import CONFIG_ENV, load_secrets, read_secret, secrets_to_files
from affidavit.simulate import SimulatedPlatform
from tests.collateral.fake_pcs import FakePcs
from tests.service.conftest import EVIDENCE_TIME, EVIDENCE_TIME_ARG, Inputs
from tests.service.helpers import Server
from tests.service.test_workers import _started_workers

TOKEN = "admin-token-value-7f3c9d1e5b"
API_KEY = "pcs-api-key-value-0a8e2c4f6d"


def test_config_json_never_carries_a_secret(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path, admin_token=TOKEN, pcs_api_key=API_KEY)
    assert TOKEN not in config.to_json() and API_KEY not in config.to_json()
    handed = secrets_to_files(config)
    text = handed.to_json()
    assert TOKEN not in text and API_KEY not in text
    folder = tmp_path / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (handed.admin_token_file, handed.pcs_api_key_file):
        assert path is not None and path.parent == folder.resolve()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rebuilt = load_secrets(ServiceConfig.from_json(text))  # what a worker does
    assert (rebuilt.admin_token, rebuilt.pcs_api_key) == (TOKEN, API_KEY)


def test_secret_files_are_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "tok"
    good.write_text(f"  {TOKEN}\n")
    assert read_secret(good, "admin token") == TOKEN
    for bad in ("", "\n", "two\nlines", "x" * 5000):
        (tmp_path / "bad").write_text(bad)
        with pytest.raises(ServiceError) as info:
            read_secret(tmp_path / "bad", "admin token")
        assert info.value.code == "configuration"
    with pytest.raises(ServiceError):
        read_secret(tmp_path / "missing", "admin token")


def test_file_flags_and_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["serve", "--admin-token-file", "a.txt", "--pcs-api-key-file", "k.txt"])
    config = config_from_args(args)
    assert (config.admin_token_file, config.pcs_api_key_file) == (Path("a.txt"), Path("k.txt"))
    monkeypatch.setenv("AFFIDAVIT_ADMIN_TOKEN_FILE", str(tmp_path / "t"))
    monkeypatch.setenv("AFFIDAVIT_PCS_API_KEY_FILE", str(tmp_path / "k"))
    config = config_from_args(build_parser().parse_args(["serve"]))
    assert (config.admin_token_file, config.pcs_api_key_file) == (tmp_path / "t", tmp_path / "k")
    with pytest.raises(ServiceError, match="exclude"):
        config_from_args(build_parser().parse_args(["serve", "--admin-token", "x",
                                                    "--admin-token-file", "y"]))


@pytest.fixture
def pcs(sim: SimulatedPlatform) -> Iterator[FakePcs]:
    server = FakePcs()
    server.load(sim.collateral(now=EVIDENCE_TIME), "processor")
    server.start()
    yield server
    server.stop()


def _process_text(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()


def test_workers_see_no_secret_and_the_files_work(
    tmp_path: Path, inputs: Inputs, sim: SimulatedPlatform, pcs: FakePcs
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "pcs-key").write_text(API_KEY + "\n")
    args = ["--trust-root", str(inputs.sim_root), "--evidence-time", EVIDENCE_TIME_ARG, "--pcs-url", pcs.url,
            "--admin-token-file", str(tmp_path / "token"), "--pcs-api-key-file", str(tmp_path / "pcs-key"),
            "--workers", "2"]
    with Server(tmp_path / "data", args, tls=False) as server:
        assert server.proc is not None
        workers = _started_workers(server, 2)
        for pid in (server.proc.pid, *workers):
            text = _process_text(pid)
            assert TOKEN.encode() not in text and API_KEY.encode() not in text
        assert b"admin-token-file" in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/policies/SgxEnclave?api-version=2022-08-01", headers=auth).status_code == 200
            quote = sim.sgx_quote(mrenclave=b"\x01" * 32)
            r = c.post("/attest/SgxEnclave?api-version=2022-08-01", json={"quote": b64url(quote)})
            assert r.status_code == 200, r.text
        keys = {h.get("Ocp-Apim-Subscription-Key") for _p, _q, h in pcs.requests}
        assert keys == {API_KEY}  # the workers read the key from its file
        assert "in " + str(tmp_path / "token") in server.log()  # the banner says where the token is


def test_inline_secrets_do_not_reach_the_workers(tmp_path: Path, inputs: Inputs) -> None:
    server = Server(tmp_path / "data", [*inputs.serve_args()[:-2], "--workers", "2"], tls=False,
                    env={"AFFIDAVIT_ADMIN_TOKEN": TOKEN, "AFFIDAVIT_PCS_API_KEY": API_KEY})
    with server:
        assert server.proc is not None
        for pid in _started_workers(server, 2):
            text = _process_text(pid)
            assert TOKEN.encode() not in text and API_KEY.encode() not in text
            assert CONFIG_ENV.encode() in text  # the configuration does travel, without secrets
        with httpx.Client(base_url=server.url, timeout=30) as c:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/policies/SgxEnclave?api-version=2022-08-01", headers=auth).status_code == 200
        secret = tmp_path / "data" / "secrets" / "admin-token"
        assert secret.read_text().strip() == TOKEN and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not secret.exists()  # removed when the service stops
