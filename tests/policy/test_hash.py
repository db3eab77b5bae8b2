"""``x-ms-policy-hash`` against the live values of maa-api.md §7.4 and maa-policy.md §1; defaults are
kept byte-exact."""

from __future__ import annotations

from pathlib import Path

from affidavit.policy import DEFAULT_POLICIES, compile_policy, policy_hash
from affidavit.policy.defaults import SGX_DEFAULT_2021, SGX_DEFAULT_LEGACY

DATA = Path(__file__).parent / "data"


def test_permit_all_hash_from_live_service() -> None:
    text = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
    assert policy_hash(text) == "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    assert compile_policy(text).hash == policy_hash(text)


def test_2021_default_hash_from_a_real_token() -> None:
    assert policy_hash(SGX_DEFAULT_2021) == "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"


def test_defaults_are_the_documented_texts() -> None:
    assert DEFAULT_POLICIES["SgxEnclave"] == (DATA / "d3.policy").read_bytes().decode()
    assert DEFAULT_POLICIES["OpenEnclave"] == DEFAULT_POLICIES["SgxEnclave"]
    assert SGX_DEFAULT_2021 == (DATA / "d2.policy").read_bytes().decode()
    assert SGX_DEFAULT_LEGACY == (DATA / "d1.policy").read_bytes().decode()
    assert DEFAULT_POLICIES["Tpm"] == ""
    assert set(DEFAULT_POLICIES) == {"SgxEnclave", "OpenEnclave", "Tpm", "TdxVm", "SevSnpVm", "AzureGuest"}
    assert policy_hash(DEFAULT_POLICIES["AzureGuest"]) == "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"


def test_sev_snp_default_has_maas_policy_hash() -> None:
    """The x-ms-policy-hash of real MAA SevSnpVm tokens (2022 spec example, 2025 sharedweu)."""
    assert DEFAULT_POLICIES["SevSnpVm"] == "version= 1.0;authorizationrules{=> permit();};"
    assert policy_hash(DEFAULT_POLICIES["SevSnpVm"]) == "9NY0VnTQ-IiBriBplVUpFbczcDaEBUwsiFYAzHu_gco"


def test_hash_is_unpadded_base64url_and_whitespace_sensitive() -> None:
    h = policy_hash("version=1.0; authorizationrules{};")
    assert len(h) == 43 and "=" not in h and "+" not in h and "/" not in h
    assert policy_hash("version=1.0;  authorizationrules{};") != h
