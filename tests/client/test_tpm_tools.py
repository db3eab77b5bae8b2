"""tpm2-tools output parsing, and the TPM client's pieces that need no TPM."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.client import ClientError
from affidavit.client.http import envelope, open_envelope
from affidavit.client.tpm import Quote
from affidavit.client.tpm_tools import (
    TpmTools,
    parse_active_banks,
    parse_handle,
    parse_pcr_list,
    split_pcr_values,
)
from affidavit.simulate.swtpm import running_swtpm

GETCAP = """selected-pcrs:
  - sha1: [ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 ]
  - sha256: [ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 ]
  - sha384: [ ]
  - sha512: [ ]
"""


def test_active_banks_skip_empty_allocations() -> None:
    assert parse_active_banks(GETCAP) == ("sha1", "sha256")
    assert parse_active_banks("selected-pcrs:\n  - sm3_256: [ 0 ]\n") == ()


def test_pcr_lists_and_handles() -> None:
    assert parse_pcr_list("0-3,7, 14") == (0, 1, 2, 3, 7, 14)
    assert parse_pcr_list("0-23") == tuple(range(24))
    for bad in ("", "24", "a", "3-x", "-1"):
        with pytest.raises(ClientError):
            parse_pcr_list(bad)
    assert parse_handle("0x81000100") == 0x81000100
    for bad in ("0x80000000", "zz", "0x1"):
        with pytest.raises(ClientError):
            parse_handle(bad)


def test_pcr_values_split_bank_by_bank() -> None:
    raw = b"".join(bytes([i]) * 20 for i in (0, 7)) + b"".join(bytes([0x80 | i]) * 32 for i in (0, 7))
    pcrs = split_pcr_values(raw, ("sha1", "sha256"), (0, 7))
    assert pcrs == ((4, ((0, bytes(20)), (7, b"\x07" * 20))), (11, ((0, b"\x80" * 32), (7, b"\x87" * 32))))
    wire = Quote(b"q", b"s", pcrs).pcrs_json()
    assert [b["algorithm"] for b in wire] == [4, 11]
    assert base64.urlsafe_b64decode(wire[1]["values"][1]["digest"] + "=") == b"\x87" * 32
    with pytest.raises(ClientError, match="expected 104"):
        split_pcr_values(raw[:-1], ("sha1", "sha256"), (0, 7))


def test_envelope_round_trip_and_bad_answers() -> None:
    assert open_envelope(envelope({"report": "x"})) == {"report": "x"}
    for bad in ({}, {"data": 5}, {"data": "%%%"}, envelope({"payload": 1}) | {"data": "bnVsbA"}):
        with pytest.raises(ClientError):
            open_envelope(bad)


@given(st.one_of(st.text(max_size=100), st.binary(max_size=100).map(lambda b: b.hex())))
def test_open_envelope_never_raises_anything_else(data: str) -> None:
    try:
        open_envelope({"data": data})
    except ClientError:
        pass
    try:
        open_envelope(json.loads(json.dumps({"data": data})))
    except ClientError:
        pass


def test_quotes_with_the_aks_own_scheme_verify(tmp_path: Path) -> None:
    """AKs provisioned elsewhere (fixed RSASSA, RSAPSS or ECDSA scheme) are quoted with their scheme."""
    from datetime import UTC, datetime

    from affidavit.evidence.tpm import TpmEvidence, TpmTrust, verify_tpm

    ek = str(tmp_path / "ek.ctx")
    with running_swtpm(tmp_path, ("sha1", "sha256")) as swtpm:
        swtpm.tool("tpm2_createek", "-c", ek, "-G", "rsa")
        swtpm.tool("tpm2_flushcontext", "-t")
        tools = TpmTools(swtpm.tcti)
        for n, (alg, scheme) in enumerate((("rsa", "rsassa"), ("rsa", "rsapss"), ("ecc", "ecdsa"))):
            handle, ak = 0x81000120 + n, str(tmp_path / f"ak{n}.ctx")
            swtpm.tool("tpm2_createak", "-C", ek, "-c", ak, "-G", alg, "-g", "sha256", "-s", scheme)
            swtpm.tool("tpm2_flushcontext", "-t")
            swtpm.tool("tpm2_evictcontrol", "-C", "o", "-c", ak, hex(handle))
            swtpm.tool("tpm2_flushcontext", "-t")
            public = tools.read_public(handle)
            assert tools.ensure_ak(handle) == public  # an existing AK is loaded, not replaced
            assert tools.signing_scheme(handle) == (scheme, "sha256")
            nonce = bytes(range(32))
            quote = tools.quote(handle, parse_pcr_list("0-23"), nonce)
            assert [alg_id for alg_id, _ in quote.pcrs] == [4, 11]
            pcrs = {a: dict(v) for a, v in quote.pcrs}
            result = verify_tpm(TpmEvidence(quote.attest, quote.signature, pcrs, ak_public=public),
                                nonce, TpmTrust(), datetime.now(UTC), require_valid_aik_cert=False)
            assert result.attest.extra_data == nonce


def test_swtpm_harness_reports_tool_failures_as_its_own_error() -> None:
    """simulate.swtpm drives tpm2-tools through the client's TpmTools; a failure is a SwtpmError."""
    from affidavit.simulate.swtpm import SwtpmError, run_tool

    with pytest.raises(SwtpmError, match="tpm2_pcrread failed"):
        run_tool("swtpm:host=127.0.0.1,port=1", "tpm2_pcrread", "sha256:0")
