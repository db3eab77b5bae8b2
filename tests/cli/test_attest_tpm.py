"""End to end: swtpm replaying a real boot log -> ``affidavit attest tpm`` -> service -> token.

The second run sends the same log with one event's data altered (its digests untouched, so the PCRs still
replay): the service must refuse it, since event data that its digest does not cover is forged data.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from affidavit.cli.attest import add_tpm_arguments as add_arguments
from affidavit.cli.attest import run_tpm as run
from affidavit.client import ServiceRejected
from affidavit.evidence.tpm import parse_event_log
from affidavit.simulate.swtpm import AkCertificateAuthority, Swtpm
from tests.service.helpers import Server, booted_tpm, jwt_body, tpm_server

LOG = "tpm/keylime/binary_bios_measurements-secureboot"
SECURE_BOOT_POLICY = """version=1.2;
authorizationrules {
    c:[type=="aikValidated", value==true] && c2:[type=="secureBootEnabled", value==true] => permit();
};
issuancerules {
    c:[type=="secureBootEnabled"] => issue(type="SecureBootEnabled", value=c.value);
    c:[type=="aikValidated"] => issue(type="AIKPresent", value=c.value);
};
"""


@dataclass(frozen=True)
class Setup:
    tpm: Swtpm
    service: Server
    log_path: Path
    ak_cert: Path
    work: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("tpm-e2e")
    log_path = vectors / LOG
    log = log_path.read_bytes()
    ca = AkCertificateAuthority.create()
    with booted_tpm(work, log, ca) as booted:
        ak_cert = work / "ak-cert.der"
        ak_cert.write_bytes(booted.ak.certificate or b"")
        # The AK CA reaches the service as the data-directory trust file (the route tests use the flag).
        (work / "service").mkdir()
        (work / "service" / "tpm-aik-roots.pem").write_bytes(ca.pem)
        with tpm_server(work / "service") as service:
            service.put_policy("Tpm", SECURE_BOOT_POLICY)
            yield Setup(booted.tpm, service, log_path, ak_cert, work)


def _argv(setup: Setup, *extra: str) -> list[str]:
    return ["--url", setup.service.url, "--tcti", setup.tpm.tcti, "--ca-file", setup.service.ca_file,
            "--ak-cert", str(setup.ak_cert), *extra]


def _args(setup: Setup, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(_argv(setup, *extra))


def test_cli_attests_a_replayed_real_boot_log(setup: Setup) -> None:
    from affidavit.cli import main

    out = setup.work / "token.jwt"
    argv = _argv(setup, "--eventlog", str(setup.log_path), "--out", str(out), "--rp-data", "hello")
    assert main(["attest", "tpm", *argv]) == 0
    claims = jwt_body(out.read_text().strip())
    assert claims["aikValidated"] is True and claims["secureBootEnabled"] is True
    assert claims["x-ms-policy"] == {"SecureBootEnabled": True, "AIKPresent": True}
    assert claims["x-ms-attestation-type"] == "tpm" and claims["tpmVersion"] == 2
    assert claims["rp_data"] == claims["nonce"] == "aGVsbG8"
    assert claims["cnf"]["jwk"] == claims["x-ms-tpm-request-key"]["jwk"]
    assert claims["iss"] == setup.service.url


def _forged_log(setup: Setup) -> Path:
    """The log with the PCR7 SecureBoot value flipped; digests untouched, so replay alone would pass."""
    log = bytearray(setup.log_path.read_bytes())
    parsed = parse_event_log(bytes(log))
    event = next(e for e in parsed.events if e.pcr == 7 and "SecureBoot".encode("utf-16-le") in e.data)
    at = bytes(log).index(event.data, event.offset) + len(event.data) - 1
    log[at] ^= 0x01
    forged = setup.work / "forged.log"
    forged.write_bytes(bytes(log))
    return forged


def test_altered_event_data_is_denied(setup: Setup) -> None:
    forged = _forged_log(setup)
    with pytest.raises(ServiceRejected) as info:
        run(_args(setup, "--eventlog", str(forged), "--out", str(setup.work / "forged.jwt")))
    assert info.value.status == 400 and info.value.code == "InvalidParameter"
    assert "digest" in info.value.message
    assert not (setup.work / "forged.jwt").exists()


def test_cli_json_output(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    from affidavit.cli import main

    assert main(["attest", "tpm", *_argv(setup, "--eventlog", str(setup.log_path), "--json")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["claims_unverified"]["secureBootEnabled"] is True and shown["token"].count(".") == 2
    forged = _forged_log(setup)
    assert main(["attest", "tpm", *_argv(setup, "--eventlog", str(forged), "--json")]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "InvalidParameter"


def test_cli_reports_errors_without_a_traceback(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    from affidavit.cli import main

    assert main(["attest", "tpm", *_argv(setup, "--eventlog", str(setup.work / "missing.log"))]) == 1
    err = capsys.readouterr().err
    assert "cannot read the event log" in err and "Traceback" not in err
    no_tpm = _argv(setup, "--no-eventlog", "--tcti", "swtpm:host=127.0.0.1,port=1")
    assert main(["attest", "tpm", *no_tpm]) == 1
    assert "tpm2_" in capsys.readouterr().err
