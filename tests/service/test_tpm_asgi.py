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


def test_context_key_is_its_own_secret_shared_through_the_database(client: AsgiClient,
    tmp_path: Path) -> None:
    """The service_context key is a secret of its own (issue 12 point 4): sealed under the KEK in the
    database, shared by a second server on that database, untouched when every signing key is replaced."""
    from datetime import timedelta

    from affidavit.service.tpm_protocol import TpmProtocolError
    from affidavit.service.tpm_route import _open_context
    from affidavit.store import TPM_CONTEXT_SECRET
    from affidavit.store.kek import secret_associated_data
    from affidavit.store.keyring import rotate_keyring

    state = client.app.state.affidavit
    context = _context_of(client)
    now = state.clock()
    stored = state.store.get_secret(TPM_CONTEXT_SECRET)
    assert stored is not None and stored.kek_id == state.kek.id
    assert state.kek.open(stored.sealed, secret_associated_data(TPM_CONTEXT_SECRET)) == state.context_key
    assert state.context_key not in stored.sealed
    # every signing key replaced and the old ones dropped at once: contexts in flight still open
    for _ in range(2):
        rotate_keyring(state.store, state.issuer, now=now, kek=state.kek, delay=timedelta(0),
                       max_token_lifetime=timedelta(0))
    state._keyring = None
    assert len(state.store.list_signing_keys()) == 1
    assert len(_open_context(state, context, now.timestamp())) == 16
    # a second server on the same database and KEK (another data directory) opens it too
    data = state.config.data_dir
    twin = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path / "twin",
        database_url=state.config.store_url,
                                               key_encryption_key_file=data / "key-encryption-key",
                                               admin_token="x")))
    assert len(_open_context(twin.app.state.affidavit, context, now.timestamp())) == 16
    twin.close()
    other = AsgiClient(create_app(ServiceConfig(data_dir=tmp_path / "other", admin_token="x")))
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


def test_request_key_info_in_the_token_is_only_what_was_checked(client: AsgiClient) -> None:
    """``x-ms-tpm-request-key.info`` is what the service attests about the request key (in MAA's tokens,
    ``tpm_certify`` means a TPM2_Certify it verified): a client's extra members, such as a
    ``tpm_certify`` it made up next to its ``tpm_quote`` binding, must not reach the token."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from affidavit.client.tpm import rsa_jwk, sign_request
    from affidavit.service.tpm_protocol import TpmProtocolError
    from affidavit.service.tpm_route import open_request

    state = client.app.state.affidavit
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = rsa_jwk(key.public_key())
    made_up = {"name_alg": 11, "obj_attr": 0x00050072, "auth_policy": ""}
    for info in (
        {"tpm_quote": {"hash_alg": "sha-256"}, "tpm_certify": made_up},
        {"tpm_quote": {"hash_alg": "sha-256", "tpm_certify": made_up}},
    ):
        att_data = {"request_key": {"jwk": jwk, "info": info}, "service_context": _context_of(client),
                    "tpm_att_data": {}}
        message = {"request": sign_request({"att_type": "basic", "att_data": att_data}, key)}
        try:
            submitted = open_request(state, message)
        except TpmProtocolError:
            continue  # refusing what it cannot check is as good
        info = submitted.request_claims["x-ms-tpm-request-key"]["info"]
        assert info == {"tpm_quote": {"hash_alg": "sha-256"}}
