"""Claims as the policy engine sees them, and the conversion from plain mappings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affidavit.policy.errors import PolicyEvaluationError

ClaimValue = bool | int | str

ISSUERS = ("AttestationService", "AttestationPolicy", "CustomClaim")
VALUE_TYPES = ("String", "Integer", "Boolean")

# Claims a client supplies (TPM ``att_data.custom_claims``) reach policies with issuer ``CustomClaim`` and
# their name behind this prefix (maa-policy §6.2: MAA prefixes them with a service-chosen URL), so no
# client value can ever be taken for a claim the service measured: ``secureBootEnabled`` is the service's,
# ``urn:affidavit:customclaim:secureBootEnabled`` the client's. No service claim starts with ``urn:``.
CUSTOM_CLAIM_PREFIX = "urn:affidavit:customclaim:"


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim: MAA's (type, value, valueType, issuer) quadruple."""

    type: str
    value: ClaimValue
    value_type: str = "String"
    issuer: str = "AttestationService"


def custom_claim(name: str, value: ClaimValue, value_type: str = "String") -> Claim:
    """A client-supplied claim as policies see it: prefixed type, issuer ``CustomClaim``."""
    return Claim(CUSTOM_CLAIM_PREFIX + name, value, value_type, "CustomClaim")


def value_type_of(value: Any) -> str:
    """MAA valueType of a Python value; bool is checked before int because bool is an int in Python."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, str):
        return "String"
    raise PolicyEvaluationError(
        f"claim value of type {type(value).__name__} is not String, Integer or Boolean"
    )


def compact_json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PolicyEvaluationError(f"claim value cannot be JSON text ({type(exc).__name__})") from None


def claims_from_mapping(d: Mapping[str, Any], issuer: str = "AttestationService") -> list[Claim]:
    """Turn ``{type: value}`` into claims; objects and arrays become String claims holding compact JSON,
    which is how MAA presents its JSON claims (``events``, ``pcrs``, ``x-ms-sgx-collateral``) to policies.
    Fractions also become their JSON text (claims have no fractional type); ``None`` values are left out."""
    out: list[Claim] = []
    for name, value in d.items():
        if isinstance(value, dict | list | float):
            out.append(Claim(str(name), compact_json(value), "String", issuer))
        elif value is None:
            continue
        else:
            out.append(Claim(str(name), value, value_type_of(value), issuer))
    return out


def claims_from_list(items: list[Any]) -> list[Claim]:
    """Read ``[{"type", "value", "valueType", "issuer"}]`` (claim files); value types are checked."""
    out: list[Claim] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or "value" not in item:
            raise PolicyEvaluationError(f"claim #{n}: expected an object with string 'type' and a 'value'")
        value = item["value"]
        if isinstance(value, dict | list):
            value = compact_json(value)
        declared = item.get("valueType", value_type_of(value))
        if declared not in VALUE_TYPES or declared != value_type_of(value):
            raise PolicyEvaluationError(
                f"claim #{n} ({item['type']}): valueType {declared!r} does not fit its value"
            )
        issuer = item.get("issuer", "AttestationService")
        if issuer not in ISSUERS:
            raise PolicyEvaluationError(f"claim #{n} ({item['type']}): unknown issuer {issuer!r}")
        out.append(Claim(item["type"], value, declared, issuer))
    return out
