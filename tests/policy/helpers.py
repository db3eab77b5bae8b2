"""Small helpers for policy tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from affidavit.policy import Claim, compile_policy, evaluate


def run_rules(
    rules: str, incoming: Sequence[Claim] = (), show: Sequence[str] = (), **kw: Any
) -> dict[str, Any]:
    """Evaluate v1.2 issuance ``rules``, then issue every policy-made claim whose type is in ``show`` so the
    claims that ``add`` created become visible; returns the token claims."""
    reveal = "".join(
        f'c:[type=="{t}", issuer=="AttestationPolicy"] => issue(type="{t}", value=c.value);\n' for t in show
    )
    text = f"version=1.2;\nauthorizationrules{{=> permit();}};\nissuancerules{{\n{rules}\n{reveal}}};"
    outcome = evaluate(compile_policy(text, **kw), incoming)
    assert outcome.authorized
    return outcome.claims
