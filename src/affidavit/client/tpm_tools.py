"""TPM access through tpm2-tools (subprocess): AK provisioning, PCR banks, quotes.

tpm2-tools is what Debian ships and needs no C build (tpm2-pytss does). Every tool runs with
``TPM2TOOLS_TCTI`` set to the TCTI string given (``device:/dev/tpmrm0``, ``swtpm:host=...,port=...``).
Transient objects are flushed after each step: a TPM has few object slots (swtpm: 3, tpm.md §5).

The AK is a restricted RSA-2048 signing key (RSASSA-SHA256) created by ``tpm2_createak`` under the RSA EK
and persisted at a handle, so later runs reuse it and a certificate issued for it stays valid.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from affidavit.client import ClientError
from affidavit.client.tpm import Quote

DEFAULT_AK_HANDLE = 0x81000100
TOOL_TIMEOUT = 60.0
# tpm2-tools bank names -> TPM_ALG_ID, digest size.
BANKS = {"sha1": (0x0004, 20), "sha256": (0x000B, 32), "sha384": (0x000C, 48), "sha512": (0x000D, 64)}
_BANK_LINE = re.compile(r"^\s*-\s*(\w+):\s*\[([^\]]*)\]", re.MULTILINE)


class TpmToolError(ClientError):
    code = "tpm_error"


def parse_pcr_list(text: str) -> tuple[int, ...]:
    """``"0-7,14"`` -> (0, 1, ..., 7, 14)."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.update(range(lo, hi + 1))
            elif part:
                out.add(int(part))
    except ValueError:
        raise ClientError(f"bad PCR list {text!r} (expected e.g. 0-7,14)", code="bad_argument") from None
    if not out or min(out) < 0 or max(out) > 23:
        raise ClientError(f"PCR list {text!r} must name PCRs between 0 and 23", code="bad_argument")
    return tuple(sorted(out))


def parse_handle(text: str) -> int:
    """A persistent handle (0x81000000-0x81FFFFFF) from hex or decimal text."""
    try:
        handle = int(text, 0)
    except ValueError:
        raise ClientError(f"bad handle {text!r} (expected e.g. 0x81000100)", code="bad_argument") from None
    if not 0x81000000 <= handle <= 0x81FFFFFF:
        raise ClientError(f"handle {text} is not a persistent handle (0x81000000-0x81FFFFFF)",
                          code="bad_argument")
    return handle


def parse_active_banks(getcap_output: str) -> tuple[str, ...]:
    """Banks with at least one PCR allocated, in the order ``tpm2_getcap pcrs`` lists them."""
    return tuple(name for name, pcrs in _BANK_LINE.findall(getcap_output)
                 if name in BANKS and pcrs.strip())


def split_pcr_values(raw: bytes, banks: tuple[str, ...], indexes: tuple[int, ...],
                     ) -> tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]:
    """``tpm2_quote -F values`` output: digests bank by bank, PCR index ascending within a bank."""
    expected = sum(BANKS[b][1] for b in banks) * len(indexes)
    if len(raw) != expected:
        raise TpmToolError(f"tpm2_quote wrote {len(raw)} bytes of PCR values, expected {expected}")
    out = []
    pos = 0
    for bank in banks:
        alg, size = BANKS[bank]
        values = []
        for index in indexes:
            values.append((index, raw[pos : pos + size]))
            pos += size
        out.append((alg, tuple(values)))
    return tuple(out)


class TpmTools:
    """One TPM reached through one TCTI."""

    def __init__(self, tcti: str) -> None:
        self.tcti = tcti

    def run(self, *args: str) -> str:
        env = {**os.environ, "TPM2TOOLS_TCTI": self.tcti}
        try:
            proc = subprocess.run(args, env=env, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
        except FileNotFoundError:
            raise TpmToolError(f"{args[0]} not found: install tpm2-tools") from None
        except subprocess.TimeoutExpired:
            raise TpmToolError(f"{args[0]} did not finish within {TOOL_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "")
            raise TpmToolError(f"{args[0]} failed (TCTI {self.tcti}): {detail}")
        return proc.stdout.decode("utf-8", "replace")

    def active_banks(self) -> tuple[str, ...]:
        banks = parse_active_banks(self.run("tpm2_getcap", "pcrs"))
        if not banks:
            raise TpmToolError("the TPM reports no active PCR bank that Affidavit knows")
        return banks

    def persistent_handles(self) -> set[int]:
        out = self.run("tpm2_getcap", "handles-persistent")
        return {int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", out)}

    def read_public(self, handle: int) -> bytes:
        """TPM2B_PUBLIC of a loaded or persistent object."""
        with tempfile.TemporaryDirectory(prefix="affidavit-tpm-") as tmp:
            path = Path(tmp) / "pub"
            self.run("tpm2_readpublic", "-c", f"{handle:#x}", "-o", str(path))
            return path.read_bytes()

    def read_public_pem(self, handle: int) -> bytes:
        with tempfile.TemporaryDirectory(prefix="affidavit-tpm-") as tmp:
            path = Path(tmp) / "pub.pem"
            self.run("tpm2_readpublic", "-c", f"{handle:#x}", "-f", "pem", "-o", str(path))
            return path.read_bytes()

    def ensure_ak(self, handle: int = DEFAULT_AK_HANDLE) -> bytes:
        """The AK at ``handle`` (TPM2B_PUBLIC), created under the EK and persisted there if absent."""
        if handle in self.persistent_handles():
            return self.read_public(handle)
        with tempfile.TemporaryDirectory(prefix="affidavit-tpm-") as tmp:
            ek, ak = str(Path(tmp) / "ek.ctx"), str(Path(tmp) / "ak.ctx")
            try:
                self.run("tpm2_createek", "-c", ek, "-G", "rsa", "-u", str(Path(tmp) / "ek.pub"))
                self.run("tpm2_flushcontext", "-t")
                self.run("tpm2_createak", "-C", ek, "-c", ak, "-G", "rsa", "-g", "sha256", "-s", "rsassa",
                         "-u", str(Path(tmp) / "ak.pub"), "-n", str(Path(tmp) / "ak.name"))
                self.run("tpm2_flushcontext", "-t")
                self.run("tpm2_evictcontrol", "-C", "o", "-c", ak, f"{handle:#x}")
            finally:
                self.run("tpm2_flushcontext", "-t")
        return self.read_public(handle)

    def signing_scheme(self, handle: int) -> tuple[str, str]:
        """``tpm2_quote``'s ``--scheme`` and ``-g`` for the AK: its fixed scheme, else RSASSA/ECDSA-SHA256.

        An AK with a fixed scheme refuses any other (TPM_RC_SCHEME), so an AK provisioned elsewhere
        (RSAPSS, ECDSA) must be quoted with its own.
        """
        from affidavit.evidence import EvidenceError
        from affidavit.evidence.tpm import parse_public

        try:
            public = parse_public(self.read_public(handle))
        except EvidenceError as exc:
            raise TpmToolError(f"the key at {handle:#x} is not a usable AK: {exc.message}") from None
        schemes = {0x0014: "rsassa", 0x0016: "rsapss", 0x0018: "ecdsa"}
        hash_names = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
        if public.scheme in schemes and public.scheme_hash in hash_names:
            return schemes[public.scheme], hash_names[public.scheme_hash]
        return ("ecdsa" if public.type == 0x0023 else "rsassa"), "sha256"

    def quote(self, handle: int, indexes: tuple[int, ...], qualifying_data: bytes,
              banks: tuple[str, ...] | None = None) -> Quote:
        """Quote ``indexes`` on every active bank (or ``banks``) with the AK at ``handle``."""
        if len(qualifying_data) > 64:
            raise ClientError("qualifying data longer than 64 bytes", code="bad_argument")
        banks = banks or self.active_banks()
        scheme, hash_name = self.signing_scheme(handle)
        selection = "+".join(f"{b}:{','.join(str(i) for i in indexes)}" for b in banks)
        with tempfile.TemporaryDirectory(prefix="affidavit-tpm-") as tmp:
            msg, sig, pcrs = (str(Path(tmp) / n) for n in ("quote.msg", "quote.sig", "quote.pcrs"))
            self.run("tpm2_quote", "-c", f"{handle:#x}", "-l", selection, "-q", qualifying_data.hex(),
                     "-g", hash_name, "--scheme", scheme, "-m", msg, "-s", sig, "-o", pcrs, "-F", "values")
            return Quote(Path(msg).read_bytes(), Path(sig).read_bytes(),
                         split_pcr_values(Path(pcrs).read_bytes(), banks, indexes))
