"""``affidavit eventlog show``: output, exit codes, forged and malformed logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affidavit.cli import main
from tests.evidence.tpm.vectors import event_data_span, flip, secureboot_seq

SB_LOG = "tpm/keylime/binary_bios_measurements-secureboot"


def test_json_has_pcrs_and_events(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = json.loads((vectors / "tpm/replay_summary.json").read_text())
    assert main(["eventlog", "show", "--json", str(vectors / SB_LOG)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pcrs"] == summary["keylime/binary_bios_measurements-secureboot"]["replayed_pcrs"]
    assert len(out["events"]) == 98
    assert not any(e["digest_mismatch"] for e in out["events"])


def test_table_output(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eventlog", "show", str(vectors / "tpm/go-tpm-tools/eventlogs/glinux-alex.bin")]) == 0
    out = capsys.readouterr().out
    assert "EV_EFI_VARIABLE_DRIVER_CONFIG" in out and "SecureBoot = 00" in out
    assert "PCR (sha256)" in out


def test_forged_event_exits_1_and_names_it(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (vectors / SB_LOG).read_bytes()
    seq = secureboot_seq(data)
    _, end = event_data_span(data, seq)
    forged = tmp_path / "forged.bin"
    forged.write_bytes(flip(data, end - 1))
    assert main(["eventlog", "show", "--json", str(forged)]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    flagged = [e["seq"] for e in out["events"] if e["digest_mismatch"]]
    assert flagged == [seq] == out["digest_mismatches"]
    assert f"#{seq}" in captured.err and "EV_EFI_VARIABLE_DRIVER_CONFIG" in captured.err


@pytest.mark.parametrize("name", ["binary_bios_measurements-bogus", "binary_bios_measurements-empty"])
def test_malformed_log_gives_typed_error(
    vectors: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eventlog", "show", str(vectors / "tpm/keylime" / name)]) == 1
    err = capsys.readouterr().err
    assert "tpm_eventlog_malformed" in err and "Traceback" not in err


def test_truncated_log_json(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "cut.bin"
    f.write_bytes((vectors / SB_LOG).read_bytes()[:5000])
    assert main(["eventlog", "show", "--json", str(f)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["code"] == "tpm_eventlog_malformed"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eventlog", "show", str(tmp_path / "nope")]) == 1
    assert "cannot read" in capsys.readouterr().err
