"""Policy evaluation speed: the SGX default and a 30-rule v1.2 TPM policy with JmesPath over an event list.

There is no peer implementation of MAA's policy language in Python (MAA's engine is closed, native code),
so ``ratio`` is the measured SGX-default rate divided by the 20,000 evaluations/s target of issue 3.
``tpm_ratio_vs_stock_jmespath`` is the TPM policy's rate over the same policy evaluated with the stock
``jmespath`` tree interpreter (bounded as the service bounded it before, parsing every JSON text it is
given) in place of the compiled queries, in the same run.
Run: .venv/bin/python bench/policy.py
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import jmespath.visitor

from affidavit.policy import DEFAULT_POLICIES, claims_from_mapping, compile_policy, evaluate
from affidavit.policy import functions as policy_functions
from timing import rate

TARGET = 20_000


def sgx_incoming() -> list[Any]:
    mrenclave = "e3c2f2a5b8409a1a8cb9fd1b9f1c1e4d9a4cbd0bb1fdaa7e1fbe2a13d3c1d2a1"
    mrsigner = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
    collateral = {k: "ab" * 32 for k in ("qeidcertshash", "qeidcrlhash", "qeidhash", "quotehash")}
    return claims_from_mapping(
        {
            "x-ms-sgx-is-debuggable": False,
            "x-ms-sgx-mrsigner": mrsigner,
            "x-ms-sgx-mrenclave": mrenclave,
            "x-ms-sgx-product-id": 1,
            "x-ms-sgx-svn": 3,
            "x-ms-sgx-report-data": "00" * 64,
            "x-ms-sgx-config-id": "00" * 64,
            "x-ms-sgx-collateral": collateral,
            "x-ms-attestation-type": "sgx",
            "$is-debuggable": False,
            "$sgx-mrsigner": mrsigner,
            "$sgx-mrenclave": mrenclave,
            "$product-id": 1,
            "$svn": 3,
            "$tee": "sgx",
        }
    )


def tpm_events(n: int = 200) -> dict[str, Any]:
    events = []
    for i in range(n):
        if i % 10 == 0:
            events.append(
                {
                    "EventSeq": i,
                    "PcrIndex": 7,
                    "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                    "ProcessedData": {
                        "VariableGuid": "8BE4DF61-93CA-11D2-AA0D-00E098032B8C",
                        "UnicodeName": ["SecureBoot", "PK", "KEK", "db", "dbx"][(i // 10) % 5],
                        "VariableData": "AQ",
                    },
                }
            )
        elif i % 3 == 0:
            events.append(
                {
                    "EventSeq": i,
                    "PcrIndex": [12, 13, 19, 20][i % 4],
                    "EventTypeString": "EV_EVENT_TAG",
                    "ProcessedData": {
                        "EVENT_TRUSTBOUNDARY": {
                            "EVENT_CODEINTEGRITY": True,
                            "EVENT_BITLOCKER_UNLOCK": {"Value": 0},
                            "EVENT_LOADEDMODULE_AGGREGATION": [
                                {
                                    "EVENT_FILEPATH": f"\\windows\\system32\\drivers\\d{i}.sys",
                                    "EVENT_IMAGEVALIDATED": True,
                                }
                            ],
                        }
                    },
                }
            )
        else:
            events.append(
                {
                    "EventSeq": i,
                    "PcrIndex": i % 10,
                    "EventTypeString": "EV_IPL",
                    "ProcessedData": {"String": f"e{i}"},
                }
            )
    return {"Events": events}


def tpm_policy() -> str:
    """30 rules in the style of the published v1.2 TPM samples."""
    ev = 'c:[type=="events", issuer=="AttestationService"]'
    ap = 'issuer=="AttestationPolicy"'
    guid = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C"
    tag = "EventTypeString == 'EV_EVENT_TAG'"
    pcrs = "(PcrIndex == `12` || PcrIndex == `13` || PcrIndex == `19` || PcrIndex == `20`)"
    wd = "\\\\windows\\\\system32\\\\drivers\\\\d3.sys"

    def jv(query: str) -> str:
        return f'JsonToClaimValue(JmesPath(c.value, "{query}"))'

    rules = [
        f'{ev} => add(type="efiVars", value=JmesPath(c.value, "Events[?EventTypeString == '
        f"'EV_EFI_VARIABLE_DRIVER_CONFIG' && ProcessedData.VariableGuid == '{guid}']\"));",
        f'{ev} => add(type="boolProperties", value=JmesPath(c.value, '
        f'"Events[? {tag} && {pcrs}].ProcessedData.EVENT_TRUSTBOUNDARY"));',
    ]
    for name in ("SecureBoot", "PK", "KEK", "db", "dbx"):
        query = (
            f"[?ProcessedData.UnicodeName == '{name}'] | length(@) >= `1` && @[0].ProcessedData.VariableData"
        )
        rules.append(
            f'c:[type=="efiVars", {ap}] => add(type="{name}Found", value=JmesPath(c.value, "{query}"));'
        )
        rules.append(
            f'c:[type=="{name}Found", {ap}] => issue(type="{name}", value=JsonToClaimValue(c.value));'
        )
        rules.append(f'![type=="{name}", {ap}] => issue(type="{name}", value=false);')
    elam = (
        "[*].EVENT_LOADEDMODULE_AGGREGATION[] | "
        f"[? EVENT_IMAGEVALIDATED == `true` && equals_ignore_case(EVENT_FILEPATH, '{wd}')] | length(@) > `0`"
    )
    unlock = "[*].EVENT_BITLOCKER_UNLOCK | @[? Value != `0`].Value | @[0]"
    rules += [
        f'c:[type=="boolProperties", {ap}] => add(type="ciSet", value={jv("[*].EVENT_CODEINTEGRITY")});',
        f'c:[type=="ciSet", {ap}] => issue(type="CodeIntegrityEnabled", '
        "value=ContainsOnlyValue(c.value, true));",
        f'![type=="CodeIntegrityEnabled", {ap}] => issue(type="CodeIntegrityEnabled", value=false);',
        f'c:[type=="boolProperties", {ap}] => add(type="elam", value={jv(elam)});',
        f'[type=="elam", value==true, {ap}] => issue(type="ElamLoaded", value=true);',
        f'![type=="ElamLoaded", {ap}] => issue(type="ElamLoaded", value=false);',
        f'c:[type=="boolProperties", {ap}] => add(type="bitlocker", value={jv(unlock)});',
        f'[type=="bitlocker", {ap}] => issue(type="BitlockerStatus", value=true);',
        f'![type=="bitlocker", {ap}] => issue(type="BitlockerStatus", value=false);',
        f'{ev} => add(type="eventCount", value={jv("length(Events)")});',
        'c:[type=="eventCount", value>=1] => issue(type="eventCount", value=c.value);',
        'c:[type=="aikValidated"] => issue(type="aikValidated", value=c.value);',
        '[type=="SecureBoot", value==true] && [type=="CodeIntegrityEnabled", value==true] => '
        'issue(type="PlatformAttested", value=true);',
    ]
    body = "\n".join(rules)
    return f"version=1.2;\nauthorizationrules{{\n=> permit();\n}};\nissuancerules{{\n{body}\n}};"


class _StockInterpreter(jmespath.visitor.TreeInterpreter):
    """jmespath's own interpreter with the step and list bounds the service applied before compiling."""

    def __init__(self, steps: int) -> None:
        super().__init__(jmespath.Options(custom_functions=policy_functions._FUNCTIONS))
        self.steps = steps

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        self.steps -= 1
        if self.steps < 0:
            raise RuntimeError("budget")
        result = super().visit(node, *args, **kwargs)
        if type(result) is list and len(result) > policy_functions.MAX_JMES_LIST:
            raise RuntimeError("list")
        return result


def stock_search(st: Any, document: str, query: str) -> str:
    parsed = jmespath.compile(query)
    data = json.loads(document)
    interpreter = _StockInterpreter(st.jmes_steps)
    try:
        return policy_functions._dump(interpreter.visit(parsed.parsed, data))
    finally:
        st.jmes_steps = interpreter.steps


def main() -> None:
    sgx_text = DEFAULT_POLICIES["SgxEnclave"]
    sgx = compile_policy(sgx_text)
    sgx_claims = sgx_incoming()
    outcome = evaluate(sgx, sgx_claims)
    assert outcome.authorized and len(outcome.claims) == 6

    tpm_text = tpm_policy()
    tpm = compile_policy(tpm_text)
    assert tpm.rule_count == 31, tpm.rule_count  # 30 issuance rules + the permit
    tpm_claims = claims_from_mapping(
        {"aikValidated": True, "events": tpm_events(), "secureBootEnabled": True}
    )
    tpm_outcome = evaluate(tpm, tpm_claims)
    assert tpm_outcome.authorized and tpm_outcome.claims["CodeIntegrityEnabled"] is True

    compile_rate = rate(lambda: compile_policy(sgx_text), 1.0)
    sgx_rate = rate(lambda: evaluate(sgx, sgx_claims), 2.0)
    tpm_rate = rate(lambda: evaluate(tpm, tpm_claims), 2.0)
    compiled_search = policy_functions.jmes_search
    policy_functions.jmes_search = stock_search
    try:
        stock_outcome = evaluate(tpm, tpm_claims)
        assert stock_outcome.claims == tpm_outcome.claims
        stock_rate = rate(lambda: evaluate(tpm, tpm_claims), 2.0)
    finally:
        policy_functions.jmes_search = compiled_search
    events_kb = len(next(c.value for c in tpm_claims if c.type == "events")) / 1024

    print(f"SGX default (8 rules, {len(sgx_claims)} incoming claims): {sgx_rate:,.0f} evaluations/s")
    print(
        f"  target {TARGET:,}/s -> ratio {sgx_rate / TARGET:.2f} "
        "(no Python peer exists: ratio is measured / target)"
    )
    print(
        f"30-rule v1.2 TPM policy, JmesPath over {events_kb:.0f} KiB of events: {tpm_rate:,.0f} evaluations/s"
    )
    print(
        f"  same policy, stock jmespath interpreter: {stock_rate:,.0f} evaluations/s "
        f"-> compiled is {tpm_rate / stock_rate:.2f}x"
    )
    print(f"compile SGX default: {compile_rate:,.0f} compilations/s")
    print(
        json.dumps(
            {
                "bench": "policy",
                "sgx_default_evals_per_s": round(sgx_rate),
                "tpm_30_rule_jmespath_evals_per_s": round(tpm_rate),
                "tpm_stock_jmespath_evals_per_s": round(stock_rate),
                "tpm_ratio_vs_stock_jmespath": round(tpm_rate / stock_rate, 2),
                "sgx_default_compiles_per_s": round(compile_rate),
                "target_evals_per_s": TARGET,
                "peer": None,
                "ratio": round(sgx_rate / TARGET, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
