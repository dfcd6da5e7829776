"""Tests of extract_archive: formats, refusal of unsafe members, corruption, prefix, marker."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from perl_pipeline.fetch.extract import (
    CorruptArchiveError,
    UnsafeArchiveError,
    extract_archive,
)

# (name, kind, payload): kind is "file", "dir", "symlink", "hardlink", "fifo" or "chr";
# payload is the file content or the link target.
Entry = tuple[str, str, bytes | str]

GOOD: list[Entry] = [
    ("dtd/", "dir", b""),
    ("dtd/images/banded/banded_0001.jpg", "file", b"jpeg-1" * 100),
    ("dtd/images/banded/banded_0002.jpg", "file", b"jpeg-2" * 100),
    ("dtd/labels/train1.txt", "file", b"banded/banded_0001.jpg\n"),
]
TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}


def make_tar(path: Path, entries: list[Entry], mode: str = "w:gz") -> Path:
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chr": tarfile.CHRTYPE,
    }
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))  # type: ignore[arg-type]
            else:
                info.linkname = str(payload) if kind in ("symlink", "hardlink") else ""
                tf.addfile(info)
    return path


def make_zip(path: Path, entries: list[Entry]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, payload in entries:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, str(payload))
            elif kind == "dir":
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                zf.writestr(info, b"")
            elif kind == "file":
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, payload)
            else:
                raise ValueError(f"zip cannot hold {kind}")
    return path


def make_archive(folder: Path, fmt: str, entries: list[Entry]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"archive.{fmt}"
    return make_zip(path, entries) if fmt == "zip" else make_tar(path, entries, TAR_MODES[fmt])


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(downloads folder, work folder); extraction goes to work/target."""
    downloads, work = tmp_path / "downloads", tmp_path / "work"
    downloads.mkdir()
    work.mkdir()
    (work / "keep.txt").write_text("untouched")
    return downloads, work


# --------------------------------------------------------------------------- good archives


@pytest.mark.parametrize("fmt", ["zip", *TAR_MODES])
def test_good_archive_extracts(layout: tuple[Path, Path], fmt: str) -> None:
    downloads, work = layout
    archive = make_archive(downloads, fmt, GOOD)
    target = work / "target"

    files = extract_archive(archive, target)

    expected = [target / name for name, kind, _ in GOOD if kind == "file"]
    assert files == expected
    for name, kind, payload in GOOD:
        if kind == "file":
            assert (target / name).read_bytes() == payload
    assert (target / f".extracted-{archive.name}").is_file()
    assert not list(target.glob(".extracting-*"))
    assert {entry.name for entry in work.iterdir()} == {"keep.txt", "target"}


def test_extraction_merges_into_existing_target(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    images = make_archive(downloads / "a", "tar.gz", [("images/a.jpg", "file", b"a")])
    annots = make_archive(
        downloads / "b",
        "zip",
        [("annotations/list.txt", "file", b"l"), ("images/b.jpg", "file", b"b")],
    )
    target = work / "oxford_pets"

    extract_archive(images, target)
    extract_archive(annots, target)

    assert (target / "images" / "a.jpg").read_bytes() == b"a"
    assert (target / "images" / "b.jpg").read_bytes() == b"b"
    assert (target / "annotations" / "list.txt").read_bytes() == b"l"


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_symlink_inside_target_is_kept(layout: tuple[Path, Path], fmt: str) -> None:
    downloads, work = layout
    entries = [*GOOD, ("dtd/latest.txt", "symlink", "labels/train1.txt")]
    target = work / "target"

    extract_archive(make_archive(downloads, fmt, entries), target)

    link = target / "dtd" / "latest.txt"
    assert link.is_symlink() and link.read_bytes() == b"banded/banded_0001.jpg\n"


# --------------------------------------------------------------------------- unsafe archives

# case -> (entries, the member that must be named, words the reason must contain)
Unsafe = tuple[list[Entry], str, str]
UNSAFE_BOTH: dict[str, Unsafe] = {
    "dotdot": (
        [("ok.txt", "file", b"ok"), ("../evil.txt", "file", b"evil")],
        "../evil.txt",
        "'..' component",
    ),
    "nested-dotdot": (
        [("a/b/../../../evil.txt", "file", b"evil")],
        "a/b/../../../evil.txt",
        "'..' component",
    ),
    "absolute": (
        [("ok.txt", "file", b"ok"), ("/tmp/evil.txt", "file", b"evil")],
        "/tmp/evil.txt",
        "absolute path",
    ),
    "drive-letter": ([("C:/evil.txt", "file", b"evil")], "C:/evil.txt", "drive letter"),
    "symlink-outside": (
        [("ok.txt", "file", b"ok"), ("link", "symlink", "../../evil.txt")],
        "link",
        "symlink pointing outside",
    ),
    "symlink-absolute": ([("link", "symlink", "/etc/passwd")], "link", "absolute"),
    "write-through-symlink": (
        [("d", "symlink", "."), ("d/evil.txt", "file", b"evil")],
        "d/evil.txt",
        "under the symlink member 'd'",
    ),
    "symlink-chain": (
        [("a/b/up", "symlink", "../.."), ("esc", "symlink", "a/b/up/evil.txt")],
        "esc",
        "through another symlink",
    ),
}
UNSAFE_TAR_ONLY: dict[str, Unsafe] = {
    "hardlink-outside": ([("h", "hardlink", "../evil.txt")], "h", "hard link pointing outside"),
    "hardlink-absolute": ([("h", "hardlink", "/etc/passwd")], "h", "absolute"),
    "fifo": ([("ok.txt", "file", b"ok"), ("pipe", "fifo", "")], "pipe", "FIFO"),
    "char-device": ([("null", "chr", "")], "null", "device"),
}
UNSAFE_CASES = [(fmt, case) for fmt in ("zip", "tar.gz") for case in UNSAFE_BOTH] + [
    ("tar", case) for case in UNSAFE_TAR_ONLY
]


@pytest.mark.parametrize(("fmt", "case"), UNSAFE_CASES)
def test_unsafe_member_is_refused_before_writing(layout: tuple[Path, Path], fmt: str, case: str) -> None:
    downloads, work = layout
    entries, bad_member, reason = {**UNSAFE_BOTH, **UNSAFE_TAR_ONLY}[case]
    archive = make_archive(downloads, fmt, entries)
    target = work / "target"
    before_work, before_downloads = snapshot(work), snapshot(downloads)

    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, target)

    message = str(info.value)
    assert str(archive) in message and f"member {bad_member!r}" in message
    assert reason in message
    assert snapshot(work) == before_work  # target was not even created
    assert snapshot(downloads) == before_downloads
    assert not list(work.parent.rglob("evil.txt"))


# --------------------------------------------------------------------------- corrupt archives


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar.bz2", "tar.xz"])
def test_truncated_archive_is_reported(layout: tuple[Path, Path], fmt: str) -> None:
    downloads, work = layout
    big = [(f"f{i}.bin", "file", bytes(range(256)) * 64 * (i + 1)) for i in range(4)]
    archive = make_archive(downloads, fmt, big)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    target = work / "target"

    with pytest.raises(CorruptArchiveError) as info:
        extract_archive(archive, target)

    assert str(archive) in str(info.value) and "download it again" in str(info.value)
    assert not target.exists()


def test_truncation_found_mid_extraction_leaves_no_marker(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    files = [(f"f{i}.bin", "file", bytes([i]) * 20_000) for i in range(3)]
    archive = make_archive(downloads, "tar", files)  # plain tar: listing succeeds
    archive.write_bytes(archive.read_bytes()[:50_000])  # cut inside the last file's data
    target = work / "target"
    target.mkdir()
    (target / "existing.txt").write_text("mine")

    with pytest.raises(CorruptArchiveError):
        extract_archive(archive, target)

    assert snapshot(target) == {"existing.txt"}  # nothing half-extracted, no marker


def test_not_an_archive(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    junk = downloads / "notes.txt"
    junk.write_text("hello")

    with pytest.raises(ValueError, match="not a zip or tar archive"):
        extract_archive(junk, work / "target")


# --------------------------------------------------------------------------- members_prefix


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_members_prefix_keeps_only_that_subtree(layout: tuple[Path, Path], fmt: str) -> None:
    downloads, work = layout
    entries: list[Entry] = [
        ("fgvc-aircraft-2013b/README.html", "file", b"readme"),
        ("fgvc-aircraft-2013b/data/variants.txt", "file", b"707-320\n"),
        ("fgvc-aircraft-2013b/data/images/0034309.jpg", "file", b"jpg"),
        ("fgvc-aircraft-2013b/evaluation.m", "file", b"%"),
    ]
    archive = make_archive(downloads, fmt, entries)
    target = work / "fgvc"

    files = extract_archive(archive, target, members_prefix="fgvc-aircraft-2013b/data/")

    assert files == [
        target / "fgvc-aircraft-2013b/data/variants.txt",
        target / "fgvc-aircraft-2013b/data/images/0034309.jpg",
    ]
    assert snapshot(target) - {f".extracted-{archive.name}"} == {
        "fgvc-aircraft-2013b",
        "fgvc-aircraft-2013b/data",
        "fgvc-aircraft-2013b/data/images",
        "fgvc-aircraft-2013b/data/variants.txt",
        "fgvc-aircraft-2013b/data/images/0034309.jpg",
    }


def test_members_prefix_without_match_is_an_error(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    archive = make_archive(downloads, "tar.gz", GOOD)

    with pytest.raises(ValueError, match="members_prefix"):
        extract_archive(archive, work / "target", members_prefix="nope/")
    assert not (work / "target").exists()


# --------------------------------------------------------------------------- marker


def test_marker_makes_second_call_a_no_op(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    archive = make_archive(downloads, "tar.gz", GOOD)
    target = work / "target"
    first = extract_archive(archive, target)
    first[0].unlink()  # a second extraction would bring it back

    assert extract_archive(archive, target) == first
    assert not first[0].exists()

    archive.unlink()  # the archive may be deleted to save space
    assert extract_archive(archive, target) == first


def test_marker_for_other_prefix_or_changed_archive_re_extracts(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    archive = make_archive(downloads, "zip", GOOD)
    target = work / "target"
    extract_archive(archive, target, members_prefix="dtd/labels")

    files = extract_archive(archive, target)
    assert len(files) == 3

    make_archive(downloads, "zip", [*GOOD, ("dtd/new.txt", "file", b"new")])
    assert target / "dtd/new.txt" in extract_archive(archive, target)


def test_interrupted_extraction_is_redone(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    archive = make_archive(downloads, "tar.gz", GOOD)
    target = work / "target"
    stale = target / f".extracting-{archive.name}-crashed"
    (stale / "dtd").mkdir(parents=True)
    (target / "dtd" / "images").mkdir(parents=True)  # half-moved content, no marker

    files = extract_archive(archive, target)

    assert all(path.is_file() for path in files)
    assert not stale.exists()
    assert (target / f".extracted-{archive.name}").is_file()


def test_missing_archive(layout: tuple[Path, Path]) -> None:
    downloads, work = layout
    with pytest.raises(FileNotFoundError, match="download it first"):
        extract_archive(downloads / "absent.tar.gz", work / "target")


# --------------------------------------------------------------------------- size limits


def test_a_decompression_bomb_is_refused_from_its_headers(layout: tuple[Path, Path]) -> None:
    from perl_pipeline.fetch.extract import ArchiveTooLargeError

    downloads, work = layout
    bomb = downloads / "user-archive.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dtd/zeros.bin", bytes(110 * 2**20))  # 110 MiB of zeros: about 110 KB packed
    assert bomb.stat().st_size < 2**20
    before = snapshot(work)
    with pytest.raises(ArchiveTooLargeError, match="times its size, over the limit of 100 times") as error:
        extract_archive(bomb, work / "target")
    assert "data_source.max_compression_ratio" in str(error.value)
    assert snapshot(work) == before  # nothing written, no staging left


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_the_total_size_limit_is_a_setting(layout: tuple[Path, Path], fmt: str) -> None:
    from perl_pipeline.fetch.extract import ArchiveTooLargeError, ExtractLimits, extraction_limits

    downloads, work = layout
    archive = make_archive(downloads, fmt, GOOD)
    limits = ExtractLimits.from_settings(max_extracted_gb=1e-6, max_compression_ratio=100)  # 1000 bytes
    with extraction_limits(limits), pytest.raises(ArchiveTooLargeError, match="over the limit of 1.0 KB"):
        extract_archive(archive, work / "target")
    assert not (work / "target").exists()
    assert len(extract_archive(archive, work / "target")) == 3  # the default limits let it through
