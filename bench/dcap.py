"""DCAP quote verification throughput: Affidavit against dcap-qvl, on the same real quotes, on one core.

Affidavit runs as the service does: one ``DcapVerifier`` whose collateral cache is warm, so a quote costs
its own checks. dcap-qvl gets its collateral pre-parsed (``QuoteCollateralV3.from_json`` once) and, by
design, re-verifies all collateral on every call; for the same footing, Affidavit's uncached
``verify_quote`` (a fresh verifier per call: a first quote from a new platform with new collateral) is
measured too, with its own ratio (``cold_ratio_vs_dcap_qvl``): both sides get the same inputs, the quote and
its parsed, unverified collateral, and nothing carries over between calls. An uncached call makes 7 ECDSA
verifications (PCK CA, PCK certificate, TCB signer, TCB Info, QE identity, QE report, quote) and 2 CRL
signature checks: each distinct signature once, the root trusted by its key (a root edition that is not
pinned costs its self-signature too); ``cold_ecdsa_per_quote`` counts them. dcap-qvl's webpki paths verify
more (the Root CA CRL once per chain), but its whole time is elliptic-curve arithmetic, so the cold ratio is
bounded by how much Python work surrounds the 9 verifications. ``cold_floor_per_s`` is those verifications
alone (recorded from the uncached call, keys decoded per call as it decodes them, signed bytes hashed):
``cold_ratio_vs_floor`` is the uncached call against that floor, and ``cold_floor_vs_dcap_qvl`` the floor
against dcap-qvl, the most ``cold_ratio_vs_dcap_qvl`` can reach with OpenSSL's P-256. The (warm) floor is
the two ECDSA P-256 verifications of a quote (QE report by the PCK key, quote by the attestation key). A
warm verifier can beat it: every quote of a platform carries the same QE report, so its signature check is
remembered and a new quote costs one ECDSA verification (its own signature, never cached).

Cases: every case in ``vectors/sgx/*/expected.json`` that both verifiers accept (dcap-qvl cannot read TCB
Info v2 and rejects debug enclaves and TDs with a service TD, so those are left out).

Platform sweep: 1, 64, 1,000 and 10,000 simulated platforms (one simulated Intel PKI, 8 FMSPCs), each
with its own PCK certificate and quote, verified round robin by one warm verifier: ``scale_ratio_10000_vs_1``
is the per-quote cost at 10,000 platforms over the cost at one. ``new_platform_ecdsa`` counts the ECDSA
verifications a platform new to a warm verifier costs (under collateral the verifier already checked).

Rates are per CPU-second of this process (pinned to one core), so a shared machine's load shifts them
less than wall-clock rates; every ratio compares figures taken in the same run.

Usage: .venv/bin/python bench/dcap.py [--rounds N] [--repeat R] [--platforms 1,64,1000,10000]
(vectors: $AFFIDAVIT_VECTORS)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral, verify_quote

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("AFFIDAVIT_VECTORS", REPO.parent / "shared" / "vectors")).resolve()


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "sgx-v3", "tdx-v4", ...
    quote: bytes
    collateral_json: str
    at: dt.datetime


def load_cases() -> list[Case]:
    cases = []
    for expected_file in sorted((VECTORS / "sgx").glob("*/expected.json")):
        expected = json.loads(expected_file.read_text())
        for case in expected.get("cases", []):
            if not case["expected"].get("verifies") or not case.get("dcap_qvl_0_7_0", {}).get("ok"):
                continue
            quote = (expected_file.parent / case["quote"]).read_bytes()
            version, _, tee = struct.unpack_from("<HHI", quote)
            at = dt.datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))
            collateral = (expected_file.parent / case["collateral"]).read_text()
            kind = f"{'tdx' if tee == 0x81 else 'sgx'}-v{version}"
            cases.append(Case(f"{expected_file.parent.name}/{case['quote']}", kind, quote, collateral, at))
    if not cases:
        sys.exit(f"no usable cases under {VECTORS}/sgx (set AFFIDAVIT_VECTORS)")
    return cases


def pin_to_one_core() -> str:
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (sched_setaffinity unavailable)"


Calls = list[Callable[[], Any]]


def measure(groups: dict[str, tuple[Calls, int]], repeat: int) -> dict[str, float]:
    """Median calls per CPU-second of each group (calls, passes per run), runs interleaved across groups.

    Interleaving gives every contender the same share of whatever else the machine is doing; CPU time
    (the process's, pinned to one core) leaves out the time other processes hold that core.
    """
    for calls, _ in groups.values():
        for call in calls:  # warm-up: fills caches, as a running service has them
            call()
    rates: dict[str, list[float]] = {name: [] for name in groups}
    for _ in range(repeat):
        for name, (calls, rounds) in groups.items():
            start = time.process_time()
            for _ in range(rounds):
                for call in calls:
                    call()
            rates[name].append(rounds * len(calls) / (time.process_time() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def affidavit_calls(cases: list[Case]) -> tuple[list[Callable[[], Any]], list[str]]:
    verifier = DcapVerifier(TrustAnchors.intel())
    calls, statuses = [], []
    for case in cases:
        collateral = load_collateral(case.collateral_json)

        def call(case: Case = case, collateral: Any = collateral) -> Any:
            return verifier.verify(case.quote, collateral, case.at)

        statuses.append(call().tcb_status)
        calls.append(call)
    return calls, statuses


def uncached_calls(cases: list[Case]) -> list[Callable[[], Any]]:
    trust = TrustAnchors.intel()
    calls = []
    for case in cases:
        collateral = load_collateral(case.collateral_json)

        def call(case: Case = case, collateral: Any = collateral) -> Any:
            return verify_quote(case.quote, collateral, trust, case.at)

        calls.append(call)
    return calls


def dcap_qvl_calls(cases: list[Case]) -> tuple[list[Callable[[], Any]], list[str]]:
    calls, statuses = [], []
    for case in cases:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(case.collateral_json)
        now_secs = int(case.at.timestamp())

        def call(case: Case = case, collateral: Any = collateral, now_secs: int = now_secs) -> Any:
            return dcap_qvl.verify(case.quote, collateral, now_secs)

        statuses.append(call().status)
        calls.append(call)
    return calls, statuses


def floor_call(case: Case) -> Callable[[], None]:
    """The two ECDSA verifications of one v3 SGX quote, with keys and signatures decoded beforehand."""
    quote = case.quote

    def der_sig(raw: bytes) -> bytes:
        return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))

    attestation_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + quote[500:564])
    quote_sig, signed = der_sig(quote[436:500]), quote[:432]
    qe_report, qe_sig = quote[564:948], der_sig(quote[948:1012])
    pck_key = x509.load_pem_x509_certificates(quote[quote.index(b"-----BEGIN") :].rstrip(b"\0"))[
        0
    ].public_key()
    assert isinstance(pck_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())

    def call() -> None:
        pck_key.verify(qe_sig, qe_report, algorithm)
        attestation_key.verify(quote_sig, signed, algorithm)

    return call


Verification = tuple[ec.EllipticCurvePublicKey, bytes, bytes]  # (key, DER signature, signed bytes)


def ecdsa_made(action: Callable[[], Any]) -> list[Verification]:
    """The ECDSA verifications ``action`` makes through `pki.ecdsa_ok` (the one place DCAP checks one)."""
    from affidavit.evidence.dcap import pki as sgx_pki

    made: list[Verification] = []
    real = sgx_pki.ecdsa_ok

    def recording(
        key: ec.EllipticCurvePublicKey, der_signature: bytes, data: bytes, digest: bytes | None = None
    ) -> bool:
        made.append((key, der_signature, data))
        return real(key, der_signature, data, digest)

    sgx_pki.ecdsa_ok = recording  # type: ignore[assignment]
    try:
        action()
    finally:
        sgx_pki.ecdsa_ok = real  # type: ignore[assignment]
    return made


def cold_ecdsa_per_quote(cases: list[Case]) -> float:
    """ECDSA verifications an uncached ``verify_quote`` makes, averaged over the cases."""
    calls = uncached_calls(cases)
    return sum(len(ecdsa_made(call)) for call in calls) / len(cases)


def cold_floor_calls(cases: list[Case]) -> list[Callable[[], None]]:
    """The cold path's own crypto floor, one call per case: the ECDSA verifications an uncached
    ``verify_quote`` makes (recorded from it), each with a key decoded from its DER for the call, as the
    cold path decodes it, and the signed bytes hashed.

    A key the cold path does not decode per call keeps one object here too: the trust anchors' root key,
    and the signer keys of the collateral, which the benchmark parses once (`cryptography` keeps a
    certificate's key object). Which keys those are is read off two calls: a key object both use is one
    that carries over. A first verification with a fresh key object costs ~20 µs of OpenSSL set-up on top
    of the ~14 µs decode; the floor pays both wherever the cold path does.
    """
    calls = []
    for call in uncached_calls(cases):
        first, second = ecdsa_made(call), ecdsa_made(call)
        kept = {id(key) for key, _, _ in first}
        plan = [
            (
                key if id(key) in kept else None,
                key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
                sig,
                data,
            )
            for key, sig, data in second
        ]

        def floor(plan: list[tuple[Any, bytes, bytes, bytes]] = plan) -> None:
            keys: dict[bytes, Any] = {}
            for kept_key, spki, sig, data in plan:
                key = kept_key if kept_key is not None else keys.get(spki)
                if key is None:
                    key = keys[spki] = load_der_public_key(spki)
                key.verify(sig, data, ECDSA_SHA256)

        calls.append(floor)
    return calls


def platform_sweep(counts: list[int]) -> tuple[dict[int, float], int]:
    """Per-quote microseconds for each platform count, and the ECDSA count of one new platform."""
    from affidavit.simulate import SimulatedPki
    from affidavit.simulate.platform import PlatformTcb, SimulatedPlatform

    now = dt.datetime.now(dt.UTC)
    simulated = SimulatedPki.create(seed=2026, now=now)
    trust = TrustAnchors.from_pem(simulated.root_pem)
    fmspcs = [f"00906ED5{i:04X}" for i in range(8)]
    total = max(counts)
    platforms: list[tuple[bytes, Any]] = []
    collaterals: dict[str, Any] = {}
    start = time.perf_counter()
    for i in range(total + 1):
        fmspc = fmspcs[i % len(fmspcs)]
        p = SimulatedPlatform(
            simulated,
            name=f"p{i}",
            fmspc=bytes.fromhex(fmspc),
            ca="platform",
            tee="sgx",
            tcb=PlatformTcb(),
            qe_svn=8,
            pce_id=b"\0\0",
            now=now,
        )
        if fmspc not in collaterals:
            collaterals[fmspc] = load_collateral(p.collateral(now=now))
        platforms.append((p.sgx_quote(report_data=b"bench"), collaterals[fmspc]))
        if (i + 1) % 1000 == 0:
            elapsed = time.perf_counter() - start
            print(f"  simulated {i + 1:,}/{total:,} platforms ({elapsed:.0f} s)", flush=True)
    spare = platforms.pop()
    # One warm verifier per count; the timed runs are interleaved across counts (as `measure` does), so a
    # change in the machine's load shifts every count alike instead of skewing the ratio.
    warm: dict[int, DcapVerifier] = {}
    for n in counts:
        warm[n] = DcapVerifier(trust)
        for quote, collateral in platforms[:n]:  # first sight of every platform fills the caches
            warm[n].verify(quote, collateral, now)
    best = {n: float("inf") for n in counts}
    for _ in range(5):
        for n in counts:
            verifier, subset = warm[n], platforms[:n]
            passes = max(1, 10_000 // n)
            t0 = time.process_time()
            for _ in range(passes):
                for quote, collateral in subset:
                    verifier.verify(quote, collateral, now)
            best[n] = min(best[n], (time.process_time() - t0) / (passes * n))
    per_quote = {n: best[n] * 1e6 for n in counts}
    for n in counts:
        print(f"  {n:>6,} platforms round robin: {per_quote[n]:7.1f} us/quote", flush=True)
    new_platform = ecdsa_made(lambda: warm[max(counts)].verify(*spare, now))
    return per_quote, len(new_platform)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="passes over all cases per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per verifier (median reported)")
    parser.add_argument("--platforms", default="1,64,1000,10000", help="platform counts of the sweep")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.platforms.split(",")})

    pinning = pin_to_one_core()
    cases = load_cases()
    ours, our_statuses = affidavit_calls(cases)
    peer, peer_statuses = dcap_qvl_calls(cases)
    disagreements = [
        f"{c.name}: affidavit {a} / dcap-qvl {p}"
        for c, a, p in zip(cases, our_statuses, peer_statuses, strict=True)
        if a.replace("_", "").lower() != p.replace("_", "").lower()
    ]
    sgx_v3 = next(c for c in cases if c.kind == "sgx-v3")

    print(
        f"DCAP verification of {len(cases)} real quote/collateral cases, {pinning}, "
        f"dcap-qvl {dcap_qvl.__version__}"
    )
    for name, status in zip((c.name for c in cases), our_statuses, strict=True):
        print(f"  {name:<70} {status}")
    rounds = args.rounds
    overall = measure(
        {
            "affidavit": (ours, rounds),
            "dcap_qvl": (peer, rounds),
            "uncached": (uncached_calls(cases), max(1, rounds // 8)),
            "cold_floor": (cold_floor_calls(cases), max(1, rounds // 4)),
            "floor": ([floor_call(sgx_v3)], rounds * len(cases)),
        },
        args.repeat,
    )
    per_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({c.kind for c in cases}):
        idx = [i for i, c in enumerate(cases) if c.kind == kind]
        kind_rounds = max(1, rounds * len(cases) // len(idx) // 4)
        figures = measure(
            {
                "affidavit": ([ours[i] for i in idx], kind_rounds),
                "dcap_qvl": ([peer[i] for i in idx], kind_rounds),
            },
            3,
        )
        per_kind[kind] = {f"{name}_per_s": round(value, 1) for name, value in figures.items()}
    our_rate, peer_rate, floor_rate = overall["affidavit"], overall["dcap_qvl"], overall["floor"]

    print(f"affidavit, one DcapVerifier (collateral cached):   {our_rate:8.0f} verifications/s")
    print(f"affidavit, verify_quote (nothing cached):          {overall['uncached']:8.0f} verifications/s")
    print(
        f"dcap-qvl {dcap_qvl.__version__}, verify (collateral pre-parsed):  {peer_rate:8.0f} verifications/s"
    )
    print(f"floor, 2 ECDSA P-256 verifications (cryptography): {floor_rate:8.0f} quotes/s")
    cold_floor_rate = overall["cold_floor"]
    print(f"cold floor, its ECDSA verifications (keys decoded per call): {cold_floor_rate:8.0f} quotes/s")
    uncached_ratio = overall["uncached"] / peer_rate
    cold_vs_floor = overall["uncached"] / cold_floor_rate
    print(
        f"ratio affidavit / dcap-qvl: {our_rate / peer_rate:.2f}x; "
        f"affidavit / floor: {our_rate / floor_rate:.2f}x; "
        f"uncached affidavit / dcap-qvl: {uncached_ratio:.2f}x"
    )
    print(
        f"uncached affidavit / its cold floor: {cold_vs_floor:.2f}x; "
        f"cold floor / dcap-qvl: {cold_floor_rate / peer_rate:.2f}x (the most the uncached ratio can reach)"
    )
    for kind, figures in per_kind.items():
        print(
            f"  {kind}: affidavit {figures['affidavit_per_s']:.0f}/s, "
            f"dcap-qvl {figures['dcap_qvl_per_s']:.0f}/s"
        )
    cold_ecdsa = cold_ecdsa_per_quote(cases)
    print(f"an uncached quote: {cold_ecdsa:.1f} ECDSA verifications on average")
    for line in disagreements:
        print(f"  status disagreement: {line}")
    print(f"platform sweep ({', '.join(f'{n:,}' for n in counts)} simulated platforms):")
    sweep, new_platform_ecdsa = platform_sweep(counts)
    scale = sweep[max(counts)] / sweep[min(counts)]
    print(
        f"per-quote cost at {max(counts):,} platforms / at {min(counts):,}: {scale:.2f}x; "
        f"a new platform in a warm verifier: {new_platform_ecdsa} ECDSA verifications"
    )
    print(
        json.dumps(
            {
                "bench": "dcap",
                "cases": len(cases),
                "affidavit_per_s": round(our_rate, 1),
                "affidavit_uncached_per_s": round(overall["uncached"], 1),
                "uncached_ratio": round(uncached_ratio, 2),
                "cold_ratio_vs_dcap_qvl": round(uncached_ratio, 2),
                "cold_ecdsa_per_quote": round(cold_ecdsa, 1),
                "cold_floor_per_s": round(cold_floor_rate, 1),
                "cold_ratio_vs_floor": round(cold_vs_floor, 2),
                "cold_floor_vs_dcap_qvl": round(cold_floor_rate / peer_rate, 2),
                "platform_sweep_us_per_quote": {str(n): round(v, 1) for n, v in sweep.items()},
                f"scale_ratio_{max(counts)}_vs_{min(counts)}": round(scale, 2),
                "new_platform_ecdsa": new_platform_ecdsa,
                "dcap_qvl_per_s": round(peer_rate, 1),
                "floor_per_s": round(floor_rate, 1),
                "per_kind": per_kind,
                "status_disagreements": len(disagreements),
                "ratio": round(our_rate / peer_rate, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
