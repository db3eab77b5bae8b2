"""The whole workflow end to end: the demo's own step functions against a live service, outcome by outcome.

The steps are imported from ``demo.tour`` (so the demo and this test cannot drift apart); each test
asserts what the step must have produced. Two more tests run ``python -m demo.tour`` itself: once to
completion, once interrupted with SIGINT, and check that it stopped everything it started.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo.tour import (
    DemoContext,
    Narrator,
    SgxEvidence,
    StepFailed,
    TpmDevice,
    _expect_refusal,
    altered_boot_log,
    attest_sgx,
    attest_tpm,
    boot_tpm,
    collect_sgx_evidence,
    demo_context,
    refuse_altered_boot_log,
    refuse_debug_enclave,
    refuse_tampered_quote,
    verify_sgx_token,
)

from affidavit.client import ServiceRejected
from affidavit.evidence.dcap import parse_quote
from affidavit.evidence.tpm import parse_event_log
from affidavit.relying_party import ExpectationFailed, Expectations, RelyingPartyError
from tests.conftest import ROOT

DEMO_TIMEOUT = 60.0


def _alive(pid: int) -> bool:
    """Running and not a zombie (an exited child of an exited demo may wait for its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def narration() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def ctx(
    tmp_path_factory: pytest.TempPathFactory, vectors: Path, narration: io.StringIO
) -> Iterator[DemoContext]:
    with demo_context(tmp_path_factory.mktemp("demo"), vectors, Narrator(narration)) as context:
        yield context
    assert context.service.proc is not None and context.service.proc.poll() is not None
    assert not any(_alive(pid) for pid in _pids(narration.getvalue()))  # the service and swtpm


@pytest.fixture(scope="module")
def evidence(ctx: DemoContext) -> SgxEvidence:
    return collect_sgx_evidence(ctx)


@pytest.fixture(scope="module")
def sgx_token(ctx: DemoContext, evidence: SgxEvidence) -> str:
    return attest_sgx(ctx, evidence)


@pytest.fixture(scope="module")
def tpm(ctx: DemoContext) -> TpmDevice:
    return boot_tpm(ctx)


def test_1_evidence_binds_the_enclave_key(ctx: DemoContext, evidence: SgxEvidence) -> None:
    body = parse_quote(evidence.quote).body
    assert bytes(body.report_data) == hashlib.sha256(evidence.runtime_data).digest() + bytes(32)
    assert bytes(body.mrenclave) == ctx.enclave.enclave.mrenclave
    assert evidence.jwk["kty"] == "EC" and evidence.jwk["crv"] == "P-256"


def test_2_the_service_issues_a_signed_token(ctx: DemoContext, sgx_token: str) -> None:
    assert sgx_token.count(".") == 2
    keys = ctx.verifier().signing_keys()
    assert len(keys) == 1  # one fresh service, one signing key


def test_3_the_relying_party_verifies_token_and_identity(
    ctx: DemoContext, evidence: SgxEvidence, sgx_token: str
) -> None:
    verified = verify_sgx_token(ctx, evidence, sgx_token)
    claims = verified.claims
    enclave = ctx.enclave.enclave
    assert claims["iss"] == ctx.service.url and claims["nonce"] == evidence.nonce
    assert claims["x-ms-sgx-mrenclave"] == enclave.mrenclave.hex()
    assert claims["x-ms-sgx-mrsigner"] == enclave.mrsigner.hex()
    assert claims["x-ms-sgx-svn"] == 2 and claims["x-ms-sgx-is-debuggable"] is False
    assert claims["x-ms-sgx-tcb-status"] == "UpToDate"
    assert claims["x-ms-runtime"]["jwk"] == evidence.jwk
    # The same token fails for another relying party's nonce, or one that expects another enclave.
    with pytest.raises(RelyingPartyError) as info:
        ctx.verifier().verify(sgx_token, nonce="someone else's nonce")
    assert info.value.code == "nonce_mismatch"
    with pytest.raises(ExpectationFailed) as failed:
        ctx.verifier().verify(sgx_token, expectations=Expectations(mrenclave=frozenset({"00" * 32})))
    assert failed.value.claim == "x-ms-sgx-mrenclave"
    # A token altered after signing does not verify.
    head, body, sig = sgx_token.split(".")
    forged = f"{head}.{body[:-4]}{'AAAA' if body[-4:] != 'AAAA' else 'BBBB'}.{sig}"
    with pytest.raises(RelyingPartyError):
        ctx.verifier().verify(forged)


def test_4_tpm_with_a_real_boot_log(ctx: DemoContext, tpm: TpmDevice, vectors: Path) -> None:
    log = parse_event_log(tpm.event_log)
    assert tpm.events_replayed == sum(1 for e in log.events if e.type != 0x3) > 50
    assert _alive(tpm.swtpm_pid)
    claims = attest_tpm(ctx, tpm).claims
    assert claims["x-ms-attestation-type"] == "tpm" and claims["tpmVersion"] == 2
    assert claims["aikValidated"] is True and claims["secureBootEnabled"] is True
    assert claims["x-ms-policy"] == {"SecureBootEnabled": True, "AIKPresent": True}
    assert claims["iss"] == ctx.service.url


def test_5a_a_tampered_quote_is_refused(ctx: DemoContext, evidence: SgxEvidence) -> None:
    refused = refuse_tampered_quote(ctx, evidence)
    assert refused.status == 400 and refused.code == "InvalidParameter"
    assert "signature" in refused.message


def test_5b_a_debug_enclave_is_refused_by_the_relying_party_and_then_by_policy(ctx: DemoContext) -> None:
    refusals = refuse_debug_enclave(ctx)
    assert refusals.relying_party.claim == "x-ms-sgx-is-debuggable"
    assert refusals.relying_party.actual is True
    assert refusals.service.status == 400 and refusals.service.code == "PolicyEvaluationError"
    refuse_debug_enclave(ctx)  # repeatable: it starts from the default SGX policy each time


def test_5c_an_altered_boot_log_is_refused(ctx: DemoContext, tpm: TpmDevice) -> None:
    forged = altered_boot_log(tpm.event_log)
    assert len(forged) == len(tpm.event_log)
    assert sum(a != b for a, b in zip(forged, tpm.event_log, strict=True)) == 1
    refused = refuse_altered_boot_log(ctx, tpm)
    assert refused.status == 400 and refused.code == "InvalidParameter"
    assert "digest" in refused.message


def test_narration_numbers_every_step(narration: io.StringIO, ctx: DemoContext) -> None:
    text = narration.getvalue()
    assert "0. Setup" in text and "[FAILED]" not in text


def test_an_unexpected_outcome_fails_the_step() -> None:
    with pytest.raises(StepFailed, match="issued a token"):
        _expect_refusal(lambda: None, "InvalidParameter", "forged evidence")

    def wrong() -> None:
        raise ServiceRejected(400, "PolicyEvaluationError", "denied")

    with pytest.raises(StepFailed, match="rather than InvalidParameter"):
        _expect_refusal(wrong, "InvalidParameter", "forged evidence")


def _demo_env(vectors: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
    env["AFFIDAVIT_VECTORS"] = str(vectors)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def _pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+)\)", output)]


def test_the_demo_program_runs_to_completion_and_stops_everything(vectors: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "demo.tour"], env=_demo_env(vectors), cwd=ROOT,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - started < DEMO_TIMEOUT
    assert "8/8 steps gave the expected outcome" in proc.stdout
    pids = _pids(proc.stdout)
    assert len(pids) == 2 and not any(_alive(p) for p in pids)  # the service and swtpm


def test_ctrl_c_stops_the_service_and_swtpm(vectors: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "demo.tour"], env=_demo_env(vectors), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = ""
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT
        while len(_pids(seen)) < 2 and time.monotonic() < deadline:  # both running: interrupt now
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert len(_pids(seen)) == 2, seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert not any(_alive(p) for p in _pids(seen))
