"""The example policies of maa-policy.md §7-§8: each parses (or fails as documented) and gives the
outcome its source states. The texts are the doc's, byte for byte, in ``data/``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from affidavit.policy import (
    DEFAULT_POLICIES,
    Claim,
    PolicyEvaluationError,
    PolicyParsingError,
    claims_from_mapping,
    compile_policy,
    evaluate,
)
from affidavit.policy.evaluator import DENY_REASON, NO_PERMIT_REASON

from .samples import compact, sgx_claims, tpm_claims, tpm_events

DATA = Path(__file__).parent / "data"
PERMIT_ALL = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"


def text(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


def wrap_issuance(rules: str, version: str = "1.0") -> str:
    return f"version={version};\nauthorizationrules{{ => permit(); }};\nissuancerules{{\n{rules}\n}};"


# -- which texts parse, strictly and leniently ---------------------------------------------------------

VALID = [
    "d1.policy", "d2.policy", "d3.policy", "p05.policy", "e03a.policy", "e03b.policy", "e03c.policy",
    "e05.policy", "e06a.policy", "e06b.policy", "e06c.policy", "e07.policy", "e08.policy", "e12.policy",
    "e17.policy", "e18.policy", "e19.policy", "e20.policy", "e21.policy", "e23.policy",
]  # fmt: skip

# file -> (line, column, words in the failure message) of the strict error; lenient mode accepts them.
INVALID_BUT_LENIENT = {
    "e02.policy": (4, 11, "expecting a comparison operator"),
    "e09.policy": (23, 51, "expecting 'type'"),
    "e24.policy": (8, 78, "not allowed in authorizationrules"),
    "e25.policy": (15, 11, "expecting ')'"),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_examples_parse_strictly_without_warnings(name: str) -> None:
    policy = compile_policy(text(name))
    assert policy.warnings == ()
    assert policy.rule_count > 0


@pytest.mark.parametrize("name", sorted(INVALID_BUT_LENIENT))
def test_published_invalid_examples_fail_strictly_and_pass_leniently(name: str) -> None:
    line, column, words = INVALID_BUT_LENIENT[name]
    with pytest.raises(PolicyParsingError) as err:
        compile_policy(text(name))
    assert (err.value.line, err.value.column) == (line, column)
    assert f"Line: '{line}', Column: '{column}'" in err.value.message
    assert words in err.value.message
    lenient = compile_policy(text(name), lenient=True)
    assert lenient.warnings


def test_template_with_placeholders_is_rejected_in_both_modes() -> None:
    for lenient in (False, True):
        with pytest.raises(PolicyParsingError) as err:
            compile_policy(text("e04.policy"), lenient=lenient)
        assert (err.value.line, err.value.column) == (5, 50)
        assert "Offending symbol: '<'" in err.value.message


def test_fragments_of_the_grammar_page_parse_as_rules() -> None:
    for name in ("e01a.rule", "e01b.rule"):
        compile_policy(wrap_issuance(text(name)))


def test_2020_curly_quote_default_is_lenient_only() -> None:
    curly = text("d1.policy").replace("version=", "Version=").replace('"', "\u201d")
    with pytest.raises(PolicyParsingError):
        compile_policy(curly)
    policy = compile_policy(curly, lenient=True)
    assert any("curly" in w for w in policy.warnings)
    assert any("Version" in w for w in policy.warnings)
    assert evaluate(policy, sgx_claims()) == evaluate(compile_policy(text("d1.policy")), sgx_claims())


def test_missing_semicolon_after_version_gives_maas_diagnostic() -> None:
    """maa-policy.md §9: Offending symbol, Line, Column, Failure message, Failing rule."""
    with pytest.raises(PolicyParsingError) as err:
        compile_policy('version=1.0\n[type=="a"] => permit();')
    assert err.value.code == "PolicyParsingError"
    assert err.value.message.splitlines() == [
        "Policy Parser Exception Thrown: Offending symbol: '['",
        "Line: '2', Column: '1'",
        "Failure message: 'mismatched input '[' expecting ';''",
        "Failing rule: 'policy > versionInfo'",
    ]


# -- outcomes ------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    policy: str  # file name, or policy text when it contains "version"
    incoming: Callable[[], list[Claim]]
    authorized: bool
    claims: dict[str, Any] | None = None  # exact issued claims (None: not checked)
    properties: dict[str, Any] = field(default_factory=dict)
    lenient: bool = False
    reason: str | None = None


def _c(**kv: Any) -> Callable[[], list[Claim]]:
    return lambda: claims_from_mapping(kv)


SGX_ISSUED = {
    "is-debuggable": False,
    "sgx-mrsigner": "mrsigner1",
    "sgx-mrenclave": "e3c2f2a5b8409a1a8cb9fd1b9f1c1e4d9a4cbd0bb1fdaa7e1fbe2a13d3c1d2a1",
    "product-id": 1,
    "svn": 3,
    "tee": "sgx",
}

CASES = [
    Case("P-01", PERMIT_ALL, sgx_claims, True, {}),
    Case("P-02", "version=1.0; authorizationrules{=> deny();}; issuancerules{};", sgx_claims, False, {},
         reason=DENY_REASON),
    Case("P-03", 'version=1.0; authorizationrules{=> permit();}; issuancerules{ => issue(type="ClaimType", '
         'value="SgxClaim");};', sgx_claims, True, {"ClaimType": "SgxClaim"}),
    Case("P-04", "version=1.0; authorizationrules{=>permit();};issuancerules{};", tpm_claims, True, {}),
    Case("P-05 release enclave", "p05.policy", sgx_claims, True, {**SGX_ISSUED, "NotDebuggable": False}),
    Case("P-05 debug enclave", "p05.policy", lambda: sgx_claims(debuggable=True), False, reason=DENY_REASON),
    # Conditions are independent (§5.3): any claim with value true satisfies `[value==true]`.
    Case("P-05 other true claim", "p05.policy", lambda: [*sgx_claims(), Claim("flag", True, "Boolean")],
         False, reason=DENY_REASON),
    Case("D-1", "d1.policy", sgx_claims, True, SGX_ISSUED),
    Case("D-1 without legacy claims", "d1.policy", lambda: sgx_claims(legacy=False), False,
         reason=NO_PERMIT_REASON),
    Case("D-2", "d2.policy", lambda: sgx_claims(legacy=False), True, SGX_ISSUED),
    Case("D-3", "d3.policy", lambda: sgx_claims(legacy=False), True, SGX_ISSUED,
         {"x-ms-sgx-tcbidentifier": "azuredefault"}),
    Case("E-1a same OS", wrap_issuance(text("e01a.rule")),
         lambda: [Claim("OSName", "Linux", "String", "CustomClaim"), Claim("OSName", "Linux")], True, {},
         {"report_validity_in_minutes": 1440}),
    Case("E-1a other OS", wrap_issuance(text("e01a.rule")),
         lambda: [Claim("OSName", "Linux", "String", "CustomClaim"), Claim("OSName", "Windows")], True,
         {}, {}),
    Case("E-1b", wrap_issuance(text("e01b.rule")),
         lambda: [Claim("OSName", "Linux", "String", "CustomClaim"), Claim("OSName", "Linux")], True,
         {"OSName": "Linux"}),
    Case("E-2 lenient", "e02.policy", tpm_claims, True, {"secureBootEnabled": True, "notSafeMode": True},
         lenient=True),
    Case("E-3a", "e03a.policy", tpm_claims, False, reason=DENY_REASON),
    Case("E-3b secure boot", "e03b.policy", tpm_claims, True, {}),
    Case("E-3b no secure boot", "e03b.policy", lambda: tpm_claims(secureBootEnabled=False), False,
         reason=NO_PERMIT_REASON),
    Case("E-3b claim from attester", "e03b.policy",
         lambda: [Claim("secureBootEnabled", True, "Boolean", "CustomClaim")], False),
    Case("E-3c", "e03c.policy", tpm_claims, True, {"SecurityLevelValue": 100}),
    Case("E-5 signer 1", "e05.policy", lambda: sgx_claims(debuggable=True), True, {}),
    Case("E-5 signer 2", "e05.policy", lambda: sgx_claims(debuggable=True, mrsigner="mrsigner2"), True, {}),
    Case("E-5 other signer", "e05.policy", lambda: sgx_claims(debuggable=True, mrsigner="mrsigner3"), False,
         reason=NO_PERMIT_REASON),
    Case("E-5 release", "e05.policy", sgx_claims, False),
    Case("E-6 before, old", "e06a.policy", sgx_claims, True, {}),
    Case("E-6 before, new", "e06a.policy", lambda: sgx_claims(mrsigner="mrsigner2"), False),
    Case("E-6 during, old", "e06b.policy", sgx_claims, True, {}),
    Case("E-6 during, new", "e06b.policy", lambda: sgx_claims(mrsigner="mrsigner2"), True, {}),
    Case("E-6 after, old", "e06c.policy", sgx_claims, False),
    Case("E-6 after, new", "e06c.policy", lambda: sgx_claims(mrsigner="mrsigner2"), True, {}),
    Case("E-7 healthy", "e07.policy", tpm_claims, True, {"PlatformAttested": True}),
    Case("E-7 safe mode", "e07.policy", lambda: tpm_claims(notSafeMode=False), True, {}),
    Case("E-8 aik valid", "e08.policy", tpm_claims, True, {"PlatformAttested": True},
         {"required_pcr_mask": 15, "require_valid_aik_cert": False}),
    Case("E-8 aik invalid", "e08.policy", lambda: tpm_claims(aikValidated=False), True,
         {"PlatformAttested": False}, {"required_pcr_mask": 15, "require_valid_aik_cert": False}),
    # boolProperties is never added, so the ELAM claim is false and PlatformAttested never issued.
    Case("E-9 lenient", "e09.policy", tpm_claims, True, {}, lenient=True),
    Case("E-12", "e12.policy", tpm_claims, True, {"PlatformAttested": True}),
    Case("E-17", "e17.policy", tpm_claims, True,
         {"aikValidated": True, "SecureBootEnabled": True, "CodeIntegrityEnabled": True,
          "BitlockerStatus": True, "ELAMDriverLoaded": True}),
    Case("E-17 secure boot off, no ELAM", "e17.policy",
         lambda: tpm_claims(events=tpm_events(secure_boot=False, elam=False)), True,
         # ELAMDriverLoaded stays true: the doc's quirk (the claim exists whatever its value).
         {"aikValidated": True, "SecureBootEnabled": False, "CodeIntegrityEnabled": True,
          "BitlockerStatus": True, "ELAMDriverLoaded": True}),
    Case("E-17 no events", "e17.policy", lambda: tpm_claims(events=None), True,
         {"aikValidated": True, "SecureBootEnabled": False, "CodeIntegrityEnabled": False,
          "BitlockerStatus": False, "ELAMDriverLoaded": False}),
    Case("E-18 golden PCRs", "e18.policy", tpm_claims, True, {}),
    Case("E-18 PCR1 differs", "e18.policy",
         lambda: tpm_claims(pcrs={"PCRs": [{"Index": i, "Digests": {"SHA256": "00"}} for i in range(4)]}),
         False, reason=NO_PERMIT_REASON),
    Case("E-19", "e19.policy", tpm_claims, True, {"drtmMleValid": True, "smmLevel": 2}),
    Case("E-19 no DRTM", "e19.policy", lambda: tpm_claims(events={"Events": []}), True,
         {"drtmMleValid": False}),
    Case("E-20", "e20.policy",
         _c(vsmReportPresent=True, enclaveAuthorId="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            enclaveImageId="AQEAAAAAAAAAAAAAAAAAAA", enclaveSvn=0), True, {}),
    Case("E-20 wrong image", "e20.policy",
         _c(vsmReportPresent=True, enclaveAuthorId="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            enclaveImageId="AQEAAAAAAAAAAAAAAAAAAB", enclaveSvn=0), False),
    Case("E-21", "e21.policy", tpm_claims, True,
         {"outputBootEvents": compact({"Events": []}), "outputEvents": compact(tpm_events())}),
    Case("E-24 lenient", "e24.policy",
         _c(**{"x-ms-tpm-request-key": {"jwk": {"kty": "RSA"}, "info": {"tpm_certify": {"obj_attr": 50}}}}),
         True, {}, lenient=True),
    Case("E-24 lenient, wrong attributes", "e24.policy",
         _c(**{"x-ms-tpm-request-key": {"jwk": {"kty": "RSA"}, "info": {"tpm_certify": {"obj_attr": 51}}}}),
         False, lenient=True),
    Case("E-25 lenient", "e25.policy", lambda: sgx_claims(legacy=False), True, SGX_ISSUED,
         {"x-ms-sgx-tcbidentifier": "11"}, lenient=True),
    Case("SgxEnclave default", DEFAULT_POLICIES["SgxEnclave"], lambda: sgx_claims(legacy=False), True,
         SGX_ISSUED, {"x-ms-sgx-tcbidentifier": "azuredefault"}),
    Case("Tpm default", DEFAULT_POLICIES["Tpm"], tpm_claims, False),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_outcome(case: Case) -> None:
    source = case.policy if "version" in case.policy or not case.policy else text(case.policy)
    outcome = evaluate(compile_policy(source, lenient=case.lenient), case.incoming())
    assert outcome.authorized is case.authorized, outcome.reason
    if case.claims is not None:
        assert outcome.claims == case.claims
    if case.authorized or case.properties:
        assert outcome.properties == case.properties
    if case.reason is not None:
        assert outcome.reason == case.reason
    if not case.authorized:
        assert outcome.claims == {}


def test_e13_malicious_driver_rules() -> None:
    """E-13's JMESPath compares with bare `true`/`null` (field references), so `@ != null` holds for any
    list and the claim reads true whether or not the driver loaded: the sample's quirk, kept."""
    bool_props = text("e17.policy").split("// Retrieve bool properties Code integrity\n")[1].split("\n")[0]
    policy = compile_policy(wrap_issuance(bool_props + "\n" + text("e13.rules"), "1.2"))
    assert evaluate(policy, tpm_claims()).claims == {"MaliciousDriverLoaded": True}
    assert evaluate(policy, tpm_claims(events=None)).claims == {"MaliciousDriverLoaded": False}


def test_e14_platform_key_triple() -> None:
    add_efi = (
        'c:[type == "events", issuer=="AttestationService"] => add(type = "efiConfigVariables", value = '
        "JmesPath(c.value, \"Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG']\"));\n"
    )
    policy = compile_policy(wrap_issuance(add_efi + text("e14.rules"), "1.2"))
    assert evaluate(policy, tpm_claims()).claims == {"platformKey": "UEtEQVRB"}
    no_pk = {"Events": [e for e in tpm_events()["Events"] if e["ProcessedData"].get("UnicodeName") != "PK"]}
    assert evaluate(policy, tpm_claims(events=no_pk)).claims == {"platformKey": False}
    assert evaluate(policy, tpm_claims(events=None)).claims == {"platformKey": 0}


def test_e23_driver_lists_stay_json_text() -> None:
    outcome = evaluate(compile_policy(text("e23.policy")), tpm_claims())
    assert json.loads(outcome.claims["alldriverloads"]) == [
        "\\windows\\system32\\drivers\\acpi.sys",
        "\\Windows\\System32\\drivers\\WdBoot.sys",
    ]
    assert outcome.claims["DriverLoadPolicy"] == "null"  # lower-case `events[...]` finds nothing


def test_e10_lenient_reading() -> None:
    e9 = text("e09.policy")
    rules = e9[e9.index('c:[type == "events"') : e9.index("//Verify if Defender")].strip().splitlines()
    rules = [r for r in rules if r]
    rules[1] = rules[1].replace('issuer=="AttestationPolicy"]=> add(', 'issuer="AttestationPolicy"]=> issue(')
    rules[2] = rules[2].replace("add(", "issue(")
    e10 = "version=1.2;authorizationrules { \n  => permit();\n};issuancerules {\n" + "\n".join(rules) + "\n};"
    with pytest.raises(PolicyParsingError):
        compile_policy(e10)
    policy = compile_policy(e10, lenient=True)
    assert evaluate(policy, tpm_claims()).claims == {"secureBootEnabled": True}
    off = evaluate(policy, tpm_claims(events=tpm_events(secure_boot=False)))
    assert off.claims == {"secureBootEnabled": False}


def test_pcrs_cannot_be_issued() -> None:
    policy = compile_policy(
        wrap_issuance(
            'c:[type=="pcrs", issuer=="AttestationService"] => issue(type="p", value=c.value);', "1.2"
        )
    )
    with pytest.raises(PolicyEvaluationError, match="read-only"):
        evaluate(policy, tpm_claims())
