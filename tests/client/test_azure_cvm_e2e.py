"""End to end: swtpm as the vTPM (HCL report in NV 0x01400001 around its AK, a replayed real boot log),
a loopback IMDS stand-in turning the TDREPORT into a TD quote with the simulated Intel PKI,
``affidavit attest azure-cvm`` -> ``affidavit serve`` -> a sealed token unsealed inside the TPM."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from affidavit.client.tpm_tools import TpmTools
from affidavit.evidence.tpm import parse_public
from affidavit.simulate import SimulatedPlatform
from affidavit.simulate.azure_cvm import (
    hcl_report,
    report_data_for,
    runtime_claims_for,
    td_quote_for,
    tdreport_bytes,
)
from affidavit.simulate.swtpm import Swtpm, event_log_banks, replay_event_log, running_swtpm
from tests.service.helpers import ADMIN_TOKEN, Server, jwt_body

LOG = "tpm/keylime/binary_bios_measurements-secureboot"
EVIDENCE_TIME = datetime(2025, 6, 10, tzinfo=UTC)
MRTD = bytes.fromhex("5a" * 48)
VM_ID = "0E8E0B6D-4A9B-4C3E-9B44-0C4B9B0A1E21"


@dataclass(frozen=True)
class Setup:
    tpm: Swtpm
    service: Server
    imds_url: str
    log: Path
    work: Path


class _Imds(BaseHTTPRequestHandler):
    platform: SimulatedPlatform

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        report = base64.urlsafe_b64decode(body["report"] + "==")
        quote = td_quote_for(self.platform, report)
        answer = json.dumps({"quote": base64.urlsafe_b64encode(quote).rstrip(b"=").decode()}).encode()
        self.send_response(200 if self.path == "/acc/tdquote" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("azure-cvm-e2e")
    sim = SimulatedPlatform.create(
        fmspc="00B0F0F00000", ca="platform", tee="tdx", now=EVIDENCE_TIME, name="cvm"
    )
    (work / "collateral").mkdir()
    (work / "collateral" / "tdx.json").write_text(json.dumps(sim.collateral(now=EVIDENCE_TIME)))
    (work / "root.pem").write_bytes(sim.root_pem)
    (work / "baselines.json").write_text(json.dumps([{"tee": "tdxvm", "tdx_mrtd": [MRTD.hex()]}]))
    log = vectors / LOG
    handler = type("Imds", (_Imds,), {"platform": sim})
    imds = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=imds.serve_forever, daemon=True)
    thread.start()
    try:
        with running_swtpm(work / "tpm", event_log_banks(log.read_bytes())) as tpm:
            replay_event_log(tpm, log.read_bytes())
            tools = TpmTools(tpm.tcti)
            # The paravisor's part: the AK at 0x81000003 and the HCL report naming it, in NV 0x01400001.
            ak = parse_public(tools.ensure_ak(0x81000003)).public_key
            claims = runtime_claims_for(ak, vm_id=VM_ID)  # type: ignore[arg-type]
            td = tdreport_bytes(
                mrtd=MRTD,
                report_data=report_data_for(claims),
                tee_tcb_svn=bytes(sim.tcb.tdx_svns),
                mrseam=sim.mrseam,
                xfam=0x61AE7,
                td_attributes=1 << 28,
            )
            blob = work / "hcl.bin"
            blob.write_bytes(hcl_report(td, claims))
            tools.run("tpm2_nvdefine", "0x01400001", "-C", "o", "-s", "2048", "-a", "ownerread|ownerwrite")
            tools.run("tpm2_nvwrite", "0x01400001", "-C", "o", "-i", str(blob))
            args = [
                "--collateral-dir",
                str(work / "collateral"),
                "--trust-root",
                str(work / "root.pem"),
                "--evidence-time",
                "2025-06-10T00:00:00Z",
                "--admin-token",
                ADMIN_TOKEN,
                "--azure-cvm-baselines",
                str(work / "baselines.json"),
            ]
            with Server(work / "service", args) as service:
                host, port = imds.server_address[:2]
                yield Setup(tpm, service, f"http://{host}:{port}", log, work)
    finally:
        imds.shutdown()
        imds.server_close()


def _argv(setup: Setup, *extra: str) -> list[str]:
    return [
        "attest",
        "azure-cvm",
        "--url",
        setup.service.url,
        "--tcti",
        setup.tpm.tcti,
        "--imds-url",
        setup.imds_url,
        "--ca-file",
        setup.service.ca_file,
        "--eventlog",
        str(setup.log),
        *extra,
    ]


@pytest.mark.slow
def test_cli_attests_a_tdx_cvm_through_swtpm(setup: Setup) -> None:
    from affidavit.cli import main

    out = setup.work / "token.jwt"
    assert (
        main(
            _argv(
                setup,
                "--out",
                str(out),
                "--claim",
                "nonce=1234",
                "--user-data",
                "ab" * 8,
                "--refresh-wait",
                "0",
            )
        )
        == 0
    )
    claims = jwt_body(out.read_text().strip())
    assert claims["x-ms-attestation-type"] == "azurevm"
    assert claims["x-ms-azurevm-vmid"] == VM_ID
    assert claims["x-ms-azurevm-attested-pcrs"] == list(range(8))
    assert claims["secureboot"] is True  # from the replayed log's SecureBoot variable
    assert claims["x-ms-runtime"]["client-payload"] == {"nonce": base64.b64encode(b"1234").decode()}
    tee = claims["x-ms-isolation-tee"]
    assert tee["x-ms-attestation-type"] == "tdxvm" and tee["tdx_mrtd"] == MRTD.hex()
    assert tee["x-ms-compliance-status"] == "azure-compliant-cvm"
    assert tee["x-ms-runtime"]["keys"][0]["kid"] == "HCLAkPub"
    assert claims["iss"] == setup.service.url
    # the token verifies with the service's keys, nested claims included
    assert (
        main(
            [
                "token",
                "verify",
                str(out),
                "--issuer",
                setup.service.url,
                "--ca-file",
                setup.service.ca_file,
                "--expect",
                f"x-ms-isolation-tee.tdx_mrtd={MRTD.hex()}",
            ]
        )
        == 0
    )


@pytest.mark.slow
def test_snp_client_path_through_swtpm_and_a_thim_stand_in(setup: Setup) -> None:
    """The client's SevSnp branch (THIM chain, Proof) against the service in process; needs wip/snp."""
    snp = pytest.importorskip(
        "affidavit.simulate.snp", reason="affidavit.simulate.snp is built on branch wip/snp"
    )
    from affidavit.client.azure_cvm import VtpmGuest, build_attestation_info
    from affidavit.service import ServiceConfig, create_app
    from affidavit.tokens.sealed import unseal_token
    from tests.service.helpers import AsgiClient

    pki = snp.SimulatedAmdPki.create(now=EVIDENCE_TIME)
    vek = pki.vcek(now=EVIDENCE_TIME)
    tools = TpmTools(setup.tpm.tcti)
    ak = parse_public(tools.read_public(0x81000003)).public_key
    claims = runtime_claims_for(ak, vm_id=VM_ID)  # type: ignore[arg-type]
    blob = hcl_report(vek.report(report_data=report_data_for(claims)), claims, report_type=2)
    thim = {"vcekCert": vek.pem.decode(), "certificateChain": pki.cert_chain_vcek.decode()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Thim", (_Thim,), {"answer": thim}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (setup.work / "ark.pem").write_bytes(pki.ark_pem)
    app = create_app(
        ServiceConfig(
            data_dir=setup.work / "snp-service",
            admin_token="x",
            extra={"snp_trust_roots": [str(setup.work / "ark.pem")]},
        )
    )
    client = AsgiClient(app)
    try:
        work = setup.work / "snp-client"
        work.mkdir()
        guest = VtpmGuest(tools, work)
        host, port = server.server_address[:2]
        info, key = build_attestation_info(
            hcl=blob,
            guest=guest,
            pcrs=list(range(8)),
            imds_url=f"http://{host}:{port}",
            tcg_log=None,
            client_payload={},
            os_fields=("Linux", "Ubuntu", 24, 4, "NotApplication"),
        )
        r = client.post(
            "/attest/AzureGuest?api-version=2020-10-01",
            json={"AttestationInfo": base64.urlsafe_b64encode(json.dumps(info).encode()).decode()},
        )
        assert r.status_code == 200, r.text
        token = unseal_token(r.json()["token"], lambda ct: guest.decrypt(key, list(range(8)), ct))
        tee = jwt_body(token)["x-ms-isolation-tee"]
        assert tee["x-ms-attestation-type"] == "sevsnpvm" and tee["x-ms-sevsnpvm-vmpl"] == 0
    finally:
        client.close()
        server.shutdown()
        server.server_close()


class _Thim(BaseHTTPRequestHandler):
    answer: dict[str, str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps(self.answer).encode()
        self.send_response(200 if self.path == "/metadata/THIM/amd/certification" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_changed_pcr_breaks_the_quote_binding(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """After a PCR extend the replayed log no longer matches the quote: the service refuses it."""
    from affidavit.cli import main

    setup.tpm.tool("tpm2_pcrextend", "7:sha256=" + "11" * 32)
    assert main(_argv(setup, "--json")) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "InvalidParameter", error
