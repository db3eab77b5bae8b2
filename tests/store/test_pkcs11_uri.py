"""RFC 7512 URIs as ``--signing-key`` takes them (the token itself is exercised in
tests/service/test_hsm.py against SoftHSM2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.store import StoreError
from affidavit.store.pkcs11 import Pkcs11Uri, read_pin


def test_parse_and_location() -> None:
    uri = Pkcs11Uri.parse("pkcs11:token=My%20HSM;object=signer-1;type=private"
                          "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin")
    assert uri == Pkcs11Uri("My HSM", "signer-1", "/usr/lib/softhsm/libsofthsm2.so", "file:/run/pin")
    assert uri.location() == "pkcs11:token=My%20HSM;object=signer-1"  # never the PIN source or module
    assert uri.location("other") == "pkcs11:token=My%20HSM;object=other"
    assert Pkcs11Uri.parse(uri.location("a;b")).object == "a;b"


@pytest.mark.parametrize("text, message", [
    ("file:/x", "not a PKCS#11 URI"),
    ("pkcs11:object=k", "names no token"),
    ("pkcs11:token=t;serial", "without a value"),
    ("pkcs11:token=t;pin-value=1234", "not supported: pin-value"),
    ("pkcs11:token=t;type=cert", "private key"),
])
def test_bad_uris(text: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as err:
        Pkcs11Uri.parse(text)
    assert err.value.code == "pkcs11"


def test_pin_file(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "pin").write_text("1234\n")
    assert read_pin(f"file:{tmp_path / 'pin'}") == "1234" == read_pin(tmp_path / "pin")
    with pytest.raises(StoreError, match="cannot read the PKCS#11 PIN file"):
        read_pin(tmp_path / "missing")


@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_store_error(text: str) -> None:
    for candidate in (text, "pkcs11:" + text):
        try:
            uri = Pkcs11Uri.parse(candidate)
        except StoreError as exc:
            assert exc.code == "pkcs11"
        else:
            assert uri.token and Pkcs11Uri.parse(uri.location()).token == uri.token
