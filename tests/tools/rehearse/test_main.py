"""``python -m perl_pipeline.rehearse``'s command line: a bad --out stops it before any work."""

from __future__ import annotations

import pytest

import perl_pipeline.tools.rehearse.run as run
from perl_pipeline.tools.rehearse import main


def _no_rehearsal(*args, **kwargs):
    raise AssertionError("the rehearsal started")


@pytest.mark.parametrize("under", [False, True])
def test_an_out_that_is_a_file_is_named_before_any_work(tmp_path, monkeypatch, capsys, under):
    monkeypatch.setattr(run, "rehearse_and_report", _no_rehearsal)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    out = a_file / "rehearsal" if under else a_file
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(out), "--stages", "data"])
    assert exit_.value.code == 2
    assert f"{a_file} is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "mine"
