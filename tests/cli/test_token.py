"""``affidavit token verify``: honest about unsigned tokens, every expectation checked and reported,
the comparison operators, hex case, offline --jwks, stdin, the nonce as the service emits it."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from affidavit.jose import b64url
from affidavit.tokens import SigningKey, encode_jwt, jwks, unsecured_jwt
from tests.cli.conftest import Run

ISSUER = "https://attest.example"
KEY = SigningKey.generate(ISSUER, now=datetime.now(UTC))
MRSIGNER = "2C1A44952AE8207135C6C29B75B8C029372EE94B677E15C20BD42340F10D41AA"


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "iat": now, "nbf": now, "exp": now + 600, "x-ms-sgx-mrsigner": MRSIGNER.lower(),
            "x-ms-sgx-svn": 3, "x-ms-sgx-is-debuggable": False, "x-ms-sgx-tcb-status": "OutOfDate",
            "x-ms-sgx-advisory-ids": ["INTEL-SA-00615", "INTEL-SA-00657"], **extra}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    token = tmp_path / "t.jwt"
    token.write_text(encode_jwt(_claims(nonce=b64url(b"hello")), KEY, jku=None))
    keys = tmp_path / "certs.json"
    keys.write_text(json.dumps(jwks([KEY])))
    return token, keys


def _verify(run: Run, token: Path | str, keys: Path, *more: str) -> tuple[int, str, str]:
    return run("token", "verify", token, "--issuer", ISSUER, "--jwks", keys, *more)


def test_offline_with_every_operator_and_hex_case(run: Run, files: tuple[Path, Path]) -> None:
    token, keys = files
    status, out, _ = _verify(
        run, token, keys, "--expect", f"x-ms-sgx-mrsigner={MRSIGNER}", "--expect", "x-ms-sgx-svn>=3",
        "--expect", "x-ms-sgx-svn<4", "--expect", "x-ms-sgx-svn<=3", "--expect", "x-ms-sgx-svn>2",
        "--expect", "x-ms-sgx-svn=3", "--expect", "x-ms-sgx-is-debuggable=false",
        "--expect", "x-ms-sgx-advisory-ids contains INTEL-SA-00615",
        "--expect", "x-ms-sgx-tcb-status in UpToDate,OutOfDate", "--nonce", "hello",
    )
    assert status == 0 and out.startswith(f"VERIFIED: signed by the JWKS in {keys} (kid {KEY.kid})")
    assert '"x-ms-sgx-svn"' not in out and "x-ms-sgx-svn" in out


def test_every_failure_is_reported(run: Run, files: tuple[Path, Path]) -> None:
    token, keys = files
    status, out, _ = _verify(
        run, token, keys, "--expect", "x-ms-sgx-svn>=5", "--expect", "x-ms-sgx-advisory-ids contains X-1",
        "--expect", "x-ms-sgx-tcb-status in UpToDate", "--expect", "absent-claim=1", "--json",
    )
    doc = json.loads(out)
    assert status == 1 and doc["verified"] is False and doc["error"]["code"] == "expectation_failed"
    assert {f["claim"] for f in doc["failures"]} == {
        "x-ms-sgx-svn", "x-ms-sgx-advisory-ids", "x-ms-sgx-tcb-status", "absent-claim"}
    status, _, err = _verify(run, token, keys, "--expect", "x-ms-sgx-svn>=5", "--expect", "x-ms-sgx-svn<1")
    assert status == 1 and err.startswith("error: expectation_failed: 2 expectations failed")
    assert err.count("\n") == 1 and "None" not in err and "True" not in err


def test_unsigned_tokens_are_reported_as_unsigned(run: Run, files: tuple[Path, Path], tmp_path: Path) -> None:
    _, keys = files
    forged = tmp_path / "none.jwt"
    forged.write_text(unsecured_jwt(_claims(), kid=KEY.kid))  # a hand-made alg none token naming a real kid
    status, _, err = _verify(run, forged, keys)
    assert status == 1 and err.startswith("error: alg_not_allowed:")
    status, out, _ = _verify(run, forged, keys, "--allow-unsecured")
    assert status == 0 and out.startswith("UNSIGNED:") and "VERIFIED" not in out and KEY.kid not in out
    doc = json.loads(_verify(run, forged, keys, "--allow-unsecured", "--json")[1])
    assert doc["signed"] is False and doc["kid"] is None


def test_stdin_and_the_nonce_forms(
    run: Run, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, keys = files
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(token.read_bytes())))
    assert _verify(run, "-", keys, "--nonce", "hello")[0] == 0  # rp_data "hello" is echoed as aGVsbG8
    assert _verify(run, token, keys, "--nonce", "aGVsbG8")[0] == 0
    status, _, err = _verify(run, token, keys, "--nonce", "other")
    assert status == 1 and err.startswith("error: nonce_mismatch:")


@pytest.mark.parametrize("bad", ["x-ms-sgx-svn", "x-ms-sgx-svn>=lots", "=3", "x-ms-sgx-svn>=nan"])
def test_a_malformed_expectation_is_a_usage_error(run: Run, files: tuple[Path, Path], bad: str) -> None:
    token, keys = files
    status, out, _ = _verify(run, token, keys, "--expect", bad, "--json")
    assert status == 2 and json.loads(out)["error"]["code"] == "usage"
