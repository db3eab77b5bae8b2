"""Loaders for the TPM vectors (read in place from ../shared/vectors/tpm)."""

from __future__ import annotations

import base64
import json
from pathlib import Path


def summary(vectors: Path) -> dict[str, dict]:
    return json.loads((vectors / "tpm" / "replay_summary.json").read_text())


def log_bytes(vectors: Path, key: str) -> bytes:
    """A log named as in replay_summary.json (some keys point inside a JSON or a base64 file)."""
    root = vectors / "tpm"
    if key.endswith("#Log.Raw"):
        return base64.b64decode(json.loads((root / key.split("#")[0]).read_text())["Log"]["Raw"])
    if key.endswith(" (decoded)"):
        return base64.b64decode((root / key.split(" ")[0]).read_text())
    return (root / key).read_bytes()


def expected_sets(vectors: Path) -> list[tuple[str, dict[str, dict[int, str]]]]:
    """(log key, bank -> index -> hex) from every set's expected-PCR file."""
    root = vectors / "tpm"
    out: list[tuple[str, dict[str, dict[int, str]]]] = []
    for set_name, fname in (
        ("go-tpm-tools/eventlogs", "go-tpm-tools/expected.json"),
        ("go-attestation", "go-attestation/expected_pcrs.json"),
        ("hirs", "hirs/expected_pcrs.json"),
        ("tpm2-tools", "tpm2-tools/expected_pcrs.json"),
    ):
        data = json.loads((root / fname).read_text())
        for log_name, entry in data.items():
            banks = entry["banks"] if "banks" in entry else entry
            key = f"{set_name}/{log_name}"
            if log_name == "windows_gcp_shielded_vm.json":
                key = "go-attestation/windows_gcp_shielded_vm.json#Log.Raw"
            out.append(
                (
                    key,
                    {
                        b: {int(i): h.lower().removeprefix("0x") for i, h in v.items()}
                        for b, v in banks.items()
                    },
                )
            )
    swtpm: dict[str, dict[int, str]] = {}
    for line in (root / "swtpm-synthetic" / "expected_pcrs.txt").read_text().split():
        bank, rest = line.split(":")
        idx, value = rest.split("=")
        swtpm.setdefault(bank, {})[int(idx)] = value
    out.append(("swtpm-synthetic/eventlog.bin", swtpm))
    return out


def event_data_span(log_data: bytes, seq: int) -> tuple[int, int]:
    """(start, end) of event ``seq``'s data in the raw log."""
    from affidavit.evidence.tpm import parse_event_log

    log = parse_event_log(log_data)
    offsets = [e.offset for e in log.events] + [len(log_data) - log.trailing]
    for k, e in enumerate(log.events):
        if e.seq == seq:
            end = offsets[k + 1]
            return end - len(e.data), end
    raise KeyError(seq)


def secureboot_seq(log_data: bytes) -> int:
    from affidavit.evidence.tpm import constants as c
    from affidavit.evidence.tpm import parse_event_log

    for e in parse_event_log(log_data).events:
        if e.type == c.EV_EFI_VARIABLE_DRIVER_CONFIG and "SecureBoot".encode("utf-16-le") in e.data:
            return e.seq
    raise KeyError("SecureBoot")


def flip(data: bytes, pos: int, mask: int = 1) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]
