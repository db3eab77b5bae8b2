"""MAA's TPM protocol messages: envelope, sealed service context, signed request, evidence shapes."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from affidavit.client.http import envelope
from affidavit.client.tpm import canonical_jwk as client_canonical_jwk
from affidavit.client.tpm import quote_binding, rsa_jwk, sign_request
from affidavit.evidence.tpm import TpmError
from affidavit.jose import b64url
from affidavit.service.tpm_protocol import (
    CHALLENGE_BYTES,
    PCP_MAGIC_V1,
    PCP_MAGIC_V2,
    ContextSealer,
    TpmProtocolError,
    canonical_jwk,
    challenge_message,
    check_init,
    check_request_challenge,
    decode_envelope,
    derive_context_key,
    encode_envelope,
    expected_qualifying_data,
    extract_evidence,
    parse_pcp_claim,
    verify_request,
)

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sealer() -> ContextSealer:
    return ContextSealer(derive_context_key(b"secret one"))


def _claim() -> dict:
    return {"quote": b64url(b"\xffTCG" + bytes(20)), "signature": b64url(b"\x00\x14" + bytes(10)),
            "pcrs": [{"algorithm": 11, "values": [{"index": 0, "digest": b64url(bytes(32))},
                                                  {"index": 7, "digest": b64url(b"\x07" * 32)}]},
                     {"algorithm": 4, "values": [{"index": 0, "digest": b64url(bytes(20))}]}]}


def _att_data(jwk: dict, context: str, *, bind: bool = True) -> dict:
    data = {
        "tpm_att_data": {"srtm_boot_log": b64url(b"log"), "aik_pub": b64url(b"\x00\x02ak"),
                         "aik_cert": b64url(b"cert"),
                         "current_claim": b64url(json.dumps(_claim()).encode())},
        "attest_key": jwk,
        "service_context": context,
        "custom_claims": [{"name": "owner", "value": "lab", "value_type": "String"}],
    }
    if bind:
        data["request_key"] = {"jwk": jwk, "info": {"tpm_quote": {"hash_alg": "sha-256"}}}
    return data


# ------------------------------------------------------------------------------------------- envelope


def test_envelope_round_trip_matches_the_sdk_encoding() -> None:
    # The SDK's own test sends exactly this string for the init message (maa-api §4).
    body = json.dumps({"data": "eyJwYXlsb2FkIjogeyJ0eXBlIjogImFpa2NlcnQifX0"}).encode()
    message = decode_envelope(body)
    assert message == {"type": "aikcert"}
    check_init(message)
    assert decode_envelope(json.dumps(envelope({"type": "aikcert"})).encode()) == {"type": "aikcert"}
    out = encode_envelope({"challenge": "abc"})
    text = base64.urlsafe_b64decode(out["data"] + "==").decode("ascii")
    assert json.loads(text) == {"payload": {"challenge": "abc"}}


@pytest.mark.parametrize("body", [
    b"", b"[]", b'{"data": 5}', b'{"data": "!!"}',
    json.dumps({"data": b64url(b"not json")}).encode(),
    json.dumps({"data": b64url(b'{"type": "aikcert"}')}).encode(),  # not wrapped in payload
    json.dumps({"data": b64url(b'{"payload": "x"}')}).encode(),
])
def test_envelope_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(TpmProtocolError):
        decode_envelope(body)


def test_init_type_must_be_aikcert() -> None:
    with pytest.raises(TpmProtocolError, match="aikcert"):
        check_init({"type": "ekcert"})


# ----------------------------------------------------------------------------------- service context


def test_context_round_trip_has_maa_outer_shape(sealer: ContextSealer) -> None:
    msg = challenge_message(sealer, NOW)
    challenge = base64.urlsafe_b64decode(msg["challenge"] + "==")
    assert len(challenge) == CHALLENGE_BYTES
    outer = json.loads(base64.urlsafe_b64decode(msg["service_context"] + "=="))
    assert set(outer) == {"ProtectionKeyName", "ProtectedContext"}
    assert outer["ProtectionKeyName"] == sealer.key_name and sealer.key_name.isupper()
    assert challenge.hex() not in json.dumps(outer)  # the challenge is encrypted, not merely encoded
    assert sealer.open(msg["service_context"], NOW + 299) == challenge


def test_context_expires(sealer: ContextSealer) -> None:
    context = sealer.seal(b"c" * 16, NOW, ttl=60)
    assert sealer.open(context, NOW + 60) == b"c" * 16
    with pytest.raises(TpmProtocolError, match="expired"):
        sealer.open(context, NOW + 61)


def test_context_from_another_server_key_is_rejected(sealer: ContextSealer) -> None:
    other = ContextSealer(derive_context_key(b"secret two"))
    with pytest.raises(TpmProtocolError, match="key this service does not hold"):
        sealer.open(other.seal(b"c" * 16, NOW), NOW)


def test_context_tampered_or_forged_is_rejected(sealer: ContextSealer) -> None:
    outer = json.loads(base64.urlsafe_b64decode(sealer.seal(b"c" * 16, NOW) + "=="))
    sealed = bytearray(base64.urlsafe_b64decode(outer["ProtectedContext"] + "=="))
    for pos in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        bad = bytearray(sealed)
        bad[pos] ^= 1
        forged = dict(outer, ProtectedContext=b64url(bytes(bad)))
        with pytest.raises(TpmProtocolError, match="not authentic"):
            sealer.open(b64url(json.dumps(forged).encode()), NOW)
    # A context built without the key, carrying the right key name: the tag cannot match.
    fake = {"ProtectionKeyName": sealer.key_name, "ProtectedContext": b64url(bytes(60))}
    with pytest.raises(TpmProtocolError, match="not authentic"):
        sealer.open(b64url(json.dumps(fake).encode()), NOW)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(b64url), st.integers(), st.none()))
def test_context_open_never_raises_anything_else(value: object) -> None:
    sealer = ContextSealer(derive_context_key(b"k"))
    with pytest.raises(TpmProtocolError):
        sealer.open(value, NOW)


# ------------------------------------------------------------------------------------- signed request


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_signed_request_verifies_with_the_key_it_carries(key: rsa.RSAPrivateKey, alg: str) -> None:
    jwk = rsa_jwk(key.public_key())
    jws = sign_request({"att_type": "basic", "att_data": _att_data(jwk, "ctx")}, key, alg=alg)
    req = verify_request({"request": jws})
    assert req.signing_jwk == jwk
    assert req.header["alg"] == alg and req.header["typ"] == "attReq"


@pytest.mark.parametrize("alg", ["ES256", "PS384", "RS512"])
def test_request_algorithms_are_the_ones_maa_documents(key: rsa.RSAPrivateKey, alg: str) -> None:
    """MAA's TPM protocol signs ``attReq`` PS256 (tpm.md §3; RS256 too, as the client can): an ES256
    request signed by the EC key it carries, or another RSA hash, is refused; the message says what is
    accepted."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from affidavit import jose

    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = key
    jwk = rsa_jwk(key.public_key())
    if alg.startswith("ES"):
        signer = ec.generate_private_key(ec.SECP256R1())
        jwk = jose.public_jwk(signer.public_key())
    body = json.dumps({"att_type": "basic", "att_data": _att_data(jwk, "ctx")}).encode()
    jws = jose.sign_compact({"alg": alg, "typ": "attReq"}, body, signer)
    with pytest.raises(TpmProtocolError, match=r"is not accepted \(PS256 or RS256 expected\)"):
        verify_request({"request": jws})


def test_request_signed_by_another_key_is_rejected(key: rsa.RSAPrivateKey,
                                                   other_key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(key.public_key())
    jws = sign_request({"att_type": "basic", "att_data": _att_data(jwk, "ctx")}, other_key)
    with pytest.raises(TpmProtocolError, match="does not verify"):
        verify_request({"request": jws})


def test_request_payload_swapped_after_signing_is_rejected(key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(key.public_key())
    head, _, sig = sign_request({"att_type": "basic", "att_data": _att_data(jwk, "a")}, key).split(".")
    body = b64url(json.dumps({"att_type": "basic", "att_data": _att_data(jwk, "b")}).encode())
    with pytest.raises(TpmProtocolError, match="does not verify"):
        verify_request({"request": f"{head}.{body}.{sig}"})


def test_unsigned_and_vbs_requests_are_rejected(key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(key.public_key())
    body = b64url(json.dumps({"att_type": "basic", "att_data": _att_data(jwk, "a")}).encode())
    none = b64url(b'{"alg":"none"}')
    with pytest.raises(TpmProtocolError, match="not accepted"):
        verify_request({"request": f"{none}.{body}."})
    vbs = sign_request({"att_type": "vbs", "att_data": {}}, key)
    with pytest.raises(TpmProtocolError, match="VBS"):
        verify_request({"request": vbs})
    with pytest.raises(TpmProtocolError, match="neither"):
        verify_request({"request": sign_request({"att_data": {"tpm_att_data": {}}}, key)})


def test_qualifying_data_binds_the_request_key(key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(key.public_key())
    challenge = bytes(range(16))
    bound = verify_request({"request": sign_request({"att_data": _att_data(jwk, "c")}, key)})
    expected = hashlib.sha256(canonical_jwk(jwk).encode() + b"\x00" + challenge).digest()
    assert expected_qualifying_data(bound, challenge) == expected == quote_binding(jwk, challenge)
    assert canonical_jwk(jwk) == client_canonical_jwk(jwk)
    plain = verify_request({"request": sign_request({"att_data": _att_data(jwk, "c", bind=False)}, key)})
    assert expected_qualifying_data(plain, challenge) == challenge


def test_echoed_challenge_must_match() -> None:
    check_request_challenge({"challenge": b64url(b"x" * 16)}, b"x" * 16)
    check_request_challenge({}, b"x" * 16)
    with pytest.raises(TpmProtocolError, match="differs"):
        check_request_challenge({"challenge": b64url(b"y" * 16)}, b"x" * 16)


# ------------------------------------------------------------------------------------------- evidence


def test_evidence_v1_shape(key: rsa.RSAPrivateKey) -> None:
    ev = extract_evidence(_att_data(rsa_jwk(key.public_key()), "c"))
    assert ev.quote.startswith(b"\xffTCG") and ev.event_log == b"log"
    assert ev.aik_pub == b"\x00\x02ak" and ev.aik_cert == b"cert"
    assert [alg for alg, _ in ev.pcrs] == [11, 4]  # the client's bank order is kept
    assert ev.pcr_map()[11][7] == b"\x07" * 32
    assert ev.custom_claims == (("owner", "lab", "String"),)


def test_evidence_v2_shape() -> None:
    claim = _claim()
    att = {"tpm_att_data": {"current_attestation": {
        "logs": [{"type": "TCG", "log": b64url(b"tcg")}, {"type": "IMA", "log": b64url(b"ima")}],
        "aik_pub": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, **claim}}}
    ev = extract_evidence(att)
    assert ev.event_log == b"tcg" and isinstance(ev.aik_pub, dict) and ev.aik_cert is None


@pytest.mark.parametrize("mutate", [
    lambda c: c["pcrs"][0]["values"].append({"index": 0, "digest": b64url(bytes(32))}),  # repeated index
    lambda c: c["pcrs"][0]["values"].append({"index": 24, "digest": b64url(bytes(32))}),
    lambda c: c["pcrs"][0]["values"].append({"index": 3, "digest": b64url(bytes(20))}),  # wrong size
    lambda c: c["pcrs"].append({"algorithm": 11, "values": []}),  # repeated bank
    lambda c: c["pcrs"].append({"algorithm": 99, "values": []}),
    lambda c: c.pop("quote"),
    lambda c: c.update(pcrs=[]),
])
def test_evidence_rejects_malformed_pcrs_and_missing_parts(mutate) -> None:  # type: ignore[no-untyped-def]
    claim = _claim()
    mutate(claim)
    with pytest.raises(TpmError):
        extract_evidence({"tpm_att_data": {"current_claim": claim}})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["tpm_att_data", "custom_claims", "challenge"]), _json_values))
def test_extract_evidence_never_raises_anything_else(att: dict) -> None:
    try:
        extract_evidence(att)
    except TpmError:
        pass


@given(st.binary(max_size=300))
def test_decode_envelope_never_raises_anything_else(raw: bytes) -> None:
    for body in (raw, json.dumps({"data": b64url(raw)}).encode()):
        try:
            decode_envelope(body)
        except TpmProtocolError:
            pass


@given(st.text(max_size=300))
def test_verify_request_never_raises_anything_else(text: str) -> None:
    with pytest.raises(TpmProtocolError):
        verify_request({"request": text})


# ------------------------------------------------------------------------- Windows platform claim (PCP)

WINDOWS = "tpm/go-attestation/windows_gcp_shielded_vm.split"


def pcp_blob(pcrs: list[bytes], quote: bytes, raw_sig: bytes, log: bytes, bank: int | None = None) -> bytes:
    """PCPTool's layout: 'SDAP' (SHA-1 PCRs) or, with ``bank``, '2DAP'."""
    sizes = (24 * len(pcrs[0]), len(quote), len(raw_sig), len(log))
    if bank is None:
        header = struct.pack("<7I", PCP_MAGIC_V1, 2, 28, *sizes)
    else:
        header = struct.pack("<8I", PCP_MAGIC_V2, 2, 32, *sizes, bank)
    return header + b"".join(pcrs) + quote + raw_sig + log


def test_windows_platform_claim_rebuilds_the_real_quote_and_signature(vectors: Path) -> None:
    from affidavit.evidence.tpm import TpmEvidence, TpmTrust, verify_tpm

    d = vectors / WINDOWS
    pcr_hex = json.loads((d / "pcrs_sha1.json").read_text())
    pcrs = [bytes.fromhex(pcr_hex[str(i)]) for i in range(24)]
    quote, sig = (d / "quote.tpms_attest").read_bytes(), (d / "quote.tpmt_signature").read_bytes()
    log, ak = (d / "eventlog.bin").read_bytes(), (d / "ak_public.tpmt_public").read_bytes()
    blob = pcp_blob(pcrs, quote, sig[6:], log)
    assert blob[:4] == b"PADS"
    ev = extract_evidence({"tpm_att_data": {"current_claim": b64url(blob), "aik_pub": b64url(ak)}})
    assert ev.quote == quote and ev.signature == sig  # RSASSA-SHA1, from the AK's fixed scheme
    assert ev.event_log == log and ev.pcr_map()[4] == dict(enumerate(pcrs))
    # The rebuilt evidence is the real attestation: it verifies (SHA-1 allowed only here).
    result = verify_tpm(
        TpmEvidence(ev.quote, ev.signature, ev.pcr_map(), ak_public=ak, event_log=ev.event_log),
        b"", TpmTrust(), datetime.now(UTC), require_valid_aik_cert=False, allow_sha1_signature=True,
    )
    assert result.claims["secureBootEnabled"] is True


@pytest.mark.parametrize("mutate", [
    lambda b: b[:20],
    lambda b: b + b"\0",  # sizes no longer add up
    lambda b: b[:4] + struct.pack("<I", 1) + b[8:],  # TPM 1.2
    lambda b: b[:12] + struct.pack("<I", 20 * 23) + b[16:],  # not 24 PCRs
    lambda b: b[:20] + struct.pack("<I", 0) + b[24:],  # no signature
])
def test_platform_claim_rejects_inconsistent_blobs(mutate) -> None:  # type: ignore[no-untyped-def]
    blob = pcp_blob([bytes(20)] * 24, b"\xffTCG" + bytes(10), bytes(256), b"")
    parse_pcp_claim(blob)
    with pytest.raises(TpmError):
        parse_pcp_claim(mutate(blob))


@given(st.binary(max_size=200), st.sampled_from([PCP_MAGIC_V1, PCP_MAGIC_V2]))
def test_parse_pcp_claim_never_raises_anything_else(tail: bytes, magic: int) -> None:
    try:
        parse_pcp_claim(struct.pack("<2I", magic, 2) + tail, tail[:40] or None)
    except TpmError:
        pass


def test_tokens_repeat_only_public_jwk_members(key: rsa.RSAPrivateKey) -> None:
    from affidavit.service.tpm_protocol import public_jwk

    jwk = rsa_jwk(key.public_key())
    leaked = {**jwk, "d": "secret", "p": "x", "q": "y", "dp": "z", "kid": "k1"}
    assert public_jwk(leaked) == {**jwk, "kid": "k1"}


def test_request_key_text_with_a_duplicate_member_is_refused(key: rsa.RSAPrivateKey) -> None:
    """The request key sent as JSON text is read with the one strict JSON reader (affidavit.jose)."""
    jwk = rsa_jwk(key.public_key())
    other = rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    text = '{"kty":"RSA","e":"' + jwk["e"] + '","n":"' + other["n"] + '","n":"' + jwk["n"] + '"}'
    att = _att_data(jwk, "c", bind=False)
    att["attest_key"] = text
    with pytest.raises(TpmProtocolError, match="not JSON"):
        verify_request({"request": sign_request({"att_type": "basic", "att_data": att}, key)})
