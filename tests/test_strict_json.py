"""Issue 10 point 7: NaN and Infinity are refused wherever tokens, claims and request bodies are read.

``json.loads`` takes ``NaN``, ``Infinity`` and turns ``1e999`` into ``inf``; a relying party then accepted
``exp: NaN`` (never "expired") and ``x-ms-sgx-svn: NaN``. Every reader now goes through
``affidavit.strict_json.loads``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit import strict_json
from affidavit.jose import b64url
from affidavit.relying_party import Expectations, RelyingPartyError, verify_token
from affidavit.service import ServiceConfig, create_app
from affidavit.tokens import SigningKey, TokenError, parse_jws
from tests.service.helpers import ADMIN_TOKEN, AsgiClient

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400"]
KEY = SigningKey.generate("https://issuer.test", now=datetime.now(UTC))


@pytest.mark.parametrize("number", NON_FINITE)
def test_loader_refuses_non_finite_numbers(number: str) -> None:
    with pytest.raises(ValueError):
        strict_json.loads(f'{{"a": [1, {number}]}}')


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                    | st.floats(allow_nan=False, allow_infinity=False),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                               max_size=3),
                    max_leaves=15))
def test_loader_reads_every_finite_document(doc: object) -> None:
    assert strict_json.loads(json.dumps(doc)) == doc


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_loader_result_is_always_finite(value: float) -> None:
    try:
        out = strict_json.loads(json.dumps(value))
    except ValueError:
        assert not math.isfinite(value)
    else:
        assert math.isfinite(out)


def _signed(payload_text: str) -> str:
    header = b64url(json.dumps({"alg": "RS256", "kid": KEY.kid, "typ": "JWT"}).encode())
    body = b64url(payload_text.encode())
    return f"{header}.{body}.{b64url(KEY.sign(f'{header}.{body}'.encode()))}"


@pytest.mark.parametrize("number", NON_FINITE)
def test_relying_party_refuses_non_finite_exp(number: str) -> None:
    now = int(time.time())
    token = _signed(f'{{"iss": "https://issuer.test", "iat": {now}, "exp": {number}}}')
    with pytest.raises(RelyingPartyError) as info:
        verify_token(token, {KEY.kid: KEY.certificate.public_key()}, issuer="https://issuer.test", now=now)
    assert info.value.code == "token_malformed"


def test_relying_party_refuses_non_finite_svn() -> None:
    now = int(time.time())
    token = _signed(f'{{"iss": "https://issuer.test", "exp": {now + 60}, "x-ms-sgx-svn": NaN}}')
    with pytest.raises(RelyingPartyError):
        verify_token(token, {KEY.kid: KEY.certificate.public_key()}, issuer="https://issuer.test", now=now,
                     expectations=Expectations(min_svn=1))


@pytest.mark.parametrize("number", NON_FINITE)
def test_management_jws_refuses_non_finite_numbers(number: str) -> None:
    body = b64url(f'{{"AttestationPolicy": "eA", "exp": {number}}}'.encode())
    with pytest.raises(TokenError) as info:
        parse_jws(f"eyJhbGciOiJub25lIn0.{body}.")
    assert info.value.code == "bad_json"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> AsgiClient:
    data: Path = tmp_path_factory.mktemp("strict-json")
    return AsgiClient(create_app(ServiceConfig(data_dir=data, admin_token=ADMIN_TOKEN)))


@pytest.mark.parametrize("number", NON_FINITE)
def test_attest_body_with_non_finite_number_is_400(client: AsgiClient, number: str) -> None:
    body = f'{{"quote": "AAAA", "x": {number}}}'
    r = client.post("/attest/SgxEnclave?api-version=2022-08-01", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_runtime_json_with_non_finite_number_is_400(client: AsgiClient, number: str) -> None:
    runtime = b64url(f'{{"svn": {number}}}'.encode())
    body = {"quote": "AAAA", "runtimeData": {"data": runtime, "dataType": "JSON"}}
    r = client.post("/attest/SgxEnclave?api-version=2022-08-01", json=body)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_tpm_message_with_non_finite_number_is_400(client: AsgiClient, number: str) -> None:
    inner = f'{{"payload": {{"type": "aikcert", "n": {number}}}}}'.encode()
    r = client.post("/attest/Tpm?api-version=2022-08-01", json={"data": b64url(inner)})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


def test_jmespath_json_arguments_refuse_non_finite_numbers() -> None:
    from affidavit.policy import Claim, PolicyEvaluationError, compile_policy, evaluate

    policy = compile_policy(
        'version=1.2; authorizationrules{ => permit(); };'
        ' issuancerules{ c:[type=="doc"] => issue(type="x", value=JmesPath(c.value, "a")); };'
    )
    try:
        outcome = evaluate(policy, [Claim("doc", '{"a": 1e999}')])
    except PolicyEvaluationError:
        return
    assert "x" not in outcome.claims and not outcome.authorized


# -- duplicate members (issue 13 pt 3: one strictness) -----------------------------------------------------
# Python keeps the last of two equal names, many parsers the first: a body that reads one way here and
# another way in a proxy, a log pipeline or a relying party must not be accepted anywhere.

json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


def _dumps_with_duplicate(doc: object, target: int, counter: list[int]) -> str:
    """``doc`` as JSON text, its ``target``-th non-empty object (depth first) naming a member twice."""
    if isinstance(doc, dict) and doc:
        index = counter[0]
        counter[0] += 1
        members = [f"{json.dumps(k)}:{_dumps_with_duplicate(v, target, counter)}" for k, v in doc.items()]
        if index == target:
            first = next(iter(doc))
            members.append(f"{json.dumps(first)}:{json.dumps(['second', doc[first]])}")
        return "{" + ",".join(members) + "}"
    if isinstance(doc, dict):
        return "{}"
    if isinstance(doc, list):
        return "[" + ",".join(_dumps_with_duplicate(v, target, counter) for v in doc) + "]"
    return json.dumps(doc)


@given(json_docs, st.integers(0, 20))
def test_loader_refuses_a_duplicate_member_at_any_depth(doc: object, where: int) -> None:
    counter = [0]
    _dumps_with_duplicate(doc, -1, counter)  # count the non-empty objects
    if counter[0] == 0:
        doc, counter = {"k": doc}, [1]
    text = _dumps_with_duplicate(doc, where % counter[0], [0])
    with pytest.raises(strict_json.DuplicateMember):
        strict_json.loads(text)
    assert strict_json.loads(_dumps_with_duplicate(doc, -1, [0])) == doc


def _duplicate_bodies(field: str) -> list[str]:
    """The evidence member twice, and a duplicate nested in an object the route reads."""
    return [
        f'{{"{field}": "AAAA", "{field}": "QUJD"}}',
        f'{{"{field}": "AAAA", "runtimeData": {{"data": "AAAA", "data": "QUJD", "dataType": "Binary"}}}}',
        f'{{"nonce": "n", "{field}": "AAAA", "draftPolicyForAttestation": "x", "nonce": "m"}}',
    ]


def _route_cases() -> list[tuple[str, str]]:
    from affidavit.attestation_types import AZURE_GUEST_SHAPE, TPM_SHAPE, all_types

    cases = []
    for kind in all_types():
        if kind.request_shape == TPM_SHAPE:
            inner = b64url(b'{"payload": {"type": "aikcert"}, "payload": {"type": "x"}}')
            bodies = ['{"data": "AAAA", "data": "QUJD"}', json.dumps({"data": inner})]
        elif kind.request_shape == AZURE_GUEST_SHAPE:
            info = b64url(b'{"AttestationProtocolVersion": "2.0", "AttestationProtocolVersion": "1.0"}')
            bodies = ['{"AttestationInfo": "AAAA", "AttestationInfo": "QUJD"}',
                      json.dumps({"AttestationInfo": info})]
        else:
            bodies = _duplicate_bodies(kind.evidence_field)
        cases += [(kind.name, body) for body in bodies]
    return cases


@pytest.mark.parametrize(("kind", "body"), _route_cases())
def test_attest_body_with_a_duplicate_member_is_400_on_every_route(client: AsgiClient, kind: str,
                                                                  body: str) -> None:
    r = client.post(f"/attest/{kind}?api-version=2022-08-01", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidParameter"
    assert "duplicate member" in r.json()["error"]["message"]


def test_evidence_documents_refuse_duplicate_members() -> None:
    """JSON inside evidence (MAA's SNP report document, the HCL runtime claims, a sealed token's envelope)
    is read with the same strictness as the request around it."""
    from affidavit.evidence.azure_cvm.errors import HclFormatError
    from affidavit.evidence.azure_cvm.hcl import parse_runtime_claims
    from affidavit.evidence.snp.errors import SnpError
    from affidavit.evidence.snp.maa import parse_document
    from affidavit.tokens.sealed import unseal_token

    with pytest.raises(SnpError):
        parse_document(b'{"SnpReport": "AAAA", "SnpReport": "QUJD"}')
    with pytest.raises(HclFormatError):
        parse_runtime_claims(b'{"keys": [], "keys": [{"kid": "x"}]}')
    with pytest.raises(TokenError) as info:
        unseal_token(b64url(b'{"Jwt": "AA", "Jwt": "QQ"}'), lambda key: key)
    assert info.value.code == "bad_json"


# -- the orjson fast path decides exactly as the checked reader ----------------------------------------------

_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
_docs = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


def _typed(value: object) -> object:
    """``value`` with every number's type made part of it (1 == 1.0 == True in Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def _outcome(reader: Callable[[str | bytes], object], text: str | bytes) -> object:
    try:
        return ("ok", _typed(reader(text)))
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__, str(exc))


def _writings(doc: object) -> list[bytes]:
    import orjson

    try:
        own = orjson.dumps(doc)
    except TypeError:  # integers beyond 64 bits
        own = json.dumps(doc, separators=(",", ":")).encode()
    return [own, json.dumps(doc).encode(), json.dumps(doc, separators=(",", ":")).encode(),
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")]


_EDITS = st.sampled_from(["", "x", "1", '"', "{", "\\", "\u00e9"])


@given(_docs, st.integers(0, 3), st.integers(0, 400), _EDITS, st.booleans())
def test_loads_decides_every_text_as_the_checked_reader(doc: object, writer: int, at: int, edit: str,
                                                        as_str: bool) -> None:
    """Any writing of any document, edited anywhere or not, given as bytes or str: the same value (types
    included) or the same error from ``loads`` (orjson first) as from the checked reader alone."""
    text = _writings(doc)[writer]
    if edit:
        i = at % (len(text) + 1)
        text = text[:i] + edit.encode() + text[i + 1 :]
    data: str | bytes = text
    if as_str:
        try:
            data = text.decode("utf-8")
        except UnicodeDecodeError:
            return
    assert _outcome(strict_json.loads, data) == _outcome(strict_json.checked_loads, data)


@given(st.dictionaries(st.text(max_size=4), json_docs, min_size=1, max_size=3), st.booleans())
def test_a_duplicate_in_orjsons_own_writing_is_refused(doc: dict[str, object], same_value: bool) -> None:
    """orjson's compact writing with its first member written again (the same value or another): the
    fast path must not take it, whatever the value."""
    import orjson

    try:
        text = orjson.dumps(doc)
    except TypeError:
        return
    first, value = next(iter(doc.items()))
    again = orjson.dumps({first: value if same_value else [value]})[1:-1]
    with pytest.raises(strict_json.DuplicateMember):
        strict_json.loads(text[:-1] + b"," + again + b"}")
