"""The registry and the evidence contract, proven by a toy TEE added the way SEV-SNP and the rest are.

The toy's whole implementation is the "toy module" section below (a verifier and its factory) plus one
``AttestationType`` entry; nothing else in Affidavit is edited. It is then attested end to end: a real
server on a loopback port (bound to port 0 here, the port read back), the client's generic ``attest``,
``affidavit attest toy``, the relying party against ``/certs``, the stored-policy default, OpenID
``claims_supported``, the runtime-data binding, and refusals (a flipped byte, an unknown type).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from affidavit import attestation_types
from affidavit.attestation_types import AttestationType, UnknownAttestationType, lookup, registered
from affidavit.evidence import EvidenceError
from affidavit.evidence.contract import (
    EvidenceInput,
    EvidenceVerifier,
    VerifiedEvidence,
    VerifierHost,
    VerifyOptions,
)

# ------------------------------------------------------------------------------------------- toy module
# Evidence: JSON {"measurement": hex, "report_data": hex, "mac": hex}, the MAC an HMAC-SHA256 over
# measurement || report_data under the toy vendor's key (its "trust anchor", from the service's config).

TOY_KEY = b"toy vendor root key"


@dataclass(frozen=True)
class ToyEvidence:
    measurement: bytes
    report_data: bytes
    mac: bytes


class ToyVerifier:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def parse(self, submitted: EvidenceInput) -> ToyEvidence:
        try:
            obj = json.loads(submitted.evidence)
            return ToyEvidence(*(bytes.fromhex(obj[k]) for k in ("measurement", "report_data", "mac")))
        except (ValueError, KeyError, TypeError):
            raise EvidenceError("toy evidence is not {measurement, report_data, mac}",
                                code="toy_malformed") from None

    async def collateral(self, parsed: ToyEvidence) -> None:
        return None

    def verify(
        self, parsed: ToyEvidence, collateral: None, now: datetime, options: VerifyOptions
    ) -> VerifiedEvidence:
        expected = hmac.new(self._key, parsed.measurement + parsed.report_data, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, parsed.mac):
            raise EvidenceError("toy evidence MAC does not verify", code="toy_bad_mac")
        return VerifiedEvidence(
            claims={"x-ms-toy-measurement": parsed.measurement.hex()},
            runtime_target=parsed.report_data,
            tcb_status="UpToDate",
        )


def build_toy(host: VerifierHost) -> ToyVerifier:
    return ToyVerifier(host.config.extra.get("toy_key", TOY_KEY))


TOY = AttestationType(
    name="ToyTee",
    aliases=("Toy-TEE",),
    verifier=f"{__name__}:build_toy",
    token_type="toytee",
    default_policy=(
        "version=1.0; authorizationrules{ => permit(); };"
        ' issuancerules{ c:[type=="x-ms-toy-measurement"] => issue(type="toy-measurement", value=c.value); };'
    ),
    evidence_field="report",
    tcb_status_claim="x-ms-toy-tcb-status",
    claims_supported=("x-ms-toy-measurement", "toy-measurement"),
    cli_name="toy",
    cli_help="a toy TEE's report",
)
# ---------------------------------------------------------------------------------------- end toy module


def toy_evidence(measurement: bytes, runtime: bytes, *, key: bytes = TOY_KEY) -> bytes:
    report_data = hashlib.sha256(runtime).digest() + bytes(32)
    mac = hmac.new(key, measurement + report_data, hashlib.sha256).digest()
    obj = {"measurement": measurement.hex(), "report_data": report_data.hex(), "mac": mac.hex()}
    return json.dumps(obj).encode()


class LiveServer:
    """The app under uvicorn in a thread, on a socket bound to port 0 (kept open: no port race)."""

    def __init__(self, data_dir: Path) -> None:
        import uvicorn

        from affidavit.service import ServiceConfig, create_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = ServiceConfig(data_dir=data_dir, port=self.port, issuer=self.url, admin_token="toy-admin",
                               pcs_url=None)
        self.server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            self.thread.join(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with registered(TOY), LiveServer(tmp_path_factory.mktemp("toy")) as live:
        yield live


def test_toy_verifier_satisfies_the_contract() -> None:
    assert isinstance(ToyVerifier(TOY_KEY), EvidenceVerifier)


def test_toy_attests_end_to_end(server: LiveServer) -> None:
    from affidavit.client.http import AttestationClient, RuntimeData
    from affidavit.relying_party import TokenVerifier

    runtime = b'{"pub":"toy key"}'
    with AttestationClient(server.url, verify=False) as client:
        evidence = toy_evidence(b"\x11" * 16, runtime)
        token = client.attest("toytee", evidence, runtime_data=RuntimeData(runtime), nonce="n-1").token
    with TokenVerifier(server.url, verify=False) as rp:
        claims = rp.verify(token, nonce="n-1").claims
    assert claims["x-ms-attestation-type"] == "toytee"
    assert claims["x-ms-toy-measurement"] == "11" * 16
    assert claims["toy-measurement"] == "11" * 16  # the registry's default policy
    assert claims["x-ms-policy"] == {"toy-measurement": "11" * 16}
    assert claims["x-ms-toy-tcb-status"] == "UpToDate"
    assert claims["x-ms-runtime-data"]  # Binary runtimeData, bound to report_data[:32]
    assert claims["exp"] - claims["iat"] == 8 * 3600
    meta = httpx.get(server.url + "/.well-known/openid-configuration").json()
    assert {"x-ms-toy-measurement", "toy-measurement", "x-ms-sgx-mrenclave"} <= set(meta["claims_supported"])
    policy = httpx.get(server.url + "/policies/ToyTee", headers={"Authorization": "Bearer toy-admin"})
    assert policy.status_code == 200


def test_toy_through_the_cli(server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affidavit.cli import main

    (tmp_path / "report.json").write_bytes(toy_evidence(b"\x22" * 16, b""))
    argv = ["attest", "toy", "--url", server.url, "--quote", str(tmp_path / "report.json"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["claims_unverified"]["x-ms-toy-measurement"] == "22" * 16


@pytest.mark.parametrize("kind", ["toy_bad_mac", "toy_malformed", "unbound_runtime", "unknown_type"])
def test_toy_refusals(server: LiveServer, kind: str) -> None:
    from affidavit.client import ServiceRejected
    from affidavit.client.http import AttestationClient, RuntimeData

    evidence = toy_evidence(b"\x33" * 16, b"rt")
    runtime = RuntimeData(b"rt")
    if kind == "toy_bad_mac":  # a flipped byte in the signed measurement
        obj = json.loads(evidence)
        obj["measurement"] = "34" + obj["measurement"][2:]
        evidence = json.dumps(obj).encode()
    elif kind == "toy_malformed":
        evidence = b"[]"
    elif kind == "unbound_runtime":
        runtime = RuntimeData(b"other")
    with AttestationClient(server.url, verify=False, retries=0) as client, \
            pytest.raises(ServiceRejected) as err:
        if kind == "unknown_type":
            client.post_json("/attest/NoSuchTee", {"report": "AA"})
        client.attest(TOY.name, evidence, runtime_data=runtime)
    assert err.value.status == 400 and err.value.code == "InvalidParameter"


def test_registry_lookup_and_registration() -> None:
    from dataclasses import replace

    assert lookup("sgxenclave").name == "SgxEnclave"
    assert {"SgxEnclave", "OpenEnclave", "Tpm", "TdxVm"} <= {t.name for t in attestation_types.BUILTIN}
    other = replace(TOY, name="OtherToy", aliases=("other-toy",), cli_name=None)
    with pytest.raises(UnknownAttestationType):
        lookup("other-toy")
    with registered(other):
        assert lookup("OTHER-TOY") is other
        with pytest.raises(ValueError, match="already registered"):
            attestation_types.register(other)
    with pytest.raises(UnknownAttestationType):
        lookup("other-toy")


def test_every_builtin_factory_resolves() -> None:
    import importlib

    for entry in attestation_types.all_types():
        module, _, attr = entry.verifier.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), entry.name


def test_builtins_keep_their_defaults_and_metadata() -> None:
    """Moving the lists into the registry changed nothing a client sees for the four built-in types."""
    from affidavit.policy import DEFAULT_POLICIES

    for name in ("SgxEnclave", "OpenEnclave", "Tpm", "TdxVm"):
        assert lookup(name).default_policy == DEFAULT_POLICIES[name]
    toy = {"x-ms-toy-measurement", "toy-measurement"}  # the module's toy may be registered meanwhile
    assert tuple(c for c in attestation_types.claims_supported() if c not in toy) == (
        "cnf", "nonce", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash", "x-ms-policy-signer",
        "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-svn", "x-ms-sgx-ehd",
        "x-ms-sgx-collateral", "is-debuggable", "sgx-mrsigner", "sgx-mrenclave", "product-id", "svn", "tee",
    )
