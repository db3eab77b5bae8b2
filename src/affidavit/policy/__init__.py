"""MAA's attestation policy language: parse once, evaluate many times (see docs/architecture.md).

Public API: ``Claim``, ``compile_policy``, ``PolicyCompiler``, ``CompiledPolicy``, ``evaluate``,
``PolicyOutcome``, ``explain`` (a rule-by-rule trace), ``policy_hash``, ``DEFAULT_POLICIES``,
``claims_from_mapping``, and the errors
``PolicyError`` / ``PolicyParsingError`` / ``PolicyEvaluationError``. The choices made where MAA's
behaviour is undocumented are listed in the docstrings of ``parser``, ``evaluator``, ``functions``
and ``defaults``.
"""

from affidavit.policy.claims import (
    CUSTOM_CLAIM_PREFIX,
    Claim,
    claims_from_list,
    claims_from_mapping,
    custom_claim,
)
from affidavit.policy.compiler import PolicyCompiler
from affidavit.policy.defaults import DEFAULT_POLICIES
from affidavit.policy.errors import PolicyError, PolicyEvaluationError, PolicyParsingError
from affidavit.policy.evaluator import PROPERTY_DEFAULTS, PolicyOutcome, configuration_properties, evaluate
from affidavit.policy.explain import Explanation, RuleTrace, explain
from affidavit.policy.hashing import policy_hash
from affidavit.policy.model import CompiledPolicy
from affidavit.policy.parser import compile_policy

__all__ = [
    "CUSTOM_CLAIM_PREFIX",
    "DEFAULT_POLICIES",
    "PROPERTY_DEFAULTS",
    "Claim",
    "CompiledPolicy",
    "Explanation",
    "PolicyCompiler",
    "PolicyError",
    "PolicyEvaluationError",
    "PolicyOutcome",
    "PolicyParsingError",
    "RuleTrace",
    "claims_from_list",
    "claims_from_mapping",
    "custom_claim",
    "compile_policy",
    "configuration_properties",
    "evaluate",
    "explain",
    "policy_hash",
]
