"""python -m perl_pipeline.predict: folders and files to a top-k CSV, bad inputs named and kept."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perl_pipeline import predict
from perl_pipeline.models import save_adapter
from tests.models.test_adapter import CLASSES, tiny_adapter


@pytest.fixture
def adapter_file(tmp_path, tiny_clip) -> Path:
    adapter = tiny_adapter(tiny_clip)
    return save_adapter(adapter, tmp_path / "mine.adapter.safetensors")


def photo(path: Path, seed: int, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_folder_to_top_k_csv_with_bad_files_named_and_kept(tmp_path, adapter_file, caplog):
    import matplotlib

    folder = tmp_path / "images"
    good = [photo(folder / "a" / f"{i}.png", i) for i in range(3)] + [photo(folder / "b.jpg", 9)]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # a real photograph
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(good[0].read_bytes()[:60])  # truncated PNG
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)
    out = tmp_path / "predictions.csv"
    status = predict.main(
        [
            str(adapter_file),
            str(folder),
            str(hopper),
            "--out",
            str(out),
            "--top-k",
            "2",
            "--no-progress",
            "--batch-size",
            "2",
        ]
    )
    assert status == 0
    table = {Path(r["path"]).name: r for r in rows(out)}
    assert set(table) == {
        "0.png",
        "1.png",
        "2.png",
        "b.jpg",
        "grace_hopper.jpg",
        "notes.txt",
        "broken.png",
        "loop",
    }
    for name in ("0.png", "b.jpg", "grace_hopper.jpg"):
        row = table[name]
        assert row["error"] == "" and row["step"] == "3"
        assert row["class_1"] in CLASSES and row["class_2"] in CLASSES and row["class_1"] != row["class_2"]
        assert 1.0 >= float(row["prob_1"]) >= float(row["prob_2"]) > 0
    assert "not an image file" in table["notes.txt"]["error"]
    assert "cannot decode" in table["broken.png"]["error"]
    assert "symlink loop" in table["loop"]["error"]
    assert "broken.png" in caplog.text and "symlink loop" in caplog.text
    # an existing output is refused, then replaced when asked
    assert predict.main([str(adapter_file), str(good[0]), "--out", str(out), "--no-progress"]) == 2
    assert "exists; pass --overwrite" in caplog.text and len(rows(out)) == 8
    assert (
        predict.main(
            [
                str(adapter_file),
                str(good[0]),
                "--out",
                str(out),
                "--no-progress",
                "--overwrite",
                "--step",
                "0",
            ]
        )
        == 0
    )
    assert [r["step"] for r in rows(out)] == ["0"]


def test_open_vocabulary_classes_from_a_file_or_a_list(tmp_path, adapter_file, caplog):
    image = photo(tmp_path / "x.png", 1)
    names = tmp_path / "classes.txt"
    names.write_text("# my labels\ncat\n\ndog\nsports car\n")
    out = tmp_path / "p.csv"
    assert (
        predict.main(
            [
                str(adapter_file),
                str(image),
                "--classes",
                str(names),
                "--top-k",
                "9",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    (row,) = rows(out)
    assert {row["class_1"], row["class_2"], row["class_3"]} == {"cat", "dog", "sports car"}
    assert "class_4" not in row  # top-k is capped at the class count
    assert abs(sum(float(row[f"prob_{i}"]) for i in (1, 2, 3)) - 1) < 1e-4
    for classes, message in [("Sports_Car,sports car", "collide"), ("cat", "at least 2")]:
        assert (
            predict.main(
                [str(adapter_file), str(image), "--classes", classes, "--out", str(tmp_path / "q.csv")]
            )
            == 2
        )
        assert message in caplog.text
    assert not (tmp_path / "q.csv").exists()


def test_bad_adapter_step_and_empty_input_are_refused(tmp_path, adapter_file, caplog):
    image = photo(tmp_path / "x.png", 1)
    out = str(tmp_path / "p.csv")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(adapter_file.read_bytes()[:100])
    assert predict.main([str(cut), str(image), "--out", out]) == 2
    assert "truncated or not a safetensors file" in caplog.text
    assert predict.main([str(adapter_file), str(image), "--step", "7", "--out", out]) == 2
    assert "--step 7 is outside 0..3" in caplog.text
    (tmp_path / "empty").mkdir()
    assert predict.main([str(adapter_file), str(tmp_path / "empty"), "--out", out]) == 2
    assert "no image files" in caplog.text


def test_decompression_bomb_is_named(tmp_path, monkeypatch):
    big = photo(tmp_path / "big.png", 0, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="decompression bomb.*MAX_IMAGE_PIXELS=1000"):
        predict.decode(big)
