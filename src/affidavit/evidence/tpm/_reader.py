"""A bounded big-endian reader for TPM wire structures: every read is length-checked."""

from __future__ import annotations

from affidavit.evidence.tpm.errors import TpmError, TpmFormatError


class Reader:
    """Cursor over bytes; any out-of-bounds read raises ``error`` (a TpmError subclass)."""

    __slots__ = ("buf", "pos", "what", "error")

    def __init__(self, buf: bytes, what: str, error: type[TpmError] = TpmFormatError) -> None:
        self.buf = bytes(buf)
        self.pos = 0
        self.what = what
        self.error = error

    def fail(self, message: str) -> TpmError:
        return self.error(f"{self.what}: {message} (at offset {self.pos})")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise self.fail(f"truncated: need {n} bytes, {len(self.buf) - self.pos} left")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def tpm2b(self, max_size: int | None = None) -> bytes:
        size = self.u16()
        if max_size is not None and size > max_size:
            raise self.fail(f"TPM2B size {size} exceeds {max_size}")
        return self.take(size)

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise self.fail(f"{len(self.buf) - self.pos} unexpected trailing bytes")
