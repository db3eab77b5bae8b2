"""The file-reading and text-decoding helpers ``affidavit snp`` shares with ``affidavit quote``
(``cli.arguments.read_input`` and ``decode_hex_or_base64``): one way to read evidence files."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.cli.arguments import decode_hex_or_base64
from tests.cli.conftest import Run


@given(st.binary(max_size=300))
def test_hex_and_base64_forms_round_trip(raw: bytes) -> None:
    b64 = base64.b64encode(raw)
    forms = [raw.hex().encode(), raw.hex().upper().encode()]
    # base64 text made only of hex digits reads as hex (as it always did): not a round trip to test
    if not re.fullmatch(rb"[0-9a-fA-F]*", b64.rstrip(b"=")):
        forms += [b64, base64.urlsafe_b64encode(raw).rstrip(b"="),
                  b"\n".join(b64[i : i + 8] for i in range(0, len(b64), 8))]
    for text in forms:
        assert decode_hex_or_base64(b"  " + text + b"\n") == raw


@given(st.binary(max_size=200))
def test_any_text_decodes_or_raises_value_error(text: bytes) -> None:
    try:
        decode_hex_or_base64(text)
    except ValueError:
        pass


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_snp_missing_file_is_one_file_error(run: Run, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope.bin"
    status, out, err = run("snp", command, missing)
    assert status == 1 and err.startswith("error: file_error: cannot read report") and "Traceback" not in err
    status, out, _ = run("snp", command, missing, "--json")
    doc = json.loads(out)
    assert status == 1 and doc["verified"] is False and doc["code"] == "file_error"
