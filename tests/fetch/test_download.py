"""Offline tests of download_file against a local 127.0.0.1 server."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from perl_pipeline.fetch import download as download_module
from perl_pipeline.fetch.download import (
    ChecksumError,
    DownloadError,
    download_file,
)

if TYPE_CHECKING:
    from tests.conftest import LocalHTTPServer, RecordedRequest

DATA = bytes(range(256)) * 400  # 100 KiB, not a repeat of one byte
SHA256 = hashlib.sha256(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()
FAST = {"retries": 3, "backoff": 0.0, "timeout": 5.0, "chunk_size": 4096}


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _range_start(request: RecordedRequest) -> int:
    value = request.headers["Range"]
    assert value.startswith("bytes=") and value.endswith("-")
    return int(value[len("bytes=") : -1])


def _assert_nothing_left(dest: Path) -> None:
    assert not dest.exists()
    assert not _part(dest).exists()


# --------------------------------------------------------------------------- success


def test_success_with_sha256(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "sub" / "f.bin"

    digest = download_file(url, dest, sha256=SHA256.upper(), **FAST)

    assert digest == SHA256
    assert dest.read_bytes() == DATA
    assert not _part(dest).exists()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA256


def test_success_with_md5(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "f.bin"

    digest = download_file(url, dest, md5=MD5, **FAST)

    assert digest == SHA256
    assert hashlib.md5(dest.read_bytes()).hexdigest() == MD5


def test_query_params_are_sent(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))

    download_file(url, tmp_path / "f.bin", params={"id": "abc", "export": "download"}, **FAST)

    assert http_server.requests_to("/f.bin")[0].query == {"id": "abc", "export": "download"}


# --------------------------------------------------------------------------- checksums


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_checksum_mismatch_leaves_nothing(http_server: LocalHTTPServer, tmp_path: Path, algo: str) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "f.bin"
    wrong = "0" * (64 if algo == "sha256" else 32)
    got = SHA256 if algo == "sha256" else MD5

    with pytest.raises(ChecksumError) as info:
        download_file(url, dest, what="Oxford Pets", **{algo: wrong}, **FAST)

    message = str(info.value)
    assert f"expected {algo} {wrong}" in message and f"got {got}" in message
    assert "removed" in message and "Oxford Pets" in message and url in message
    _assert_nothing_left(dest)
    assert len(http_server.requests_to("/f.bin")) == 1  # a bad checksum is not retried


def test_existing_file_with_wrong_checksum_is_replaced(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")

    assert download_file(url, dest, sha256=SHA256, **FAST) == SHA256
    assert dest.read_bytes() == DATA


# --------------------------------------------------------------------------- resume


def test_cut_transfer_is_resumed_with_range(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    half = len(DATA) // 2
    url = http_server.route("/f.bin", http_server.file(DATA, cut_after=half), http_server.file(DATA))
    dest = tmp_path / "f.bin"

    assert download_file(url, dest, sha256=SHA256, **FAST) == SHA256

    first, second = http_server.requests_to("/f.bin")
    assert "Range" not in first.headers
    assert 0 < _range_start(second) <= half  # resumed from what reached the disk
    assert dest.read_bytes() == DATA
    assert not _part(dest).exists()


def test_later_call_resumes_partial_file(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    cut = 30_000
    url = http_server.route("/f.bin", http_server.file(DATA, cut_after=cut), http_server.file(DATA))
    dest = tmp_path / "f.bin"

    with pytest.raises(DownloadError, match="resumes"):
        download_file(url, dest, sha256=SHA256, **{**FAST, "retries": 0})
    assert not dest.exists()
    kept = _part(dest).stat().st_size
    assert 0 < kept <= cut

    assert download_file(url, dest, sha256=SHA256, **FAST) == SHA256
    assert _range_start(http_server.requests_to("/f.bin")[1]) == kept
    assert dest.read_bytes() == DATA


def test_server_ignoring_range_restarts_cleanly(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    half = len(DATA) // 2
    url = http_server.route(
        "/f.bin", http_server.file(DATA, cut_after=half), http_server.file(DATA, honour_range=False)
    )
    dest = tmp_path / "f.bin"

    assert download_file(url, dest, sha256=SHA256, **FAST) == SHA256

    assert 0 < _range_start(http_server.requests_to("/f.bin")[1]) <= half
    assert dest.read_bytes() == DATA


def test_complete_part_file_is_finished_without_body(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "f.bin"
    _part(dest).write_bytes(DATA)  # a crash after the transfer, before the rename

    assert download_file(url, dest, sha256=SHA256, **FAST) == SHA256
    assert dest.read_bytes() == DATA


# --------------------------------------------------------------------------- errors/retries


def test_404_is_not_retried_and_names_dataset_and_hint(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/gone.tgz", http_server.status(404))
    dest = tmp_path / "cars_train.tgz"
    hint = "Get cars_train.tgz from a Stanford Cars mirror and put it at data/stanford_cars/."

    with pytest.raises(DownloadError) as info:
        download_file(url, dest, what="StanfordCars", manual_hint=hint, **FAST)

    message = str(info.value)
    assert "StanfordCars" in message and hint in message
    assert url in message and str(dest) in message and "404" in message
    assert len(http_server.requests_to("/gone.tgz")) == 1
    _assert_nothing_left(dest)


def test_500_twice_then_success_is_retried(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route(
        "/f.bin", http_server.status(500), http_server.status(503), http_server.file(DATA)
    )

    assert download_file(url, tmp_path / "f.bin", sha256=SHA256, **FAST) == SHA256
    assert len(http_server.requests_to("/f.bin")) == 3


@pytest.mark.parametrize("code", [408, 429])
def test_throttling_statuses_are_retried(http_server: LocalHTTPServer, tmp_path: Path, code: int) -> None:
    url = http_server.route("/f.bin", http_server.status(code), http_server.file(DATA))

    assert download_file(url, tmp_path / "f.bin", **FAST) == SHA256
    assert len(http_server.requests_to("/f.bin")) == 2


def test_persistent_500_gives_up_after_retries(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.status(500))

    with pytest.raises(DownloadError, match="after 3 attempts"):
        download_file(url, tmp_path / "f.bin", what="DTD", **{**FAST, "retries": 2})
    assert len(http_server.requests_to("/f.bin")) == 3
    _assert_nothing_left(tmp_path / "f.bin")


def test_backoff_doubles(
    http_server: LocalHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", delays.append)
    url = http_server.route(
        "/f.bin",
        http_server.status(500),
        http_server.status(500),
        http_server.status(500),
        http_server.file(DATA),
    )

    download_file(url, tmp_path / "f.bin", **{**FAST, "backoff": 0.5})

    assert delays == [0.5, 1.0, 2.0]


def test_timeout_is_retried(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    serve = http_server.file(DATA)

    def slow(handler: object, request: RecordedRequest) -> None:
        time.sleep(1.0)
        serve(handler, request)  # type: ignore[arg-type]

    url = http_server.route("/f.bin", slow, serve)

    assert download_file(url, tmp_path / "f.bin", **{**FAST, "timeout": 0.2}) == SHA256
    assert len(http_server.requests_to("/f.bin")) == 2


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:  # find a free port, then close it: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/f.bin"

    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "f.bin", what="EuroSAT", **{**FAST, "retries": 1})

    assert "after 2 attempts" in str(info.value) and "EuroSAT" in str(info.value)


def test_second_call_is_idempotent_without_network(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    url = http_server.route("/f.bin", http_server.file(DATA))
    dest = tmp_path / "f.bin"
    download_file(url, dest, sha256=SHA256, **FAST)
    download_file(url, dest, **FAST)  # no checksum given: the file is trusted
    assert download_file(url, dest, sha256=SHA256, md5=MD5, **FAST) == SHA256
    assert http_server.request_count == 1
