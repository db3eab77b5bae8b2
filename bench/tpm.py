"""TPM benchmark: event-log parse + replay of every real log in the vectors, and full TPM verification
(quote + AK + log replay + data checks + claims), against Keylime 7.14.3's path on the same inputs in
the same run (``tpm2_eventlog`` subprocess + Python enrichment + the ``example`` measured-boot policy).

Run: ``.venv/bin/python bench/tpm.py [--seconds S]``. Needs ``pip install .[bench]`` (keylime and the
modules it imports without declaring), tpm2-tools and libefivar1. Keylime imports ``gpg`` (python3-gpg,
not on PyPI) for signature checks this path never calls: it is stubbed. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from timing import rate

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "vectors" / "tpm"
KL = VECTORS / "keylime" / "swtpm-replayed-secureboot"
SB_LOG = VECTORS / "keylime" / "binary_bios_measurements-secureboot"


def load_logs() -> dict[str, bytes]:
    summary = json.loads((VECTORS / "replay_summary.json").read_text())
    out: dict[str, bytes] = {}
    for key in summary:
        if key.endswith("#Log.Raw"):
            out[key] = base64.b64decode(json.loads((VECTORS / key.split("#")[0]).read_text())["Log"]["Raw"])
        elif key.endswith(" (decoded)"):
            out[key] = base64.b64decode((VECTORS / key.split(" ")[0]).read_text())
        else:
            out[key] = (VECTORS / key).read_bytes()
    return out


def ours(logs: dict[str, bytes], seconds: float) -> dict[str, float]:
    from affidavit.evidence.tpm import (
        TpmEvidence,
        TpmTrust,
        TpmVerifier,
        analyze_log,
        parse_event_log,
        replay,
        verify_tpm,
    )
    from affidavit.evidence.tpm.formats import parse_tools_pcrs

    def parse_all() -> None:
        for data in logs.values():
            replay(parse_event_log(data))

    def analyze_all() -> None:
        for data in logs.values():
            analyze_log(data)

    _, pcrs = parse_tools_pcrs((KL / "quote.pcrs.tpm2tools-serialized").read_bytes())
    evidence = TpmEvidence(
        quote=(KL / "quote.tpms_attest").read_bytes(),
        signature=(KL / "quote.tpmt_signature").read_bytes(),
        pcrs=pcrs,
        ak_public=(KL / "ak.tpm2b_public").read_bytes(),
        event_log=SB_LOG.read_bytes(),
    )
    trust = TpmTrust.from_pem(registered_aks=[(KL / "ak.pem").read_bytes()])
    nonce = bytes.fromhex((KL / "nonce.hex").read_text().strip())
    mask = sum(1 << i for i in (*range(10), 11, 12, 13, 14, 15))
    now = datetime.now(UTC)

    verifier = TpmVerifier(trust)  # the service's path: a long-lived verifier with its cache

    def full() -> None:
        result = verifier.verify(evidence, nonce, now, required_pcr_mask=mask)
        assert result.claims["secureBootEnabled"] is True

    def full_cold() -> None:
        verify_tpm(evidence, nonce, trust, now, required_pcr_mask=mask)

    parse_rate = rate(parse_all, seconds)
    analyze_rate = rate(analyze_all, seconds)
    full_rate = rate(full, seconds)
    cold_rate = rate(full_cold, seconds)
    return {
        "logs_per_s_parse_replay": parse_rate * len(logs),
        "logs_per_s_parse_replay_datacheck": analyze_rate * len(logs),
        "full_checks_per_s": full_rate,
        "full_checks_per_s_no_cache": cold_rate,
    }


def software_quote(log: bytes, nonce: bytes) -> tuple[Any, Any] | None:
    """TPM evidence for ``log``: its replayed SHA-256 (else SHA-1) PCRs quoted by a software P-256 AK (a
    TPMS_ATTEST and TPMT_SIGNATURE laid out as a TPM lays them out), or None when the log does not replay."""
    import hashlib
    import struct

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    from affidavit.evidence.tpm import TpmEvidence, analyze_log

    try:
        banks = analyze_log(log).replayed
    except Exception:  # noqa: BLE001 - logs our parser refuses are not part of the sweep
        return None
    bank = "sha256" if banks.get("sha256") else "sha1"
    replayed = banks.get(bank)
    if not replayed:
        return None
    indices = sorted(replayed)
    select = bytearray(3)
    for i in indices:
        select[i // 8] |= 1 << (i % 8)
    digest = hashlib.sha256(b"".join(replayed[i] for i in indices)).digest()

    def tpm2b(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    attest = (
        struct.pack(">IH", 0xFF544347, 0x8018)
        + tpm2b(b"\x00\x0b" + b"\x11" * 32)
        + tpm2b(nonce)
        + struct.pack(">QIIB", 1000, 1, 1, 1)
        + struct.pack(">Q", 0x2020)
        + struct.pack(">IHB", 1, 0x000B if bank == "sha256" else 0x0004, 3)
        + bytes(select)
        + tpm2b(digest)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    r, s_ = utils.decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    signature = struct.pack(">HH", 0x0018, 0x000B) + tpm2b(r.to_bytes(32, "big"))
    signature += tpm2b(s_.to_bytes(32, "big"))
    evidence = TpmEvidence(
        quote=attest, signature=signature, pcrs={bank: replayed}, ak_public=key.public_key(), event_log=log
    )
    return evidence, key.public_key()


def sweep(logs: dict[str, bytes], seconds: float) -> tuple[list[dict[str, Any]], float]:
    """Full checks per second with a warm verifier, for every real log that replays, smallest first; and
    the largest log's rate with SIPA payloads decoded on every check, as before they were cached."""
    from cryptography.hazmat.primitives import serialization

    from affidavit.evidence.tpm import TpmTrust, TpmVerifier
    from affidavit.evidence.tpm.maa_json import sipa_pairs

    nonce = b"bench-nonce"
    now = datetime.now(UTC)
    rows = []
    made: Any = None
    for key, log in sorted(logs.items(), key=lambda kv: len(kv[1])):
        made = software_quote(log, nonce)
        if made is None:
            continue
        evidence, ak = made
        pem = ak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        trust = TpmTrust.from_pem(registered_aks=[pem])
        verifier = TpmVerifier(trust)

        def full(verifier: Any = verifier, evidence: Any = evidence) -> None:
            verifier.verify(evidence, nonce, now, required_pcr_mask=0)

        per_s = rate(full, seconds, batches=3)
        rows.append({"log": key, "kib": round(len(log) / 1024, 1), "full_checks_per_s": round(per_s, 1)})
    # The same verifier for the largest log, its SIPA memo bypassed.
    verifier.cache.events.sipa_pairs = sipa_pairs  # type: ignore[method-assign]
    before = rate(full, seconds, batches=3)
    return rows, before


def keylime(logs: dict[str, bytes], seconds: float) -> dict[str, Any]:
    sys.modules.setdefault("gpg", types.ModuleType("gpg"))
    logging.disable(logging.CRITICAL)
    from keylime.common.algorithms import Hash
    from keylime.mba import mba
    from keylime.tpm.tpm_main import Tpm

    mba.load_imports(skip_custom_policies=True)
    quote = "r" + ":".join(
        base64.b64encode((KL / f).read_bytes()).decode()
        for f in ("quote.tpms_attest", "quote.tpmt_signature", "quote.pcrs.tpm2tools-serialized")
    )
    nonce = bytes.fromhex((KL / "nonce.hex").read_text().strip())
    ak = (KL / "ak.tpm2b_public").read_bytes()
    refstate = (KL / "keylime_example_refstate.json").read_text()
    log = SB_LOG.read_bytes()
    tpm = Tpm()

    def check(event_log: bytes) -> Any:
        return tpm.check_quote(
            None,
            nonce,
            None,
            quote,
            ak,
            hash_alg=Hash.SHA256,
            mb_measurement_list=event_log,
            mb_policy=refstate,
            mb_policy_name="example",
            skip_data_pcr_check=True,
        )

    if check(log).events:
        raise SystemExit("keylime rejected the reference attestation; benchmark invalid")

    def full() -> None:
        check(log)

    parseable: dict[str, str] = {}
    for key, data in logs.items():
        b64 = base64.b64encode(data).decode()
        try:
            _, _, parsed, failure = mba.bootlog_parse(b64, "sha256")
        except Exception:  # noqa: BLE001 - we only count what keylime's parser accepts
            continue
        if parsed and not failure.events:
            parseable[key] = b64

    def parse_all() -> None:
        for b64 in parseable.values():
            mba.bootlog_parse(b64, "sha256")

    parse_rate = rate(parse_all, seconds)
    full_rate = rate(full, seconds)
    return {
        "logs_per_s_parse_replay": parse_rate * len(parseable),
        "full_checks_per_s": full_rate,
        "logs_parsed": len(parseable),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--sweep-seconds", type=float, default=0.6, help="time per log in the size sweep")
    args = parser.parse_args()
    logs = load_logs()
    print(f"{len(logs)} real event logs, {sum(map(len, logs.values())) / 1024:.0f} KiB")
    rows, before = sweep(logs, args.sweep_seconds)
    print("full check (software-signed quote over the replayed PCRs, warm verifier), by log size:")
    for row in rows:
        print(f"  {row['kib']:>6.1f} KiB  {row['full_checks_per_s']:>8,.0f} /s  {row['log']}")
    largest = rows[-1]
    largest_ratio = largest["full_checks_per_s"] / before
    print(
        f"largest log: {largest['full_checks_per_s']:,.0f} /s; SIPA decoded on every check (as before): "
        f"{before:,.0f} /s -> {largest_ratio:.1f}x"
    )
    mine = ours(logs, args.seconds)
    peer = keylime(logs, args.seconds)
    ratio = mine["full_checks_per_s"] / peer["full_checks_per_s"]
    ratio_cold = mine["full_checks_per_s_no_cache"] / peer["full_checks_per_s"]
    row = "{:38}{:>12}{:>16}"
    print(row.format("", "affidavit", "keylime 7.14.3"))
    print(
        row.format(
            "parse+replay (logs/s)",
            f"{mine['logs_per_s_parse_replay']:.0f}",
            f"{peer['logs_per_s_parse_replay']:.1f}",
        )
    )
    print(
        row.format(
            "  + data-vs-digest check (logs/s)", f"{mine['logs_per_s_parse_replay_datacheck']:.0f}", "-"
        )
    )
    print(
        row.format(
            "full check: quote+log+policy (/s)",
            f"{mine['full_checks_per_s']:.0f}",
            f"{peer['full_checks_per_s']:.1f}",
        )
    )
    print(
        f"keylime parsed {peer['logs_parsed']}/{len(logs)} logs; full check: swtpm quote over RHEL 9 SB log"
    )
    print(
        f"ratio (full checks, ours / keylime): {ratio:.0f}x; fresh verifier per call: {ratio_cold:.0f}x"
    )
    print(
        json.dumps(
            {
                "logs": len(logs),
                "affidavit": {k: round(v, 1) for k, v in mine.items()},
                "keylime": {k: round(v, 1) for k, v in peer.items()},
                "ratio": round(ratio, 1),
                "ratio_no_cache": round(ratio_cold, 1),
                "sweep": rows,
                "largest_log_per_s": largest["full_checks_per_s"],
                "largest_log_per_s_sipa_uncached": round(before, 1),
                "largest_log_ratio_vs_before": round(largest_ratio, 1),
                "ratio_parse_replay": round(
                    mine["logs_per_s_parse_replay"] / peer["logs_per_s_parse_replay"], 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
