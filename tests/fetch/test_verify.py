"""verify_checksums: compare with the known digests, hash each version of a file only once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from perl_pipeline.fetch import verify
from perl_pipeline.fetch.verify import record_path, remember_digests, verify_checksums

DATA = bytes(range(256)) * 64


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every file that is actually hashed."""
    seen: list[Path] = []
    real = verify.file_digests

    def spy(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
        seen.append(path)
        return real(path, algorithms)

    monkeypatch.setattr(verify, "file_digests", spy)
    return seen


def test_match_is_recorded_and_not_hashed_again(tmp_path: Path, hashed: list[Path]) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    first = verify_checksums(archive, md5=md5.upper())
    assert first.ok and not first.cached and first.problem() == ""
    record = json.loads(record_path(archive).read_text())
    assert record["md5"] == md5 and record["size"] == len(DATA)
    second = verify_checksums(archive, md5=md5)
    assert second.ok and second.cached
    assert hashed == [archive]


def test_mismatch_names_expected_and_actual(tmp_path: Path, hashed: list[Path]) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(DATA)
    check = verify_checksums(archive, sha256="0" * 64)
    assert not check.ok
    assert check.problem() == f"expected sha256 {'0' * 64}, got {hashlib.sha256(DATA).hexdigest()}"
    assert not verify_checksums(archive, sha256="0" * 64).ok and len(hashed) == 1  # recorded


def test_a_changed_file_is_hashed_again(tmp_path: Path, hashed: list[Path]) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    assert verify_checksums(archive, md5=md5).ok
    archive.write_bytes(DATA[:-1] + b"\x00")
    os.utime(archive, ns=(1, 1))
    assert not verify_checksums(archive, md5=md5).ok
    assert len(hashed) == 2


def test_a_record_lacking_the_algorithm_hashes_and_keeps_both(tmp_path: Path, hashed: list[Path]) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(DATA)
    remember_digests(archive, {"md5": hashlib.md5(DATA).hexdigest()})
    assert verify_checksums(archive, sha256=hashlib.sha256(DATA).hexdigest()).ok
    assert set(json.loads(record_path(archive).read_text())) >= {"md5", "sha256"}
    assert verify_checksums(archive, md5=hashlib.md5(DATA).hexdigest()).cached
    assert len(hashed) == 1


def test_unknown_checksum_is_trivially_ok_and_missing_file_fails(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(DATA)
    assert verify_checksums(archive).ok and not record_path(archive).exists()
    with pytest.raises(FileNotFoundError, match="b.tar"):
        verify_checksums(tmp_path / "b.tar", md5="0" * 32)
