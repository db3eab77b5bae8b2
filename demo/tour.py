"""The attestation workflow end to end, as a guided tour: ``make demo`` or ``python -m demo.tour``.

Three actors take part. The attester proves what runs on it (here a simulated SGX enclave and a software
TPM holding a real machine's boot measurements); the Affidavit service verifies that evidence and signs a
token; the relying party decides whether to trust the attester, from the token alone, checked against keys
it fetches from the service's metadata. Everything runs on loopback in a temporary directory and is
stopped on exit, on Ctrl-C and on failure.

Each step is a function of a :class:`DemoContext` that narrates what it does, returns what it obtained, and
raises :class:`StepFailed` when the outcome is not the expected one (a token where a refusal was due, or
the reverse). ``tests/test_workflow_e2e.py`` calls the same functions, so the demo and its test cannot
drift apart. Docs: ``docs/demo.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.client import ClientError, ServiceRejected
from affidavit.client.http import AttestationClient, RuntimeData
from affidavit.client.sources import SimulatedSource, report_data_for
from affidavit.errors import AffidavitError
from affidavit.jose import b64url
from affidavit.relying_party import (
    ExpectationFailed,
    Expectations,
    TokenVerifier,
    VerifiedToken,
    decode_unverified,
)
from affidavit.simulate.swtpm import AkCertificateAuthority

REPO = Path(__file__).resolve().parents[1]
TPM_LOG = "tpm/keylime/binary_bios_measurements-secureboot"
TPM_LOG_ABOUT = "a RHEL 9 VM booted by OVMF with Secure Boot on, from Keylime's test data"
SERVICE_START_TIMEOUT = 30.0
POLICY_API = "2020-10-01"

TPM_POLICY = """version=1.2;
authorizationrules {
    c:[type=="aikValidated", issuer=="AttestationService", value==true] &&
        c2:[type=="secureBootEnabled", issuer=="AttestationService", value==true] => permit();
};
issuancerules {
    c:[type=="secureBootEnabled", issuer=="AttestationService"] =>
        issue(type="SecureBootEnabled", value=c.value);
    c:[type=="aikValidated", issuer=="AttestationService"] => issue(type="AIKPresent", value=c.value);
};
"""

SGX_NO_DEBUG_POLICY = """version=1.0;
authorizationrules {
    c:[type=="x-ms-sgx-is-debuggable", issuer=="AttestationService", value==false] => permit();
};
issuancerules {
    c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
    c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
    c:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
    c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
};
"""


class StepFailed(AffidavitError):
    """A step did not give its expected outcome."""

    code = "demo_step_failed"


# ------------------------------------------------------------------------------------------- narration


class Narrator:
    """Prints the tour: numbered steps, short explanations, facts as aligned ``label  value`` lines."""

    WIDTH = 100

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def title(self, text: str) -> None:
        self._print(text)
        self._print("=" * len(text))

    def step(self, number: str, text: str) -> None:
        self._print()
        self._print(f"{number}. {text}")

    def say(self, text: str, indent: int = 3) -> None:
        pad = " " * indent
        words = " ".join(text.split())
        self._print(textwrap.fill(words, self.WIDTH, initial_indent=pad, subsequent_indent=pad))

    def fact(self, label: str, value: object, indent: int = 5) -> None:
        self._print(f"{' ' * indent}{label:<22} {value}")

    def verbatim(self, text: str, indent: int = 5) -> None:
        for line in text.splitlines() or ["(empty)"]:
            self._print(" " * indent + line)

    def outcome(self, ok: bool, text: str) -> None:
        self.say(f"{'[ok]' if ok else '[FAILED]'} {text}")


def short(value: object, keep: int = 16) -> str:
    text = str(value)
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-keep:]}"


# --------------------------------------------------------------------------------------------- service


# The banner `affidavit serve` prints once it has bound: with --port 0 the OS picks a free port and the
# server keeps it (no window in which another process can take it); the banner says which.
BANNER_PORT = re.compile(r"Affidavit attestation service \(\w+ mode\) at https?://[^\s:/]+:(\d+)")


@dataclass
class DemoService:
    """``affidavit serve`` in a subprocess (own session, so Ctrl-C reaches only the demo, which stops it)."""

    data_dir: Path
    args: tuple[str, ...]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def admin_token(self) -> str:
        """Generated by the service into its data directory on first start (aad mode)."""
        return (self.data_dir / "admin-token").read_text().strip()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> None:
        from affidavit.service.tls import ensure_self_signed

        ensure_self_signed(self.data_dir, "127.0.0.1")  # here, so the CA file exists before the first probe
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFFIDAVIT_")}
        cmd = [sys.executable, "-m", "affidavit", "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(self.data_dir), "--tls-self-signed", "--log-level", "warning", *self.args]
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.port = 0  # until the banner names it
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        if self._wait_ready(start):
            return
        self.stop()
        raise StepFailed(f"the service did not start:\n{self.log_tail()}")

    def _wait_ready(self, log_start: int) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        with httpx.Client(verify=self.tls(), timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                if not self.port:
                    banner = self.log_path.read_bytes()[log_start:].decode("utf-8", "replace")
                    found = BANNER_PORT.search(banner)
                    if found is None:
                        time.sleep(0.05)
                        continue
                    self.port = int(found.group(1))
                try:
                    if http.get(self.url + "/.well-known/openid-configuration").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def put_policy(self, att_type: str, text: str) -> None:
        """Set a policy through MAA's policy API (unsigned JWS; the admin bearer token authorises it)."""
        from affidavit.tokens import unsigned_policy_jws

        self._manage("PUT", f"/policies/{att_type}", unsigned_policy_jws(text))

    def reset_policy(self, att_type: str) -> None:
        self._manage("POST", f"/policies/{att_type}:reset", "eyJhbGciOiJub25lIn0..")

    def _manage(self, method: str, path: str, body: str) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token()}", "Content-Type": "text/plain"}
        with httpx.Client(verify=self.tls(), timeout=30.0) as http:
            r = http.request(method, self.url + path, params={"api-version": POLICY_API}, content=body,
                             headers=headers)
        if r.status_code != 200:
            raise StepFailed(f"{method} {path} answered HTTP {r.status_code}: {r.text[:300]}")


# --------------------------------------------------------------------------------------------- context


@dataclass
class DemoContext:
    """What the steps share: the running service, the attesters' identities, the relying party's client."""

    work: Path
    vectors: Path
    service: DemoService
    enclave: SimulatedSource
    ak_ca: AkCertificateAuthority
    narrator: Narrator
    stack: ExitStack
    _verifier: TokenVerifier | None = field(default=None, repr=False)

    def client(self) -> AttestationClient:
        return AttestationClient(self.service.url, verify=self.service.tls(), retries=1)

    def verifier(self) -> TokenVerifier:
        """The relying party's verifier: it knows only the issuer URL and the service's TLS certificate."""
        if self._verifier is None:
            self._verifier = self.stack.enter_context(
                TokenVerifier(self.service.url, verify=self.service.tls())
            )
        return self._verifier

    def sgx_expectations(self) -> Expectations:
        """The relying party's requirements for the enclave: who signed it, which build, how new, no debug."""
        enclave = self.enclave.enclave
        return Expectations(
            mrsigner=frozenset({enclave.mrsigner.hex()}),
            mrenclave=frozenset({enclave.mrenclave.hex()}),
            min_svn=1,
            allow_debug=False,
            tcb_statuses=frozenset({"UpToDate"}),
        )


def find_vectors(explicit: Path | None = None) -> Path:
    """``--vectors``, else ``AFFIDAVIT_VECTORS``, else ``../shared/vectors`` beside the repository."""
    env = os.environ.get("AFFIDAVIT_VECTORS")
    beside = [REPO.parent / "shared" / "vectors", Path.cwd().parent / "shared" / "vectors"]
    candidates = [explicit] if explicit else [Path(env)] if env else beside
    for path in candidates:
        if path is not None and (path / TPM_LOG).is_file():
            return path.resolve()
    shown = ", ".join(str(p) for p in candidates)
    raise StepFailed(f"test vectors not found (looked in {shown}); set AFFIDAVIT_VECTORS or pass --vectors")


@contextmanager
def demo_context(work: Path, vectors: Path, narrator: Narrator) -> Iterator[DemoContext]:
    """Start the service with the demo's trust (simulated Intel root, demo AK CA) and a TPM policy."""
    from affidavit.evidence.dcap.trust import INTEL_ROOT_PEM

    n = narrator
    n.step("0", "Setup: start the Affidavit service")
    enclave = SimulatedSource.sgx(isv_prod_id=1, isv_svn=2)
    ak_ca = AkCertificateAuthority.create()
    data_dir, collateral_dir = work / "service", work / "collateral"
    data_dir.mkdir(parents=True)
    collateral_dir.mkdir()
    (collateral_dir / "simulated-platform.json").write_text(json.dumps(enclave.collateral()))
    (work / "simulated-intel-root.pem").write_bytes(enclave.root_pem)
    intel_root = resources.files("affidavit.evidence.dcap").joinpath(INTEL_ROOT_PEM).read_bytes()
    (work / "intel-sgx-root.pem").write_bytes(intel_root)
    (work / "demo-ak-ca.pem").write_bytes(ak_ca.pem)
    service = DemoService(data_dir, (
        "--trust-root", str(work / "intel-sgx-root.pem"),
        "--trust-root", str(work / "simulated-intel-root.pem"),
        "--collateral-dir", str(collateral_dir),
        "--tpm-aik-root", str(work / "demo-ak-ca.pem"),
    ))
    with ExitStack() as stack:
        stack.callback(service.stop)
        service.start()
        n.say("affidavit serve runs in the background on a free loopback port, with a temporary data "
              "directory. It trusts Intel's SGX root and, for this demo only, a simulated Intel PKI whose "
              "collateral (TCB info, QE identity, CRLs) it reads from a directory; and a demo CA that "
              "certifies TPM attestation keys.")
        n.fact("service", f"{service.url} (pid {service.proc.pid if service.proc else '?'})")
        n.fact("TLS certificate", f"{service.ca_file} (self-signed)")
        n.fact("metadata", f"{service.url}/.well-known/openid-configuration")
        n.fact("data directory", data_dir)
        service.put_policy("Tpm", TPM_POLICY)
        n.say("MAA's default TPM policy denies everything, so the demo sets one through the policy API "
              "(PUT /policies/Tpm, admin bearer token): permit when the AK is certified and Secure Boot "
              "is on. SGX keeps MAA's default policy for now, which permits every verified enclave.")
        n.outcome(True, "service running, TPM policy set")
        yield DemoContext(work, vectors, service, enclave, ak_ca, narrator, stack)


# ----------------------------------------------------------------------------------------- SGX steps


@dataclass(frozen=True)
class SgxEvidence:
    """What the enclave hands to the client: its key, the runtime data naming it, the quote binding it."""

    key: ec.EllipticCurvePrivateKey
    runtime_data: bytes  # JSON {"jwk": ...}
    quote: bytes
    nonce: str  # chosen by the relying party, echoed in the token

    @property
    def jwk(self) -> dict[str, Any]:
        return dict(json.loads(self.runtime_data)["jwk"])


def enclave_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}


def collect_sgx_evidence(ctx: DemoContext) -> SgxEvidence:
    """Step 1: the enclave makes a key pair and a quote whose report data is SHA-256 of its public key."""
    n = ctx.narrator
    n.step("1", "The client collects evidence from an SGX enclave (simulated)")
    n.say("Inside the enclave, a key pair is generated. The public key goes into the runtime data, and the "
          "enclave asks for a quote whose report data is SHA-256 of that runtime data: the quote, signed by "
          "the platform's attestation key, then vouches for the key. (A real enclave would read the quote "
          "from Gramine's /dev/attestation or via the DCAP library; see affidavit.client.sources.)")
    key = ec.generate_private_key(ec.SECP256R1())
    runtime = json.dumps({"jwk": enclave_jwk(key)}, separators=(",", ":"), sort_keys=True).encode()
    report_data = report_data_for(runtime)
    quote = ctx.enclave.get_quote(report_data)
    if quote[48 + 320 : 48 + 352] != hashlib.sha256(runtime).digest():
        raise StepFailed("the quote's report data does not hold SHA-256 of the runtime data")
    nonce = secrets.token_urlsafe(12)
    enclave = ctx.enclave.enclave
    n.fact("enclave key", f"EC P-256, x={short(enclave_jwk(key)['x'], 10)}")
    n.fact("runtime data", f"{len(runtime)} bytes of JSON: {{\"jwk\": ...}}")
    n.fact("report data", f"SHA-256(runtime data) = {short(report_data[:32].hex())}, then 32 zero bytes")
    n.fact("quote", f"{len(quote)} bytes, DCAP v3, MRENCLAVE {short(enclave.mrenclave.hex(), 8)}, "
           f"SVN {enclave.isv_svn}, debug {enclave.debug}")
    n.fact("nonce", f"{nonce} (from the relying party, for freshness)")
    n.outcome(True, "evidence ready")
    return SgxEvidence(key, runtime, quote, nonce)


def attest_sgx(ctx: DemoContext, evidence: SgxEvidence) -> str:
    """Step 2: POST /attest/SgxEnclave; the service verifies the quote and signs a token."""
    n = ctx.narrator
    n.step("2", "The client sends the evidence to the service and receives a token")
    n.say("AttestationClient posts the quote, the runtime data (as JSON) and the nonce to "
          "/attest/SgxEnclave. The service checks the quote's certificate chain up to the trusted root, "
          "the collateral, the TCB level, the quote signature and the report data binding, runs the "
          "SGX policy, and signs a JWT.")
    with ctx.client() as client:
        try:
            runtime = RuntimeData(evidence.runtime_data, json=True)
            token = client.attest_sgx(evidence.quote, runtime_data=runtime, nonce=evidence.nonce).token
        except ClientError as exc:
            raise StepFailed(f"the service refused genuine evidence: {exc}") from None
    header = decode_unverified(token).header
    n.fact("token", f"{len(token)} bytes, {header.get('alg')} JWT, kid {short(header.get('kid'), 8)}")
    n.outcome(True, "token issued")
    return token


def verify_sgx_token(ctx: DemoContext, evidence: SgxEvidence, token: str) -> VerifiedToken:
    """Step 3: the relying party verifies the token and the enclave's identity, and reads its key."""
    n = ctx.narrator
    n.step("3", "The relying party verifies the token and the enclave's identity")
    n.say("The relying party trusts nothing in the token's header: TokenVerifier fetches the service's "
          "OpenID metadata, follows its jwks_uri to the signing certificates, checks the signature, the "
          "validity window, the issuer and the nonce, then its own expectations of the enclave.")
    verifier = ctx.verifier()
    keys = verifier.signing_keys()
    expectations = ctx.sgx_expectations()
    try:
        verified = verifier.verify(token, nonce=evidence.nonce, expectations=expectations)
    except AffidavitError as exc:
        raise StepFailed(f"the relying party rejected a genuine token: {exc}") from None
    claims = verified.claims
    runtime = claims.get("x-ms-runtime")
    if not isinstance(runtime, dict) or runtime.get("jwk") != evidence.jwk:
        raise StepFailed("the token does not carry the enclave's public key")
    kids = ", ".join(short(k, 8) for k in keys)
    n.fact("signing keys", f"{len(keys)} from {ctx.service.url}/certs (kid {kids})")
    n.fact("expectations", "MRSIGNER and MRENCLAVE as built, SVN >= 1, not debuggable, TCB UpToDate")
    n.say("Verdict: TRUSTED. Key claims:")
    for name in ("x-ms-attestation-type", "x-ms-sgx-mrsigner", "x-ms-sgx-mrenclave", "x-ms-sgx-svn",
                 "x-ms-sgx-is-debuggable", "x-ms-sgx-tcb-status", "nonce"):
        n.fact(name, short(claims.get(name), 20))
    n.fact("x-ms-runtime.jwk", f"the enclave's key (x={short(evidence.jwk['x'], 10)})")
    n.say("The relying party now holds the enclave's public key, vouched for by the hardware: it can "
          "encrypt a secret that only this enclave can read.")
    n.outcome(True, "token and enclave identity verified")
    return verified


# ----------------------------------------------------------------------------------------- TPM steps


@dataclass(frozen=True)
class TpmDevice:
    """A booted software TPM: its TCTI, the AK (public area, certificate) and the boot log it replayed."""

    tcti: str
    swtpm_pid: int
    ak_handle: int
    ak_public: bytes  # TPM2B_PUBLIC
    ak_certificate: bytes  # DER, issued by the demo AK CA
    event_log: bytes
    events_replayed: int


def boot_tpm(ctx: DemoContext) -> TpmDevice:
    """Step 4a: swtpm, the real boot log replayed into its PCRs, an AK certified by the demo AK CA."""
    from affidavit.client.tpm_tools import DEFAULT_AK_HANDLE, TpmTools
    from affidavit.simulate.swtpm import event_log_banks, replay_event_log, running_swtpm

    n = ctx.narrator
    n.step("4", "TPM: a software TPM holding a real machine's boot measurements")
    log = (ctx.vectors / TPM_LOG).read_bytes()
    try:
        banks = event_log_banks(log)
        tpm = ctx.stack.enter_context(running_swtpm(ctx.work / "swtpm", banks))
        count = replay_event_log(tpm, log)
        tools = TpmTools(tpm.tcti)
        ak_public = tools.ensure_ak(DEFAULT_AK_HANDLE)
        ak_cert = ctx.ak_ca.issue(tools.read_public_pem(DEFAULT_AK_HANDLE))
    except (AffidavitError, OSError) as exc:
        detail = exc.message if isinstance(exc, AffidavitError) else str(exc)
        raise StepFailed(f"cannot prepare the software TPM: {detail}") from None
    n.say(f"4a. swtpm plays the machine's TPM. The firmware's measurements come from a real TCG boot log "
          f"({TPM_LOG_ABOUT}): every event is extended into the PCRs, so they hold what that firmware left. "
          f"An attestation key (AK) is created under the endorsement key and certified by the demo AK CA, "
          f"which the service trusts.")
    n.fact("swtpm", f"{tpm.tcti} (pid {tpm.pid})")
    n.fact("boot log", f"{TPM_LOG} ({len(log)} bytes, banks {', '.join(banks)})")
    n.fact("replayed", f"{count} measured events")
    n.fact("AK", f"persistent handle {DEFAULT_AK_HANDLE:#x}, certificate by '{_cn(ctx.ak_ca)}'")
    return TpmDevice(tpm.tcti, tpm.pid, DEFAULT_AK_HANDLE, ak_public, ak_cert, log, count)


def _cn(ca: AkCertificateAuthority) -> str:
    from cryptography.x509.oid import NameOID

    return str(ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _tpm_attest(ctx: DemoContext, device: TpmDevice, event_log: bytes, rp_data: bytes) -> str:
    from affidavit.client.tpm import AkMaterial, TpmEvidenceSource
    from affidavit.client.tpm_tools import TpmTools

    tools = TpmTools(device.tcti)
    pcrs = tuple(range(24))
    source = TpmEvidenceSource(
        ak=AkMaterial(device.ak_public, device.ak_certificate),
        quoter=lambda data: tools.quote(device.ak_handle, pcrs, data),
        event_log=event_log,
    )
    with ctx.client() as client:
        return client.attest_tpm(source, rp_data=rp_data).token


def attest_tpm(ctx: DemoContext, device: TpmDevice) -> VerifiedToken:
    """Step 4b: MAA's TPM protocol with the swtpm, then the relying party's check of the token."""
    n = ctx.narrator
    n.say("4b. The TPM client runs MAA's TPM protocol on /attest/Tpm: it asks for a challenge, has the "
          "TPM quote all PCRs with qualifying data bound to the challenge and to a fresh request key, and "
          "sends the quote, the AK and its certificate and the boot log in a request signed by that key. "
          "The service checks the quote, replays the log against the quoted PCRs, derives claims such as "
          "secureBootEnabled, and runs the TPM policy.")
    rp_data = secrets.token_bytes(12)
    try:
        token = _tpm_attest(ctx, device, device.event_log, rp_data)
    except ClientError as exc:
        raise StepFailed(f"the service refused the TPM's genuine evidence: {exc}") from None
    expectations = Expectations(
        secure_boot=True,
        claims={"aikValidated": frozenset({True}), "x-ms-attestation-type": frozenset({"tpm"})},
    )
    try:
        verified = ctx.verifier().verify(token, nonce=b64url(rp_data), expectations=expectations)
    except AffidavitError as exc:
        raise StepFailed(f"the relying party rejected the TPM token: {exc}") from None
    n.fact("token", f"{len(token)} bytes")
    n.fact("expectations", "AK certified by a trusted CA, Secure Boot on, nonce = our rp_data")
    n.say("Verdict: TRUSTED. Key claims:")
    for name in ("x-ms-attestation-type", "aikValidated", "secureBootEnabled", "tpmVersion", "x-ms-policy"):
        n.fact(name, json.dumps(verified.claims.get(name)))
    n.outcome(True, "TPM token issued and verified")
    return verified


# -------------------------------------------------------------------------------------------- refusals


def _expect_refusal(call: Callable[[], object], code: str, what: str) -> ServiceRejected:
    try:
        call()
    except ServiceRejected as exc:
        if exc.status != 400 or exc.code != code:
            raise StepFailed(f"{what} was refused, but with {exc} rather than {code}") from None
        return exc
    except ClientError as exc:
        raise StepFailed(f"{what}: the call failed without an answer from the service: {exc}") from None
    raise StepFailed(f"the service issued a token for {what}; it must refuse it")


def refuse_tampered_quote(ctx: DemoContext, evidence: SgxEvidence) -> ServiceRejected:
    """Step 5a: one byte of the enclave's measurement flipped in transit; the quote signature breaks."""
    n = ctx.narrator
    n.step("5", "Refusals: evidence the service or the relying party must not accept")
    n.say("5a. A tampered quote. An attacker flips one bit of the enclave's measurement (MRENCLAVE, "
          "quote byte 112) to pass off other code as the approved build.")
    tampered = bytearray(evidence.quote)
    tampered[48 + 64] ^= 0x01

    def send() -> None:
        with ctx.client() as client:
            client.attest_sgx(bytes(tampered), runtime_data=RuntimeData(evidence.runtime_data, json=True),
                              nonce=evidence.nonce)

    refused = _expect_refusal(send, "InvalidParameter", "a tampered quote")
    n.fact("service answer", f"HTTP {refused.status} {refused.code}")
    n.fact("message", refused.message)
    n.outcome(True, "refused: the quote's signature no longer matches its contents")
    return refused


@dataclass(frozen=True)
class DebugRefusals:
    relying_party: ExpectationFailed  # under a permissive policy: the token says debuggable, the RP refuses
    service: ServiceRejected  # under a policy that requires production enclaves: no token at all


def refuse_debug_enclave(ctx: DemoContext) -> DebugRefusals:
    """Step 5b: a debug build of the same enclave, refused by the relying party, then by policy."""
    n = ctx.narrator
    n.say("5b. A debug enclave: the same code, signer and platform, but launched in debug mode, where the "
          "host can read its memory, so its secrets are not secret.")
    debug = SimulatedSource(dataclasses.replace(ctx.enclave.enclave, debug=True))
    runtime = json.dumps({"jwk": enclave_jwk(ec.generate_private_key(ec.SECP256R1()))}).encode()
    quote = debug.get_quote(report_data_for(runtime))

    def send() -> str:
        with ctx.client() as client:
            return client.attest_sgx(quote, runtime_data=RuntimeData(runtime, json=True)).token

    ctx.service.reset_policy("SgxEnclave")  # MAA's default SGX policy, whatever ran before
    try:
        token = send()
    except ClientError as exc:
        raise StepFailed(f"the default SGX policy should permit a verified debug enclave: {exc}") from None
    try:
        ctx.verifier().verify(token, expectations=ctx.sgx_expectations())
    except ExpectationFailed as exc:
        rp_refusal = exc
    except AffidavitError as exc:
        raise StepFailed(f"the debug enclave's token failed for another reason: {exc}") from None
    else:
        raise StepFailed("the relying party accepted a debug enclave")
    if rp_refusal.claim != "x-ms-sgx-is-debuggable":
        raise StepFailed(f"the relying party refused on {rp_refusal.claim}, not on debuggability")
    n.say("(i) Under MAA's default SGX policy, which permits every genuine enclave, the service issues a "
          "token that says x-ms-sgx-is-debuggable: true. The relying party's expectations refuse it:")
    n.fact("relying party", rp_refusal.code)
    n.fact("message", rp_refusal.message)

    ctx.service.put_policy("SgxEnclave", SGX_NO_DEBUG_POLICY)
    n.say("(ii) Better to refuse at the source: the operator sets an SGX policy that permits only enclaves "
          "with x-ms-sgx-is-debuggable == false (PUT /policies/SgxEnclave). Now the service issues no "
          "token at all:")
    refused = _expect_refusal(send, "PolicyEvaluationError", "a debug enclave under the no-debug policy")
    n.fact("service answer", f"HTTP {refused.status} {refused.code}")
    n.fact("message", refused.message)
    n.outcome(True, "refused twice: by the relying party's expectations, then by the service's policy")
    return DebugRefusals(rp_refusal, refused)


def altered_boot_log(log: bytes) -> bytes:
    """The log with one byte of the PCR 7 SecureBoot variable's data changed; its digests untouched."""
    from affidavit.evidence.tpm import parse_event_log

    event = next(e for e in parse_event_log(log).events
                 if e.pcr == 7 and "SecureBoot".encode("utf-16-le") in e.data)
    at = log.index(event.data, event.offset) + len(event.data) - 1
    forged = bytearray(log)
    forged[at] ^= 0x01
    return bytes(forged)


def refuse_altered_boot_log(ctx: DemoContext, device: TpmDevice) -> ServiceRejected:
    """Step 5c: the boot log with one event's data altered (its digests untouched, so PCRs still replay)."""
    n = ctx.narrator
    n.say("5c. An altered TPM boot log. The attacker edits the data of the event recording the SecureBoot "
          "variable (one byte) but keeps its digests, so replaying the log still yields the quoted PCRs.")
    forged = altered_boot_log(device.event_log)
    refused = _expect_refusal(lambda: _tpm_attest(ctx, device, forged, secrets.token_bytes(12)),
                              "InvalidParameter", "an altered boot log")
    n.fact("service answer", f"HTTP {refused.status} {refused.code}")
    n.fact("message", refused.message)
    n.outcome(True, "refused: the event's data no longer matches the digest that was measured")
    return refused


# ------------------------------------------------------------------------------------------------ tour


@dataclass
class StepResult:
    number: str
    title: str
    ok: bool
    detail: str = ""


def run_tour(ctx: DemoContext) -> list[StepResult]:
    """Every step in order; a failed step is reported and the steps that need its result are skipped."""
    results: list[StepResult] = []
    got: dict[str, Any] = {}

    def run(number: str, title: str, needs: tuple[str, ...], call: Callable[..., Any]) -> None:
        missing = [k for k in needs if k not in got]
        if missing:
            results.append(StepResult(number, title, False, f"skipped: needs step {missing[0]}"))
            return
        try:
            got[number] = call(*(got[k] for k in needs))
            results.append(StepResult(number, title, True))
        except (StepFailed, AffidavitError) as exc:
            ctx.narrator.outcome(False, exc.message)
            results.append(StepResult(number, title, False, exc.message))
        except (httpx.HTTPError, OSError) as exc:
            ctx.narrator.outcome(False, f"{type(exc).__name__}: {exc}")
            results.append(StepResult(number, title, False, str(exc)))

    run("1", "client collects SGX evidence", (), lambda: collect_sgx_evidence(ctx))
    run("2", "client receives a token", ("1",), lambda e: attest_sgx(ctx, e))
    run("3", "relying party verifies it", ("1", "2"), lambda e, t: verify_sgx_token(ctx, e, t))
    run("4a", "swtpm boots a real log", (), lambda: boot_tpm(ctx))
    run("4b", "TPM token issued and verified", ("4a",), lambda d: attest_tpm(ctx, d))
    run("5a", "tampered quote refused", ("1",), lambda e: refuse_tampered_quote(ctx, e))
    run("5b", "debug enclave refused", (), lambda: refuse_debug_enclave(ctx))
    run("5c", "altered boot log refused", ("4a",), lambda d: refuse_altered_boot_log(ctx, d))
    return results


def _raise_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.tour", description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=Path, help="the shared test vectors (default: AFFIDAVIT_VECTORS, "
                        "else ../shared/vectors beside the repository)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (service log, keys)")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)  # so cleanup runs as it does for Ctrl-C
    n = Narrator()
    n.title("Affidavit: the attestation workflow, end to end")
    n.say("Three actors: the attester proves what runs on it; the attestation service (Affidavit) verifies "
          "that evidence and signs a token; the relying party decides whether to trust the attester from "
          "the token alone.", indent=0)
    started = time.monotonic()
    results: list[StepResult] = []
    work = Path(tempfile.mkdtemp(prefix="affidavit-demo-"))
    try:
        vectors = find_vectors(args.vectors)
        with demo_context(work, vectors, n) as ctx:
            results = run_tour(ctx)
            if not all(r.ok for r in results):
                n.step("!", "For diagnosis, the last lines of the service's log:")
                n.verbatim(ctx.service.log_tail())
        n.step("6", "Cleanup")
        n.say("Stopped everything the demo started: the service and swtpm.")
    except StepFailed as exc:
        n.outcome(False, exc.message)
        results.append(StepResult("0", "setup", False, exc.message))
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C; SIGTERM/SIGHUP via _raise_on_signal
        print("\ninterrupted: stopped the service and swtpm", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else int(exc.code or 1)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if not r.ok]
    n.step("7", f"Summary: {len(results) - len(failed)}/{len(results)} steps gave the expected outcome "
           f"in {time.monotonic() - started:.1f} s")
    for r in results:
        n.fact(f"{r.number} {'ok' if r.ok else 'FAILED'}", r.title + (f"  ({r.detail})" if r.detail else ""),
               indent=3)
    return 0 if results and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
