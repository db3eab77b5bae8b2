"""The directory collateral provider, the self-signed TLS certificate, configuration and request decoding."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from affidavit.cli import build_parser
from affidavit.cli.serve import config_from_args
from affidavit.collateral import CollateralError, DirectoryProvider
from affidavit.evidence.dcap import DcapVerifier, Platform, TrustAnchors, platform_of
from affidavit.service import ServiceConfig, ServiceError
from affidavit.service.decode import b64decode_lenient, parse_attest_request
from affidavit.service.tls import ensure_self_signed
from affidavit.simulate import SimulatedPlatform

AZURE = "sgx/azure-dcsv2-sgx-00906ed50000-2025-05"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_directory_indexes_a_whole_vector_tree(vectors: Path) -> None:
    provider = DirectoryProvider(vectors / "sgx")
    platforms = {(f.fmspc, f.ca, f.tee) for f in provider.files}
    assert ("00906ED50000", "processor", "sgx") in platforms
    assert ("00806F050000", "platform", "tdx") in platforms
    assert ("00606A000000", "platform", "sgx") in platforms
    # Monthly snapshots of one platform: the one valid at the evidence time is chosen.
    tdx = [provider.select("00806f050000", "platform", "tdx", at(t)).path.name
           for t in ("2025-03-01", "2025-06-10", "2025-10-24")]
    assert tdx == ["collateral_2025-02.json", "collateral_2025-05.json", "collateral_2025-10.json"]
    sgx = provider.select("00906ED50000", "processor", "sgx", at("2025-06-10")).path
    assert sgx.parent.name == AZURE.split("/")[1]
    # Before any file is valid: the earliest; after all expired: the newest (the verifier names the expiry).
    early, late = (provider.select("00806F050000", "platform", "tdx", at(t)).path.name
                   for t in ("2020-01-01", "2030-01-01"))
    assert (early, late) == ("collateral_2025-02.json", "collateral_2025-10.json")
    with pytest.raises(CollateralError) as info:
        provider.select("FFFFFFFFFFFF", "processor", "sgx", at("2025-06-10"))
    assert info.value.code == "collateral_not_found"


def test_directory_collateral_verifies_the_real_quote(vectors: Path) -> None:
    when = at("2025-06-10")
    provider = DirectoryProvider(vectors / "sgx", clock=lambda: when)
    quote = (vectors / AZURE / "quote_intelsdk_release.bin").read_bytes()
    platform = platform_of(quote)
    collateral = asyncio.run(provider.get(platform))
    assert asyncio.run(provider.get(platform)) is collateral  # loaded once
    result = DcapVerifier(TrustAnchors.intel()).verify(quote, collateral, when)
    assert result.tcb_status == "OutOfDate"


def test_directory_skips_what_is_not_collateral(tmp_path: Path, vectors: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    data = json.loads((vectors / AZURE / "collateral_2025-05_standard.json").read_text())
    (tmp_path / "bad-crl.json").write_text(json.dumps({**data, "pck_crl": "zz"}))
    (tmp_path / "good.json").write_text(json.dumps(data))
    assert [f.path.name for f in DirectoryProvider(tmp_path).files] == ["good.json"]
    assert len(DirectoryProvider(tmp_path / "good.json").files) == 1
    with pytest.raises(CollateralError):
        DirectoryProvider(tmp_path / "missing")


def test_directory_unloadable_file_is_a_collateral_error(tmp_path: Path, vectors: Path) -> None:
    data = json.loads((vectors / AZURE / "collateral_2025-05_standard.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**data, "tcb_info_signature": "00"}))
    provider = DirectoryProvider(tmp_path, clock=lambda: at("2025-06-10"))
    with pytest.raises(CollateralError) as info:
        asyncio.run(provider.get(Platform("00906ED50000", "processor", "sgx")))
    assert "tcb_info_signature" in info.value.message


def test_simulated_collateral_is_indexed(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    sim = SimulatedPlatform.create(fmspc="00C0FFEE0000", ca="platform", now=now, seed="units")
    (tmp_path / "sim.json").write_text(json.dumps(sim.collateral(now=now)))
    (only,) = DirectoryProvider(tmp_path).files
    assert (only.fmspc, only.ca, only.tee) == ("00C0FFEE0000", "platform", "sgx")
    assert only.valid_at(now) and not only.valid_at(now + timedelta(days=60))


def test_self_signed_certificate_is_kept(tmp_path: Path) -> None:
    cert1, key1 = ensure_self_signed(tmp_path, "127.0.0.1")
    first = cert1.read_bytes()
    cert2, _ = ensure_self_signed(tmp_path, "127.0.0.1")
    assert cert2.read_bytes() == first
    assert oct(key1.stat().st_mode & 0o777) == "0o600"
    cert3, _ = ensure_self_signed(tmp_path, "attest.example")  # another host: a new certificate
    sans = x509.load_pem_x509_certificate(cert3.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert "attest.example" in sans.get_values_for_type(x509.DNSName)


def test_serve_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AFFIDAVIT_PORT", "9443")
    monkeypatch.setenv("AFFIDAVIT_MODE", "isolated")
    monkeypatch.setenv("AFFIDAVIT_EVIDENCE_TIME", "2025-06-10T00:00:00Z")
    monkeypatch.setenv("AFFIDAVIT_TRUST_ROOT", f"{tmp_path / 'a.pem'}:{tmp_path / 'b.pem'}")
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--tls-self-signed", "--workers", "2",
                                      "--tpm-aik-root", "r1.pem", "--tpm-aik-root", "r2.pem"])
    config = config_from_args(args)
    assert (config.host, config.port, config.mode, config.workers) == ("0.0.0.0", 9443, "isolated", 2)
    assert config.evidence_time == at("2025-06-10")
    assert config.trust_roots == (tmp_path / "a.pem", tmp_path / "b.pem")
    assert config.public_issuer == "https://127.0.0.1:9443"
    assert config.extra == {"tpm_aik_roots": ["r1.pem", "r2.pem"]}
    assert ServiceConfig.from_json(config.to_json()) == config
    with pytest.raises(ServiceError):
        config_from_args(build_parser().parse_args(["serve", "--tls-cert", "x.pem"]))


def test_issuer_flag_wins() -> None:
    config = ServiceConfig(issuer="https://attest.example.com/maa/", port=1)
    assert config.public_issuer == "https://attest.example.com/maa"


@given(st.text(max_size=40))
def test_lenient_base64_decoder(text: str) -> None:
    try:
        assert isinstance(b64decode_lenient(text, "x"), bytes)
    except ServiceError as exc:
        assert exc.status == 400


@given(st.binary(max_size=200))
def test_attest_request_parser(body: bytes) -> None:
    try:
        parse_attest_request(body, "quote")
    except ServiceError as exc:
        assert exc.status == 400


def test_base64_forms_agree() -> None:
    data = bytes(range(256))
    import base64

    forms = [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode(),
             base64.urlsafe_b64encode(data).decode().rstrip("="), base64.b64encode(data).decode().rstrip("=")]
    assert all(b64decode_lenient(f, "x") == data for f in forms)


def test_layer_errors_map_to_maa_codes() -> None:
    from affidavit.collateral import CollateralError
    from affidavit.evidence import EvidenceError
    from affidavit.policy import PolicyEvaluationError, PolicyParsingError
    from affidavit.service.errors import classify
    from affidavit.store import StoreError
    from affidavit.tokens import TokenError

    assert classify(EvidenceError("x")) == (400, "InvalidParameter")
    assert classify(CollateralError("x")) == (400, "InvalidParameter")
    assert classify(PolicyParsingError("x")) == (400, "PolicyParsingError")
    assert classify(PolicyEvaluationError("x")) == (400, "PolicyEvaluationError")
    assert classify(TokenError("x")) == (400, "InvalidOperation")
    assert classify(StoreError("x")) == (503, "ServiceUnavailable")
    assert classify(ServiceError("x", code="Unauthorized", status=401)) == (401, "Unauthorized")
