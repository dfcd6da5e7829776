"""fetch_benchmark / build_index: refuse early with a clear message, use user-supplied archives,
download through mirrors, and arrange archives into the CoOp layout (all offline)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.io

from perl_pipeline.benchmarks import prepare
from perl_pipeline.benchmarks.prepare import (
    DatasetUnavailableError,
    build_index,
    fetch_benchmark,
)
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.benchmarks.validate import validate_index
from perl_pipeline.fetch.download import DownloadError
from perl_pipeline.toy.miniature import write_miniature

Entries = dict[str, "Path | bytes"]


def make_tar(archive: Path, entries: Entries) -> Path:
    """A tar (gzip for .tar.gz/.tgz) holding folders/files/bytes under the given names."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tar:
        for name, source in entries.items():
            if isinstance(source, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                tar.add(source, arcname=name)
    return archive


def make_zip(archive: Path, entries: Entries) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, source in entries.items():
            if isinstance(source, bytes):
                zf.writestr(name, source)
            elif source.is_dir():
                for path in sorted(p for p in source.rglob("*") if p.is_file()):
                    zf.write(path, f"{name}/{path.relative_to(source).as_posix()}")
            else:
                zf.write(source, name)
    return archive


def same_index(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.sort("split", "path").equals(b.sort("split", "path"))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Record (and forbid) downloads; record extractions (which still run)."""
    seen: dict[str, list] = {"download": [], "extract": []}
    real_extract = prepare.extract_archive

    def refuse(*args: object, **kwargs: object) -> str:
        seen["download"].append(args)
        raise AssertionError(f"unexpected download {args}")

    def extract(*args: object, **kwargs: object) -> list[Path]:
        seen["extract"].append(args)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(prepare, "download_file", refuse)
    monkeypatch.setattr(prepare, "download_gdrive", refuse)
    monkeypatch.setattr(prepare, "extract_archive", extract)
    return seen


@pytest.fixture
def staged(tmp_path: Path, benchmark_specs: dict):
    """Write a miniature into tmp/staging and return (miniature spec, its index, staging root)."""

    def make(name: str, **kwargs: object) -> tuple[BenchmarkSpec, pl.DataFrame, Path]:
        staging = tmp_path / "staging"
        spec = write_miniature(benchmark_specs[name], staging, **kwargs)
        # the archives these tests write are not the official ones: no known checksum applies
        sources = tuple(dataclasses.replace(s, md5=None, sha256=None) for s in spec.sources)
        spec = dataclasses.replace(spec, sources=sources)
        return spec, build_index(spec, staging), staging / spec.folder

    return make


# ---- refusing early ---------------------------------------------------------------------------


def test_no_public_route_raises_before_any_work(tmp_path: Path, benchmark_specs: dict, calls: dict) -> None:
    spec = benchmark_specs["stanford_cars"]
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_benchmark(spec, tmp_path, download=True)
    message = str(err.value)
    folder = tmp_path / "stanford_cars"
    for text in (
        "[stanford_cars]",
        "nothing was downloaded or extracted",
        f"cars_train.tgz (archive; no public download route): put it at {folder / 'cars_train.tgz'}",
        str(folder / "cars_train"),
        "cars_test.tgz",
        "github.com/cyizhuo/Stanford-Cars-dataset",
    ):
        assert text in message
    assert "car_devkit" not in message.split("How to get it")[0]  # optional: never blocks
    assert err.value.benchmark == "stanford_cars" and len(err.value.missing) == 2
    assert calls == {"download": [], "extract": []}  # not even the downloadable split file
    assert not folder.exists()


def test_offline_lists_every_route(tmp_path: Path, benchmark_specs: dict, calls: dict) -> None:
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_benchmark(benchmark_specs["dtd"], tmp_path, download=False)
    message = str(err.value)
    for text in (
        "[dtd]",
        "(download=False)",
        "split_zhou_DescribableTextures.json (file; downloads are disabled",
        "https://drive.google.com/uc?id=1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
        "dtd-r1.0.1.tar.gz",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        str(tmp_path / "dtd" / "images"),
    ):
        assert text in message
    assert calls == {"download": [], "extract": []}


def test_build_index_on_missing_data_points_to_fetch(tmp_path: Path, benchmark_specs: dict) -> None:
    with pytest.raises(
        DatasetUnavailableError,
        match=r"\[sun397\] is not prepared.*"
        r"split_zhou_SUN397.json is missing.*"
        r"kedro run --pipelines data_preparation --namespaces sun397",
    ):
        build_index(benchmark_specs["sun397"], tmp_path)


# ---- user-supplied archives and folders --------------------------------------------------------


def test_user_archive_is_unpacked_and_hoisted(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("dtd")
    folder = tmp_path / "data" / "dtd"
    make_tar(
        folder / "dtd-r1.0.1.tar.gz",
        {"dtd/images": source / "images", "dtd/labels/labels_joint_anno.txt": b"x\n"},
    )
    shutil.copy(source / spec.split_file, folder)
    fetch_benchmark(spec, tmp_path / "data", download=False)
    assert same_index(build_index(spec, tmp_path / "data"), expected)
    assert (folder / "labels").is_dir() and not (folder / "dtd").exists()
    assert (folder / "dtd-r1.0.1.tar.gz").is_file()  # kept unless remove_archives
    assert len(calls["extract"]) == 1 and calls["download"] == []
    fetch_benchmark(spec, tmp_path / "data", download=False)  # prepared: nothing happens
    assert len(calls["extract"]) == 1


def test_deleted_tree_is_rebuilt_from_the_kept_archive(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("oxford_pets")
    folder = tmp_path / "oxford_pets"
    make_tar(folder / "images.tar.gz", {"images": source / "images"})
    shutil.copy(source / spec.split_file, folder)
    fetch_benchmark(spec, tmp_path, download=False)
    shutil.rmtree(folder / "images")  # the extraction marker outlives it
    fetch_benchmark(spec, tmp_path, download=False)
    assert same_index(build_index(spec, tmp_path), expected)
    assert len(calls["extract"]) == 2


def test_torchvision_style_nested_folder_needs_no_archive(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("dtd")
    folder = tmp_path / "dtd"
    shutil.copytree(source / "images", folder / "dtd" / "images")
    shutil.copy(source / spec.split_file, folder)
    fetch_benchmark(spec, tmp_path, download=False)
    assert same_index(build_index(spec, tmp_path), expected)
    assert calls == {"download": [], "extract": []}


def test_already_prepared_copy_is_left_alone(tmp_path: Path, miniatures: tuple, calls: dict) -> None:
    root, specs = miniatures
    shutil.copytree(root / "ucf101", tmp_path / "ucf101")
    assert build_index(specs["ucf101"], tmp_path).height > 0  # prepared: the reader finds everything
    fetch_benchmark(specs["ucf101"], tmp_path)
    assert calls == {"download": [], "extract": []}


def test_fgvc_keeps_only_the_data_folder(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("fgvc_aircraft")
    entries: Entries = {
        f"fgvc-aircraft-2013b/data/{p.name}": p
        for p in sorted(source.iterdir())
        if not p.name.startswith(".")
    }
    entries["fgvc-aircraft-2013b/evaluation.m"] = b"% not data\n"
    make_tar(tmp_path / "fgvc_aircraft" / "fgvc-aircraft-2013b.tar.gz", entries)
    fetch_benchmark(spec, tmp_path, download=False)
    folder = tmp_path / "fgvc_aircraft"
    assert (folder / "variants.txt").is_file() and (folder / "images").is_dir()
    assert not (folder / "fgvc-aircraft-2013b").exists()
    assert same_index(build_index(spec, tmp_path), expected)


def test_sketch_folder_is_renamed_to_images(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("imagenet_sketch")
    folder = tmp_path / "imagenet-sketch"
    make_zip(folder / "ImageNet-Sketch.zip", {"sketch": source / "images"})
    shutil.copy(source / "classnames.txt", folder)
    fetch_benchmark(spec, tmp_path, download=False)
    assert not (folder / "sketch").exists()
    assert same_index(build_index(spec, tmp_path), expected)


def test_caltech_zip_in_zip(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, source = staged("caltech101")
    inner = make_tar(
        tmp_path / "inner" / "101_ObjectCategories.tar.gz",
        {"101_ObjectCategories": source / "101_ObjectCategories"},
    )
    folder = tmp_path / "caltech-101"
    make_zip(
        folder / "caltech-101.zip",
        {
            "caltech-101/101_ObjectCategories.tar.gz": inner,
            "caltech-101/Annotations.tar": b"annotations",
        },
    )
    shutil.copy(source / spec.split_file, folder)
    fetch_benchmark(spec, tmp_path, download=False)
    assert not (folder / "caltech-101" / "101_ObjectCategories.tar.gz").exists()
    assert (folder / "101_ObjectCategories" / "BACKGROUND_Google").is_dir()
    assert same_index(build_index(spec, tmp_path), expected)


def test_corrupt_archive_is_reported_with_the_fix(tmp_path: Path, staged, calls: dict) -> None:
    spec, _, source = staged("dtd")
    folder = tmp_path / "dtd"
    folder.mkdir()
    (folder / "dtd-r1.0.1.tar.gz").write_bytes(b"\x1f\x8b this is not really gzip")
    shutil.copy(source / spec.split_file, folder)
    with pytest.raises(
        DatasetUnavailableError,
        match=r"(?s)\[dtd\] cannot extract .*"
        r"dtd-r1.0.1.tar.gz.*Fix: delete",
    ):
        fetch_benchmark(spec, tmp_path, download=False)


def test_archive_with_the_wrong_layout_is_reported(tmp_path: Path, staged, calls: dict) -> None:
    spec, _, source = staged("dtd")
    folder = tmp_path / "dtd"
    make_tar(folder / "dtd-r1.0.1.tar.gz", {"textures/images": source / "images"})
    shutil.copy(source / spec.split_file, folder)
    with pytest.raises(
        DatasetUnavailableError,
        match=r"\[dtd\] after fetching, .* still lacks"
        r".*images is missing",
    ):
        fetch_benchmark(spec, tmp_path, download=False)


# ---- downloads ----------------------------------------------------------------------------------


def test_fetches_through_mirrors_and_google_drive(
    tmp_path: Path, staged, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, expected, source = staged("eurosat")
    zipped = make_zip(tmp_path / "served" / "EuroSAT.zip", {"2750": source / "2750"}).read_bytes()
    urls = (
        http_server.route("/gone", http_server.status(404)),
        http_server.route("/tampered", http_server.file(b"not the zip")),
        http_server.route("/EuroSAT.zip", http_server.file(zipped)),
    )
    sources = tuple(
        dataclasses.replace(s, urls=urls, md5=hashlib.md5(zipped).hexdigest())
        if s.filename == "EuroSAT.zip"
        else s
        for s in spec.sources
    )
    spec = dataclasses.replace(spec, sources=sources)
    drive: list[str] = []

    def fake_gdrive(file_id: str, dest: Path, **kwargs: object) -> str:
        drive.append(file_id)
        shutil.copy(source / spec.split_file, dest)
        return "sha"

    monkeypatch.setattr(prepare, "download_gdrive", fake_gdrive)
    fetch_benchmark(spec, tmp_path / "data", remove_archives=True)
    assert drive == ["1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"]
    assert [len(http_server.requests_to(p)) > 0 for p in ("/gone", "/tampered", "/EuroSAT.zip")] == [
        True,
        True,
        True,
    ]
    assert not (tmp_path / "data" / "eurosat" / "EuroSAT.zip").exists()
    index = build_index(spec, tmp_path / "data")
    assert same_index(index, expected)
    validate_index(index, spec, tmp_path / "data")


def test_every_route_failing_gives_the_manual_route(
    tmp_path: Path, benchmark_specs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_drive(file_id: str, dest: Path, **kwargs: object) -> str:
        raise DownloadError(f"Google Drive quota exceeded for {file_id}")

    monkeypatch.setattr(prepare, "download_gdrive", no_drive)
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_benchmark(benchmark_specs["ucf101"], tmp_path)
    message = str(err.value)
    assert "[ucf101] could not download split_zhou_UCF101.json" in message
    assert "quota exceeded for 1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y" in message
    assert f"put the file at {tmp_path / 'ucf101' / 'split_zhou_UCF101.json'}" in message


# ---- ImageNet: flat validation images ----------------------------------------------------------


def _devkit(path: Path, wnids: list[str], truth: list[int], ids: dict[str, int]) -> Path:
    """A devkit tar.gz with meta.mat (leaf synsets + one parent) and the val ground truth."""
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.zeros((len(wnids) + 1, 1), dtype=dtype)
    for row, wnid in enumerate(wnids):
        synsets[row, 0] = (ids[wnid], wnid, f"words {wnid}", 0)
    synsets[len(wnids), 0] = (1001, "n00001740", "entity", 3)  # not a class: has children
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    truth_text = "".join(f"{t}\n" for t in truth).encode()
    return make_tar(
        path,
        {
            "ILSVRC2012_devkit_t12/data/meta.mat": buffer.getvalue(),
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": truth_text,
        },
    )


def _imagenet_archives(tmp_path: Path, staged) -> tuple[BenchmarkSpec, pl.DataFrame, Path, dict[str, str]]:
    """Official-style ImageNet archives of a miniature: per-class tars inside the train tar, a
    flat val tar, classnames.txt. Returns (spec, expected index, folder, val image -> wnid)."""
    spec, expected, source = staged("imagenet", classes=5, per_class={"train": 2, "test": 3})
    folder = tmp_path / "imagenet"
    inner = {
        f"{d.name}.tar": make_tar(
            tmp_path / "inner" / f"{d.name}.tar", {p.name: p for p in sorted(d.iterdir())}
        )
        for d in sorted((source / "images" / "train").iterdir())
    }
    make_tar(folder / "ILSVRC2012_img_train.tar", inner)
    val = {p.name: p for p in sorted((source / "images" / "val").rglob("*.JPEG"))}
    make_tar(folder / "ILSVRC2012_img_val.tar", val)
    shutil.copy(source / "classnames.txt", folder)
    return spec, expected, folder, {name: p.parent.name for name, p in val.items()}


def test_imagenet_flat_val_is_sorted_with_the_devkit(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, folder, val = _imagenet_archives(tmp_path, staged)
    wnids = sorted(set(val.values()))
    ids = dict(zip(wnids, [3, 1, 5, 2, 4], strict=True))  # devkit ids are not wnid order
    numbers = {int(name[15:23]): wnid for name, wnid in val.items()}
    truth = [ids[numbers[i]] if i in numbers else 1 for i in range(1, max(numbers) + 1)]
    _devkit(folder / "ILSVRC2012_devkit_t12.tar.gz", wnids, truth, ids)
    fetch_benchmark(spec, tmp_path, download=False)
    assert not [
        p
        for p in (folder / "images" / "train").iterdir()
        if p.suffix == ".tar" and not p.name.startswith(".")
    ]  # the hidden extraction marker stays
    assert not list((folder / "images" / "val").glob("*.JPEG"))
    index = build_index(spec, tmp_path)
    assert same_index(index, expected)
    validate_index(index, spec, tmp_path)


def test_imagenet_flat_val_is_sorted_with_a_user_mapping(tmp_path: Path, staged, calls: dict) -> None:
    spec, expected, folder, val = _imagenet_archives(tmp_path, staged)
    lines = ["ImageId,PredictionString"] + [
        f"{Path(name).stem},{wnid} 10 20 100 200 {wnid} 1 2 3 4" for name, wnid in val.items()
    ]
    (folder / "val_wnids.txt").write_text("\n".join(lines) + "\n")  # Kaggle LOC_val_solution
    fetch_benchmark(spec, tmp_path, download=False)
    assert same_index(build_index(spec, tmp_path), expected)


def test_imagenet_without_val_labels_refuses_before_any_work(tmp_path: Path, staged, calls: dict) -> None:
    spec, _, folder, _ = _imagenet_archives(tmp_path, staged)
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_benchmark(spec, tmp_path, download=False)
    message = str(err.value)
    assert "[imagenet]" in message and "nothing was downloaded or extracted" in message
    assert str(folder / "ILSVRC2012_devkit_t12.tar.gz") in message
    assert str(folder / "val_wnids.txt") in message
    assert calls["extract"] == [] and not (folder / "images").exists()


def test_flat_val_on_disk_blocks_build_index(tmp_path: Path, staged) -> None:
    spec, _, source = staged("imagenet", classes=2, per_class={"train": 1, "test": 1})
    for path in list((source / "images" / "val").rglob("*.JPEG")):
        path.rename(source / "images" / "val" / path.name)
    with pytest.raises(DatasetUnavailableError, match="arrange step still to run"):
        build_index(spec, tmp_path / "staging")


# ---- checksums of user-supplied archives --------------------------------------------------------


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every file whose checksum is actually computed."""
    from perl_pipeline.fetch import verify

    seen: list[Path] = []
    real = verify.file_digests

    def spy(path: Path, algorithms: tuple[str, ...] = ("sha256",), **kwargs) -> dict[str, str]:
        seen.append(path)
        return real(path, algorithms, **kwargs)

    monkeypatch.setattr(verify, "file_digests", spy)
    return seen


def _dtd_archive(tmp_path: Path, staged) -> tuple[BenchmarkSpec, pl.DataFrame, Path]:
    spec, expected, source = staged("dtd")
    archive = make_tar(tmp_path / "dtd" / "dtd-r1.0.1.tar.gz", {"dtd/images": source / "images"})
    shutil.copy(source / spec.split_file, tmp_path / "dtd")
    return spec, expected, archive


def _with_md5(spec: BenchmarkSpec, filename: str, md5: str) -> BenchmarkSpec:
    sources = tuple(dataclasses.replace(s, md5=md5) if s.filename == filename else s for s in spec.sources)
    return dataclasses.replace(spec, sources=sources)


def test_supplied_archive_with_the_wrong_checksum_is_refused_before_extraction(
    tmp_path: Path, staged, calls: dict
) -> None:
    spec, _, archive = _dtd_archive(tmp_path, staged)
    spec = _with_md5(spec, archive.name, "fff73e5086ae6bdbea199a49dfb8a4c1")
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(prepare.ChecksumMismatchError) as err:
        fetch_benchmark(spec, tmp_path, download=False)
    message = str(err.value)
    assert str(archive) in message
    assert f"expected md5 fff73e5086ae6bdbea199a49dfb8a4c1, got {actual}" in message
    assert "Replace just that file" in message and "md5sum" in message
    assert 'kedro run --params "data_source.accept_checksum_mismatch=[dtd-r1.0.1.tar.gz]"' in message
    assert calls["extract"] == [] and archive.is_file()  # nothing extracted, nothing deleted
    assert err.value.missing == ("dtd-r1.0.1.tar.gz",)


def test_a_known_different_copy_is_used_on_purpose_with_a_warning(
    tmp_path: Path, staged, calls: dict, caplog: pytest.LogCaptureFixture
) -> None:
    spec, expected, archive = _dtd_archive(tmp_path, staged)
    spec = _with_md5(spec, archive.name, "fff73e5086ae6bdbea199a49dfb8a4c1")
    with caplog.at_level("WARNING", logger="perl_pipeline.benchmarks.prepare"):
        fetch_benchmark(spec, tmp_path, download=False, accept_checksum_mismatch=[archive.name])
    assert any("data_source.accept_checksum_mismatch" in r.getMessage() for r in caplog.records)
    assert same_index(build_index(spec, tmp_path), expected)


def test_a_matching_archive_is_hashed_once(tmp_path: Path, staged, calls: dict, hashed: list) -> None:
    spec, expected, archive = _dtd_archive(tmp_path, staged)
    spec = _with_md5(spec, archive.name, hashlib.md5(archive.read_bytes()).hexdigest())
    fetch_benchmark(spec, tmp_path, download=False)
    shutil.rmtree(tmp_path / "dtd" / "images")  # extracted again from the kept archive
    fetch_benchmark(spec, tmp_path, download=False)
    assert len(calls["extract"]) == 2 and hashed == [archive]
    assert (tmp_path / "dtd" / "dtd-r1.0.1.tar.gz.verified").is_file()
    assert same_index(build_index(spec, tmp_path), expected)


def test_a_downloaded_archive_is_not_hashed_again(
    tmp_path: Path, staged, http_server, monkeypatch: pytest.MonkeyPatch, hashed: list
) -> None:
    spec, expected, source = staged("eurosat")
    zipped = make_zip(tmp_path / "served" / "EuroSAT.zip", {"2750": source / "2750"}).read_bytes()
    url = http_server.route("/EuroSAT.zip", http_server.file(zipped))
    spec = dataclasses.replace(
        spec,
        sources=tuple(
            dataclasses.replace(s, urls=(url,), md5=hashlib.md5(zipped).hexdigest())
            if s.filename == "EuroSAT.zip"
            else s
            for s in spec.sources
        ),
    )
    monkeypatch.setattr(
        prepare, "download_gdrive", lambda file_id, dest, **kw: shutil.copy(source / spec.split_file, dest)
    )
    folder = tmp_path / "eurosat"
    fetch_benchmark(spec, tmp_path)
    shutil.rmtree(folder / "2750")
    fetch_benchmark(spec, tmp_path, download=False)  # the kept archive counts as supplied now
    assert hashed == [] and len(http_server.requests_to("/EuroSAT.zip")) == 1
    assert same_index(build_index(spec, tmp_path), expected)


def test_imagenet_archives_and_devkit_are_checked_against_the_official_md5s(
    tmp_path: Path, staged, benchmark_specs: dict, calls: dict
) -> None:
    spec, _, folder, val = _imagenet_archives(tmp_path, staged)
    spec = dataclasses.replace(spec, sources=benchmark_specs["imagenet"].sources)
    wnids = sorted(set(val.values()))
    _devkit(folder / "ILSVRC2012_devkit_t12.tar.gz", wnids, [1], {w: i + 1 for i, w in enumerate(wnids)})
    with pytest.raises(prepare.ChecksumMismatchError) as err:
        fetch_benchmark(spec, tmp_path, download=False)
    message = str(err.value)
    for name, md5 in (
        ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e"),
        ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622"),
        ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf"),
    ):
        assert f"{folder / name} (" in message and f"expected md5 {md5}" in message
    assert "accept_checksum_mismatch: [ILSVRC2012_img_train.tar, " in message  # several: in conf
    assert calls["extract"] == []


def test_sun397_and_the_devkit_carry_their_md5(benchmark_specs: dict) -> None:
    sun = {s.filename: s for s in benchmark_specs["sun397"].sources}
    assert sun["SUN397.tar.gz"].md5 == "8ca2778205c41d23104230ba66911c7a"
    devkit = {s.filename: s for s in benchmark_specs["imagenet"].sources}["ILSVRC2012_devkit_t12.tar.gz"]
    assert (devkit.md5, devkit.kind, devkit.optional) == ("fa75699e90414af021442c21a62c3abf", "archive", True)


def test_data_root_that_is_a_file_or_unreadable_is_named(
    tmp_path: Path, benchmark_specs: dict, calls: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perl_pipeline.benchmarks.validate import DataRootError

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(DataRootError, match=rf"data_root is {not_a_folder}"):
        fetch_benchmark(benchmark_specs["dtd"], not_a_folder)
    with pytest.raises(DataRootError, match="data_root"):
        build_index(benchmark_specs["dtd"], not_a_folder)

    real_exists = Path.exists
    folder = tmp_path / "root" / "dtd"

    def exists(self: Path, *args: object, **kwargs: object) -> bool:  # dtd/ without permissions
        if str(self).startswith(str(folder) + "/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    folder.mkdir(parents=True)
    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_benchmark(benchmark_specs["dtd"], tmp_path / "root", download=False)
    message = str(err.value)
    assert "permission denied" in message and "chmod -R u+rX" in message
    assert "missing" not in message.lower() and calls == {"download": [], "extract": []}
