"""Nested claims (AzureGuest's ``x-ms-isolation-tee``) by dotted path, in the relying party and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from affidavit.cli.token import parse_expectations
from affidavit.relying_party import ExpectationFailed, Expectations, keys_from_jwks, verify_token
from tests.test_relying_party import NOW, fresh, jwk_of, maa_kid, make_key, sign

ISSUER = "https://issuer.example"
MEASUREMENT = (
    "036fc22b517981a791f7f8b89d634a00e964f6b0dfabc568090eb4393d6026f96aa6b7cca2759f29e521469f1189c00c"
)


@pytest.fixture(scope="module")
def azurevm(vectors: Path) -> dict[str, Any]:
    """The claims of a real 2025 AzureGuest token (MAA sharedeus2), re-signed here."""
    doc = json.loads((vectors / "azure-cvm/maa-tokens-azurevm/azurevm_2025-01-12.decoded.json").read_text())
    return doc.get("payload", doc)


def _verify(claims: dict[str, Any], expect: Expectations) -> dict[str, Any]:
    key, cert = make_key(ISSUER)
    kid = maa_kid(cert)
    token = sign(fresh(claims, ISSUER, NOW), key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    return dict(verify_token(token, keys, issuer=ISSUER, now=NOW, expectations=expect).claims)


def test_cli_expectations_reach_nested_claims(azurevm: dict[str, Any]) -> None:
    expect = parse_expectations(
        [
            f"x-ms-isolation-tee.x-ms-sevsnpvm-launchmeasurement={MEASUREMENT}",
            "x-ms-isolation-tee.x-ms-compliance-status=azure-compliant-cvm",
            "x-ms-isolation-tee.x-ms-sevsnpvm-bootloader-svn>=4",
            "x-ms-isolation-tee.x-ms-runtime.vm-configuration.secure-boot=true",
        ],
        allow_debug=False,
    )
    claims = _verify(azurevm, expect)
    assert claims["x-ms-attestation-type"] == "azurevm"


@pytest.mark.parametrize(
    ("item", "claim"),
    [
        (
            "x-ms-isolation-tee.x-ms-sevsnpvm-launchmeasurement=00",
            "x-ms-isolation-tee.x-ms-sevsnpvm-launchmeasurement",
        ),
        (
            "x-ms-isolation-tee.x-ms-sevsnpvm-bootloader-svn>=5",
            "x-ms-isolation-tee.x-ms-sevsnpvm-bootloader-svn",
        ),
        ("x-ms-isolation-tee.no-such-claim=1", "x-ms-isolation-tee.no-such-claim"),
        ("x-ms-runtime.client-payload.nonce.deeper=1", "x-ms-runtime.client-payload.nonce.deeper"),
    ],
)
def test_failed_nested_expectation_names_the_path(azurevm: dict[str, Any], item: str, claim: str) -> None:
    with pytest.raises(ExpectationFailed) as info:
        _verify(azurevm, parse_expectations([item], allow_debug=False))
    assert info.value.claim == claim


def test_a_debuggable_cvm_fails_unless_allowed(azurevm: dict[str, Any]) -> None:
    debug = json.loads(json.dumps(azurevm))
    debug["x-ms-isolation-tee"]["x-ms-sevsnpvm-is-debuggable"] = True
    with pytest.raises(ExpectationFailed):
        _verify(debug, Expectations())
    _verify(debug, Expectations(allow_debug=True))


@pytest.mark.parametrize("name", ["azurevm_2025-01-12", "azurevm_2024-12-20"])
def test_real_maa_azurevm_tokens_verify_with_nested_expectations(vectors: Path, name: str) -> None:
    """The real MAA tokens, with MAA's own key: signature, window, issuer and a nested expectation."""
    d = vectors / "azure-cvm/maa-tokens-azurevm"
    token = (d / f"{name}.jwt").read_text().strip()
    jwk = json.loads((d / "maa_signing_key_sharedeus2.jwk.json").read_text())
    claims = json.loads((d / f"{name}.decoded.json").read_text())
    claims = claims.get("payload", claims)
    expect = parse_expectations(
        ["x-ms-isolation-tee.x-ms-attestation-type=sevsnpvm", "x-ms-isolation-tee.x-ms-sevsnpvm-vmpl=0"],
        allow_debug=False,
    )
    result = verify_token(
        token,
        keys_from_jwks({"keys": [jwk]}),
        issuer=claims["iss"],
        now=claims["iat"] + 60,
        expectations=expect,
    )
    assert result.claims["x-ms-attestation-type"] == "azurevm"
    with pytest.raises(ExpectationFailed):
        verify_token(
            token,
            keys_from_jwks({"keys": [jwk]}),
            issuer=claims["iss"],
            now=claims["iat"] + 60,
            expectations=parse_expectations(["x-ms-isolation-tee.x-ms-sevsnpvm-vmpl=1"], allow_debug=False),
        )
