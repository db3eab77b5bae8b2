"""Evidence sources against directories that speak the kernel's and Gramine's file protocols."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from affidavit.client import ClientError
from affidavit.client.sources import ConfigfsTsmSource, FileSource, GramineSource, report_data_for


def test_report_data_binds_runtime_data() -> None:
    assert report_data_for(b"key") == hashlib.sha256(b"key").digest() + bytes(32)
    assert report_data_for(None) == bytes(64)


def test_file_source(tmp_path: Path) -> None:
    (tmp_path / "q.bin").write_bytes(b"QUOTE")
    assert FileSource(tmp_path / "q.bin").get_quote(bytes(64)) == b"QUOTE"
    with pytest.raises(ClientError) as info:
        FileSource(tmp_path / "missing.bin").get_quote(bytes(64))
    assert info.value.code == "source_failed"
    with pytest.raises(ClientError) as info:
        FileSource(tmp_path / "q.bin").get_quote(b"short")
    assert info.value.code == "bad_report_data"


class _FakeGramine:
    """Stands in for Gramine's /dev/attestation: the quote file reflects the last user_report_data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "attestation_type").write_text("dcap\n")

    def serve_once(self) -> None:
        data = (self.root / "user_report_data").read_bytes()
        (self.root / "quote").write_bytes(b"Q:" + data)


def test_gramine_source_writes_report_data_and_reads_quote(tmp_path: Path) -> None:
    fake = _FakeGramine(tmp_path)
    rd = report_data_for(b"pubkey")
    (tmp_path / "user_report_data").write_bytes(b"")
    (tmp_path / "quote").write_bytes(b"stale")

    class Source(GramineSource):
        def get_quote(self, report_data: bytes) -> bytes:
            (Path(self.root) / "user_report_data").write_bytes(report_data)
            fake.serve_once()  # what Gramine does between the write and the read
            return super().get_quote(report_data)

    assert Source(tmp_path).get_quote(rd) == b"Q:" + rd
    (tmp_path / "attestation_type").write_text("epid\n")
    with pytest.raises(ClientError) as info:
        GramineSource(tmp_path).get_quote(rd)
    assert info.value.code == "source_unsupported"


class _FakeTsm(threading.Thread):
    """Stands in for the kernel's configfs-tsm: for each new report entry, answers inblob with outblob."""

    def __init__(self, root: Path, *, bump_generation: bool = False) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.bump = bump_generation
        self.stop = threading.Event()

    def run(self) -> None:
        seen: set[str] = set()
        while not self.stop.is_set():
            for entry in self.root.iterdir():
                inblob = entry / "inblob"
                if entry.name in seen or not inblob.exists() or len(inblob.read_bytes()) != 64:
                    continue
                seen.add(entry.name)
                (entry / "provider").write_text("tdx_guest\n")
                (entry / "generation").write_text("1\n")
                # Publish outblob atomically: the reader must never see a half-written file.
                (entry / ".outblob").write_bytes(b"TDX:" + inblob.read_bytes())
                (entry / ".outblob").rename(entry / "outblob")
            time.sleep(0.005)


def test_configfs_tsm_source_round_trip(tmp_path: Path) -> None:
    kernel = _FakeTsm(tmp_path)
    rd = report_data_for(b"td-key")

    class Source(ConfigfsTsmSource):
        def get_quote(self, report_data: bytes) -> bytes:
            return super().get_quote(report_data)

    kernel.start()
    try:
        # The real kernel fills outblob synchronously on read; the stand-in needs a moment.
        import affidavit.client.sources as sources

        original = sources._read_generation

        def wait_then_read(entry: Path) -> str | None:
            deadline = time.time() + 5
            while not (entry / "outblob").exists() and time.time() < deadline:
                time.sleep(0.005)
            return original(entry)

        sources._read_generation = wait_then_read
        try:
            assert Source(tmp_path).get_quote(rd) == b"TDX:" + rd
        finally:
            sources._read_generation = original
    finally:
        kernel.stop.set()
        kernel.join()


def test_configfs_tsm_detects_a_concurrent_writer(tmp_path: Path) -> None:
    import affidavit.client.sources as sources

    calls = iter(["1", "2"])
    original = sources._read_generation

    def racing(entry: Path) -> str | None:
        (entry / "outblob").write_bytes(b"someone else's")
        return next(calls)

    sources._read_generation = racing
    try:
        with pytest.raises(ClientError) as info:
            ConfigfsTsmSource(tmp_path).get_quote(bytes(64))
        assert info.value.code == "source_race"
    finally:
        sources._read_generation = original


def test_configfs_tsm_missing_interface(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as info:
        ConfigfsTsmSource(tmp_path / "absent").get_quote(bytes(64))
    assert info.value.code == "source_failed"
