"""TPM trust configuration: ``affidavit serve --tpm-*`` flags and variables, the data-dir fallback files,
and the one long-lived ``TpmVerifier`` a worker's state holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.cli import build_parser
from affidavit.cli.serve import config_from_args
from affidavit.evidence.tpm import TpmVerifier
from affidavit.service import ServiceConfig, ServiceError
from affidavit.service.state import build_state, tpm_trust
from affidavit.simulate.swtpm import AkCertificateAuthority


def _key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _config(data_dir: Path, **extra: object) -> ServiceConfig:
    return ServiceConfig(data_dir=data_dir, admin_token="x", extra=dict(extra))


def test_flags_and_variables_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, inter, ak = (tmp_path / n for n in ("root.pem", "inter.pem", "ak.pem"))
    args = build_parser().parse_args(["serve", "--tpm-aik-root", str(root), "--tpm-aik-root", str(inter),
                                      "--tpm-registered-ak", str(ak)])
    assert config_from_args(args).extra == {"tpm_aik_roots": [str(root), str(inter)],
                                            "tpm_registered_aks": [str(ak)]}
    monkeypatch.setenv("AFFIDAVIT_TPM_AIK_INTERMEDIATE", f"{root}:{inter}")
    config = config_from_args(build_parser().parse_args(["serve"]))
    assert config.extra == {"tpm_aik_intermediates": [str(root), str(inter)]}
    assert ServiceConfig.from_json(config.to_json()).extra == config.extra  # what workers rebuild


def test_configured_files_build_the_trust(tmp_path: Path) -> None:
    ca, other = AkCertificateAuthority.create(), AkCertificateAuthority.create("Other")
    (tmp_path / "roots.pem").write_bytes(ca.pem + other.pem)
    (tmp_path / "aks.pem").write_bytes(_key_pem() + _key_pem())
    trust = tpm_trust(_config(tmp_path, tpm_aik_roots=[str(tmp_path / "roots.pem")],
                              tpm_registered_aks=[str(tmp_path / "aks.pem")]))
    assert trust.aik_roots == (ca.certificate, other.certificate)
    assert len(trust.registered_aks) == 2 and trust.aik_intermediates == ()


def test_data_dir_files_apply_only_without_flags(tmp_path: Path) -> None:
    in_dir, flagged = AkCertificateAuthority.create(), AkCertificateAuthority.create("Flagged")
    (tmp_path / "tpm-aik-roots.pem").write_bytes(in_dir.pem)
    (tmp_path / "flagged.pem").write_bytes(flagged.pem)
    assert tpm_trust(_config(tmp_path)).aik_roots == (in_dir.certificate,)
    assert tpm_trust(_config(tmp_path, tpm_aik_roots=[str(tmp_path / "flagged.pem")])).aik_roots == (
        flagged.certificate,
    )
    empty = tpm_trust(_config(tmp_path / "elsewhere"))
    assert empty.aik_roots == () and not empty.registered_aks


def test_the_state_holds_one_verifier_over_the_trust(tmp_path: Path) -> None:
    ca = AkCertificateAuthority.create()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    state = build_state(_config(tmp_path / "data", tpm_aik_roots=[str(tmp_path / "ca.pem")]))
    try:
        verifier = state.tpm_verifier
        assert isinstance(verifier, TpmVerifier) and verifier is state.tpm_verifier
        assert verifier.trust.aik_roots == (ca.certificate,)
    finally:
        state.close()


@pytest.mark.parametrize("content", [None, b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_an_unreadable_trust_file_stops_the_start(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "root.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ServiceError) as info:
        build_state(_config(tmp_path / "data", tpm_aik_roots=[str(path)]))
    assert info.value.code == "configuration"
