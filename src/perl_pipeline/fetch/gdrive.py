"""Download public Google Drive files through ``gdown``, with the project's checks (no Kedro).

``gdown`` handles the virus-scan confirmation page, retries and resuming from its ``.part``
file; this module adds sha256 checks, reuse of a good copy without network, and a
:class:`~perl_pipeline.fetch.download.DownloadError` naming the file id, the destination and
the manual route for every failure (quota, not public, an HTML page, a cut transfer).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import gdown
import requests
from gdown.exceptions import DownloadError as GdownDownloadError
from gdown.exceptions import FileURLRetrievalError

from perl_pipeline.fetch.download import ChecksumError, DownloadError, reuse_verified

logger = logging.getLogger(__name__)

_QUOTA_WORDS = ("quota", "too many users")
_ACCESS_WORDS = ("sign in", "servicelogin", "access denied", "permission", "request access")


def download_gdrive(
    file_id: str,
    dest: Path,
    *,
    sha256: str | None = None,
    what: str = "",
    manual_hint: str = "",
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
    """Download a public Google Drive file to dest; return its sha256 hex digest.

    A good ``dest`` is reused without network (see :func:`download_file`); an interrupted
    download leaves gdown's ``.part`` file and the next call resumes from it.
    """
    dest = Path(dest)
    what = what or f"Google Drive file {file_id}"
    expected = sha256.strip().lower() if sha256 else None
    existing = reuse_verified(dest, sha256=expected)
    if existing is not None:
        return existing
    dest.parent.mkdir(parents=True, exist_ok=True)
    manual = (
        f"Manual route: open https://drive.google.com/uc?id={file_id} in a browser (from another "
        f"network if Google Drive is blocked where you are), download the file and save it as {dest}. "
        f"{manual_hint}"
    ).strip()
    failed = f"{what}: download of Google Drive file {file_id} to {dest} failed"
    hasher = hashlib.sha256()
    try:
        gdown.download(
            id=file_id,
            output=str(dest),
            quiet=not progress,
            resume=True,
            use_cookies=False,  # never read or write ~/.cache/gdown/cookies.txt
            hasher=hasher,
            timeout=timeout,
            retries=max(retries, 0),
        )
    except FileURLRetrievalError as exc:  # Google Drive sent an HTML page where the file was expected
        summary = " ".join(str(exc).split())[:400]
        raise DownloadError(
            f"{what}: Google Drive answered file {file_id} with an HTML page instead of the file "
            f"(nothing was written to {dest}): {_html_reason(summary)}. gdown says: {summary!r}. {manual}"
        ) from exc
    except (GdownDownloadError, requests.RequestException, OSError) as exc:
        raise DownloadError(
            f"{failed}: {exc}. A partial file next to {dest} (ending in .part) is kept; running again "
            f"resumes from it. {manual}"
        ) from exc
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        dest.unlink()
        raise ChecksumError(
            f"{failed}: checksum mismatch: expected sha256 {expected}, got {digest}. The downloaded file "
            "was removed. Run again to retry; if it fails again the file on Google Drive changed or is "
            f"corrupt. {manual}"
        )
    logger.info("Downloaded Google Drive file %s to %s (sha256 %s)", file_id, dest, digest)
    return digest


def _html_reason(page_says: str) -> str:
    lowered = page_says.lower()
    if any(word in lowered for word in _QUOTA_WORDS):
        return "the download quota for this file is exceeded; it resets within about 24 h"
    if any(word in lowered for word in _ACCESS_WORDS):
        return "the file is not public, or Google Drive asks to sign in"
    return "Google Drive may be blocked or rate-limiting this network, or the file is not public"
