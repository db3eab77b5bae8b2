"""``/attest/Tpm`` in process: whatever a client sends, the answer is a challenge or an MAA 400 error."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.service import ServiceConfig, create_app
from tests.service.helpers import AsgiClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiClient]:
    data: Path = tmp_path_factory.mktemp("tpm-asgi")
    c = AsgiClient(create_app(ServiceConfig(data_dir=data, admin_token="x")))
    yield c
    c.close()


def _post(client: AsgiClient, message: object) -> tuple[int, dict]:
    inner = json.dumps({"payload": message}).encode()
    r = client.post("/attest/Tpm?api-version=2020-10-01", json={"data": _b64(inner)})
    return r.status_code, r.json()


def test_init_answers_a_challenge(client: AsgiClient) -> None:
    status, body = _post(client, {"type": "aikcert"})
    assert status == 200
    payload = json.loads(base64.urlsafe_b64decode(body["data"] + "=" * (-len(body["data"]) % 4)))["payload"]
    assert set(payload) == {"challenge", "service_context"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=25,
)
_messages = st.one_of(
    _json,
    st.fixed_dictionaries({"type": _json}),
    st.fixed_dictionaries({"request": st.one_of(st.text(max_size=200), _json)}),
    st.builds(lambda h, p, s: {"request": f"{_b64(h)}.{_b64(p)}.{_b64(s)}"},
              st.sampled_from([b'{"alg":"PS256","typ":"attReq"}', b'{"alg":"RS256"}', b"{}"]),
              st.builds(lambda d: json.dumps({"att_type": "basic", "att_data": d}).encode(),
                        st.dictionaries(st.sampled_from(["tpm_att_data", "attest_key", "request_key",
                                                         "service_context", "challenge"]), _json)),
              st.binary(max_size=64)),
)


@given(_messages)
def test_any_message_gets_a_challenge_or_an_maa_400(client: AsgiClient, message: object) -> None:
    status, body = _post(client, message)
    if status == 200:
        assert message == {"type": "aikcert"}
    else:
        assert status == 400 and set(body["error"]) == {"code", "message"}


def _context_of(client: AsgiClient) -> str:
    body = client.post("/attest/Tpm", json={"data": _b64(b'{"payload": {"type": "aikcert"}}')}).json()
    payload = json.loads(base64.urlsafe_b64decode(body["data"] + "=" * (-len(body["data"]) % 4)))["payload"]
    return str(payload["service_context"])


def test_contexts_survive_key_rotation_but_not_a_foreign_server(client: AsgiClient, tmp_path: Path) -> None:
    from affidavit.service.tpm_protocol import TpmProtocolError
    from affidavit.service.tpm_route import _open_context
    from affidavit.store.keyring import rotate_keyring

    state = client.app.state.affidavit
    context = _context_of(client)
    now = state.clock()
    rotate_keyring(state.store, state.issuer, now=now)
    state._keyring = None  # pick the rotation up now rather than after the refresh interval
    assert len(_open_context(state, context, now.timestamp())) == 16  # sealed by the now-retired key
    assert _context_of(client) != context
    other = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path, admin_token="x")))
    foreign = _context_of(other)
    other.close()
    with pytest.raises(TpmProtocolError, match="does not hold"):
        _open_context(state, foreign, now.timestamp())


def test_ledger_refuses_reuse_and_forgets_expired_challenges(client: AsgiClient) -> None:
    from affidavit.service.tpm_protocol import CONTEXT_TTL_SECONDS, TpmProtocolError
    from affidavit.service.tpm_route import LEDGER_SKEW, consume_challenge

    state = client.app.state.affidavit
    consume_challenge(state, b"a" * 16, 1000.0)
    with pytest.raises(TpmProtocolError, match="already used"):
        consume_challenge(state, b"a" * 16, 1000.0 + CONTEXT_TTL_SECONDS + LEDGER_SKEW)
    consume_challenge(state, b"a" * 16, 1001.0 + CONTEXT_TTL_SECONDS + LEDGER_SKEW)  # expired anyway
