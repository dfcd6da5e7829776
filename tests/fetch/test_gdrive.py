"""Offline tests of download_gdrive: gdown talks to a local 127.0.0.1 server posing as Google Drive.

gdown's Google Drive addresses are fixed (``https://drive.google.com/uc?id=...``), so the
`google_drive` fixture redirects them at the transport seam: requests' ``HTTPAdapter.send``
sends any request for a Google host to the local server instead (same path and query).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from perl_pipeline.fetch.download import ChecksumError, DownloadError, download_gdrive

if TYPE_CHECKING:
    from tests.conftest import LocalHTTPServer, RecordedRequest

DATA = bytes(range(256)) * 400  # 100 KiB, not a repeat of one byte
SHA256 = hashlib.sha256(DATA).hexdigest()
# gdown reads 512 KiB chunks and keeps only whole ones, so a cut after 1 MiB resumes at 1 MiB
BIG = bytes(range(256)) * 6 * 1024  # 1.5 MiB
BIG_SHA256 = hashlib.sha256(BIG).hexdigest()
CUT = 1 << 20
FILE_ID = "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"
GOOGLE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
ATTACHMENT = {"Content-Disposition": 'attachment; filename="split_zhou_OxfordPets.json"'}

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can't
view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try accessing the file again later.</p>
</div></div></body></html>"""  # noqa: E501 -- Drive's caption sits on one line

SIGN_IN_PAGE = """<!DOCTYPE html><html><head><title>Google Drive</title></head><body>
<p class="uc-error-subcaption">You need access. Request access, or switch to an account with access.</p>
</body></html>"""


def _confirm_page(action: str) -> str:
    return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file
for viruses.</p><form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link" value="Download anyway"/><input type="hidden" name="id" value="{FILE_ID}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0f5c-uuid"></form></div></body></html>"""  # noqa: E501


@pytest.fixture
def google_drive(http_server: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch) -> LocalHTTPServer:
    """The local server, answering every request gdown sends to a Google host."""
    real_send = requests.adapters.HTTPAdapter.send
    local = urlsplit(http_server.url("/")).netloc

    def send(self: requests.adapters.HTTPAdapter, request: requests.PreparedRequest, **kwargs: object):
        parts = urlsplit(request.url)
        if parts.hostname in GOOGLE_HOSTS:
            request.url = urlunsplit(("http", local, parts.path, parts.query, ""))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return http_server


def _parts(dest: Path) -> list[Path]:
    """gdown's partial files for dest: <name>XXXXXXXX.part in the same folder."""
    return sorted(dest.parent.glob(f"{dest.name}*.part")) if dest.parent.exists() else []


def _assert_nothing_left(dest: Path) -> None:
    assert not dest.exists()
    assert _parts(dest) == []


def test_direct_download(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.file(DATA, headers=ATTACHMENT))
    dest = tmp_path / "sub" / "split_zhou_OxfordPets.json"

    digest = download_gdrive(FILE_ID, dest, sha256=SHA256.upper(), progress=False)

    assert digest == SHA256 and dest.read_bytes() == DATA
    (request,) = google_drive.requests_to("/uc")
    assert request.query == {"id": FILE_ID}
    assert _parts(dest) == []


def test_confirm_page_is_submitted(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    serve = google_drive.file(DATA, headers=ATTACHMENT)
    page = google_drive.html(_confirm_page("https://drive.usercontent.google.com/download"))

    def usercontent(handler: object, request: RecordedRequest) -> None:
        confirmed = request.query.get("confirm") == "t" and request.query.get("uuid")
        (serve if confirmed else page)(handler, request)  # type: ignore[arg-type]

    google_drive.route("/uc", page)
    google_drive.route("/download", usercontent)
    dest = tmp_path / "UCF-101-midframes.zip"

    assert download_gdrive(FILE_ID, dest, sha256=SHA256, progress=False) == SHA256

    (first,) = google_drive.requests_to("/uc")
    (second,) = google_drive.requests_to("/download")
    assert first.query == {"id": FILE_ID}
    assert second.query == {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": "0f5c-uuid"}
    assert dest.read_bytes() == DATA
    assert _parts(dest) == []


def test_old_style_confirm_link(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    link = (
        f'<html><body><a href="/uc?export=download&amp;confirm=AbCd&amp;id={FILE_ID}">'
        "Download anyway</a></body></html>"
    )
    google_drive.route("/uc", google_drive.html(link), google_drive.file(DATA, headers=ATTACHMENT))

    assert download_gdrive(FILE_ID, tmp_path / "f.zip", progress=False) == SHA256
    first, second = google_drive.requests_to("/uc")
    assert first.query == {"id": FILE_ID}
    assert second.query == {"export": "download", "confirm": "AbCd", "id": FILE_ID}


@pytest.mark.parametrize("status", [200, 403])
def test_quota_page_gives_manual_route(google_drive: LocalHTTPServer, tmp_path: Path, status: int) -> None:
    google_drive.route("/uc", google_drive.html(QUOTA_PAGE, status))
    dest = tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json"

    with pytest.raises(DownloadError) as info:
        download_gdrive(
            FILE_ID,
            dest,
            what="OxfordPets split",
            progress=False,
            manual_hint="The split is also vendored in the repo.",
        )

    message = str(info.value)
    assert "quota" in message and "Too many users" in message
    assert f"https://drive.google.com/uc?id={FILE_ID}" in message
    assert str(dest) in message and "OxfordPets split" in message
    assert "vendored" in message
    assert len(google_drive.requests_to("/uc")) == 1
    _assert_nothing_left(dest)


def test_quota_after_confirm(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route(
        "/uc", google_drive.html(_confirm_page("https://drive.usercontent.google.com/download"))
    )
    google_drive.route("/download", google_drive.html(QUOTA_PAGE))

    with pytest.raises(DownloadError, match="quota"):
        download_gdrive(FILE_ID, tmp_path / "f.zip", progress=False)
    assert len(google_drive.requests_to("/uc")) == 1
    assert len(google_drive.requests_to("/download")) == 1
    _assert_nothing_left(tmp_path / "f.zip")


def test_sign_in_page_says_not_public(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.html(SIGN_IN_PAGE))
    dest = tmp_path / "f.zip"

    with pytest.raises(DownloadError) as info:
        download_gdrive(FILE_ID, dest, progress=False)

    message = str(info.value)
    assert "not public" in message and FILE_ID in message and str(dest) in message
    _assert_nothing_left(dest)


def test_html_instead_of_file_names_id_and_destination(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.html("<html><body>Something went wrong</body></html>"))
    dest = tmp_path / "f.zip"

    with pytest.raises(DownloadError) as info:
        download_gdrive(FILE_ID, dest, progress=False)

    message = str(info.value)
    assert "HTML page instead of the file" in message
    assert FILE_ID in message and str(dest) in message and "Manual route" in message
    _assert_nothing_left(dest)


def test_checksum_mismatch_leaves_nothing(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.file(DATA, headers=ATTACHMENT))
    dest = tmp_path / "f.zip"
    wrong = "0" * 64

    with pytest.raises(ChecksumError) as info:
        download_gdrive(FILE_ID, dest, sha256=wrong, what="UCF101 frames", progress=False)

    message = str(info.value)
    assert f"expected sha256 {wrong}" in message and f"got {SHA256}" in message
    assert "removed" in message and "UCF101 frames" in message and FILE_ID in message
    _assert_nothing_left(dest)


def test_cut_transfer_is_retried_with_range(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route(
        "/uc",
        google_drive.file(BIG, headers=ATTACHMENT, cut_after=CUT),
        google_drive.file(BIG, headers=ATTACHMENT),
    )
    dest = tmp_path / "f.zip"

    assert download_gdrive(FILE_ID, dest, sha256=BIG_SHA256, retries=2, progress=False) == BIG_SHA256

    first, second = google_drive.requests_to("/uc")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={CUT}-"
    assert dest.read_bytes() == BIG and _parts(dest) == []


def test_partial_file_is_kept_and_resumed_by_the_next_call(
    google_drive: LocalHTTPServer, tmp_path: Path
) -> None:
    google_drive.route(
        "/uc",
        google_drive.file(BIG, headers=ATTACHMENT, cut_after=CUT),
        google_drive.file(BIG, headers=ATTACHMENT),
    )
    dest = tmp_path / "f.zip"

    with pytest.raises(DownloadError, match=r"\.part"):
        download_gdrive(FILE_ID, dest, sha256=BIG_SHA256, retries=0, progress=False)
    (part,) = _parts(dest)
    assert part.read_bytes() == BIG[:CUT] and not dest.exists()

    assert download_gdrive(FILE_ID, dest, sha256=BIG_SHA256, retries=0, progress=False) == BIG_SHA256
    assert google_drive.requests_to("/uc")[-1].headers["Range"] == f"bytes={CUT}-"
    assert dest.read_bytes() == BIG and _parts(dest) == []


def test_existing_good_copy_needs_no_network(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.file(DATA, headers=ATTACHMENT))
    dest = tmp_path / "f.json"
    download_gdrive(FILE_ID, dest, sha256=SHA256, progress=False)

    assert download_gdrive(FILE_ID, dest, sha256=SHA256, progress=False) == SHA256
    assert google_drive.request_count == 1


def test_existing_bad_copy_is_replaced(google_drive: LocalHTTPServer, tmp_path: Path) -> None:
    google_drive.route("/uc", google_drive.file(DATA, headers=ATTACHMENT))
    dest = tmp_path / "f.json"
    dest.write_bytes(b"stale")

    assert download_gdrive(FILE_ID, dest, sha256=SHA256, progress=False) == SHA256
    assert dest.read_bytes() == DATA
