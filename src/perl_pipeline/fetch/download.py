"""Resumable, retried, checksum-verified and atomic downloads over HTTP or from Google Drive (no Kedro).

``download_file`` streams into ``<dest>.part``, resuming an existing one with ``Range``
(a 200 answer restarts from byte 0). Connection errors, timeouts, cut transfers, 5xx, 408
and 429 are retried with exponential backoff; other 4xx fail at once. The ``.part`` is
checked against md5/sha256 before ``os.replace`` onto ``dest``, so ``dest`` is always
complete and verified. ``download_gdrive`` leaves the confirmation page, retries and resuming
to ``gdown`` and adds the same checks and messages (quota, not public, an HTML page, a cut transfer).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import gdown
import requests
from gdown.exceptions import DownloadError as GdownDownloadError
from gdown.exceptions import FileURLRetrievalError
from requests.exceptions import ChunkedEncodingError
from tqdm import tqdm

from perl_pipeline.provenance import file_digests

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 429})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_QUOTA_WORDS = ("quota", "too many users")
_ACCESS_WORDS = ("sign in", "servicelogin", "access denied", "permission", "request access")


class DownloadError(RuntimeError):
    """A download failed; the message names the URL, the destination and what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected checksum (the bad file was removed)."""


class _TransientError(Exception):
    """One attempt failed in a way that is worth retrying."""


class _RefusedError(Exception):
    """The server refused the file (a 4xx other than 408/429): retrying would not help."""


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    what: str = "",
    manual_hint: str = "",
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    params: Mapping[str, str] | None = None,
) -> str:
    """Download url to dest atomically; return the sha256 hex digest of the final file.

    A ``dest`` already matching the checksums (any, when none are given) is reused without
    network; one that does not match is downloaded again. ``what`` names the thing and
    ``manual_hint`` the manual route in messages; ``retries`` extra attempts start after
    ``backoff`` seconds, doubling. A failed download keeps its ``.part``.
    """
    dest = Path(dest)
    existing = reuse_verified(dest, sha256=sha256, md5=md5)
    if existing is not None:
        return existing
    part = dest.with_name(dest.name + ".part")
    shown = (requests.Request("GET", url, params=params).prepare().url or url) if params else url
    manual = (
        manual_hint or f"Check the URL and your network, or fetch the file by hand and save it as {dest}."
    )
    failure = partial(_failure, what, shown, dest, manual)
    bar = {"desc": what or dest.name, "disable": None if progress else True}
    with requests.Session() as session:
        get = partial(session.get, url, params=params, stream=True, timeout=timeout)
        attempt = partial(_attempt, get, part, chunk_size, bar)
        _with_retries(attempt, part, shown, failure, attempts=max(retries, 0) + 1, backoff=backoff)
    digest, problem = _check_digests(part, sha256, md5)
    if problem is not None:
        part.unlink()
        raise ChecksumError(
            failure(
                f"checksum mismatch: {problem}",
                f"The downloaded file was removed and nothing was written to {dest}. "
                "Run again to retry; if it fails again the source file changed or is corrupt.",
            )
        )
    os.replace(part, dest)
    logger.info("Downloaded %s to %s (sha256 %s)", shown, dest, digest)
    return digest


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
    """Download a public Google Drive file to dest; return its sha256 hex digest. A good ``dest`` is
    reused without network; an interrupted download leaves a ``.part`` the next call resumes from."""
    dest = Path(dest)
    what = what or f"Google Drive file {file_id}"
    expected = sha256.strip().lower() if sha256 else None
    existing = reuse_verified(dest, sha256=expected)
    if existing is not None:
        return existing
    manual = (
        f"Manual route: open https://drive.google.com/uc?id={file_id} in a browser (from another "
        f"network if Google Drive is blocked where you are), download the file and save it as {dest}. "
        f"{manual_hint}"
    ).strip()
    failure = partial(_failure, what, f"Google Drive file {file_id}", dest, manual)
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
        kept = f"A partial file next to {dest} (ending in .part) is kept; running again resumes from it."
        raise DownloadError(failure(str(exc), kept)) from exc
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        dest.unlink()
        removed = (
            "The downloaded file was removed. Run again to retry; if it fails again the file on Google "
            "Drive changed or is corrupt."
        )
        raise ChecksumError(failure(f"checksum mismatch: expected sha256 {expected}, got {digest}", removed))
    logger.info("Downloaded Google Drive file %s to %s (sha256 %s)", file_id, dest, digest)
    return digest


def _html_reason(page_says: str) -> str:
    lowered = page_says.lower()
    if any(word in lowered for word in _QUOTA_WORDS):
        return "the download quota for this file is exceeded; it resets within about 24 h"
    if any(word in lowered for word in _ACCESS_WORDS):
        return "the file is not public, or Google Drive asks to sign in"
    return "Google Drive may be blocked or rate-limiting this network, or the file is not public"


def _failure(what: str, source: str, dest: Path, manual: str, problem: str, advice: str = "") -> str:
    """What failed, why, and how to get the file anyway."""
    subject = f"{what}: " if what else ""
    text = [f"{subject}download of {source} to {dest} failed: {problem}.", advice, manual]
    return " ".join(sentence for sentence in text if sentence)


def _check_digests(path: Path, sha256: str | None, md5: str | None) -> tuple[str, str | None]:
    """(path's sha256; 'expected X, got Y' for the first mismatching checksum, None if all match)."""
    digests = file_digests(path, ("sha256", "md5") if md5 is not None else ("sha256",))
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and digests[name] != expected.strip().lower():
            return digests["sha256"], f"expected {name} {expected.strip().lower()}, got {digests[name]}"
    return digests["sha256"], None


def reuse_verified(dest: Path, *, sha256: str | None = None, md5: str | None = None) -> str | None:
    """Return dest's sha256 if it is already a good copy (no checksum given: any file), else None
    (removing, with a warning, a dest that does not match, and making the folder for a new one)."""
    if dest.is_file():
        digest, problem = _check_digests(dest, sha256, md5)
        if problem is None:
            logger.info("%s already present and verified; not downloading", dest)
            return digest
        logger.warning("%s exists but does not match (%s); removing it and downloading again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    return None


def _with_retries(
    attempt: Callable[[], None],
    part: Path,
    shown: str,
    failure: Callable[..., str],
    *,
    attempts: int,
    backoff: float,
) -> None:
    """Call `attempt` until it succeeds, retrying transient failures after `backoff` s, doubling."""
    last: Exception | None = None
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except requests.exceptions.SSLError as exc:
            advice = "The server's certificate is not trusted; use a mirror."
            raise DownloadError(failure(f"TLS/SSL error ({exc})", advice)) from exc
        except _RefusedError as exc:
            raise DownloadError(failure(str(exc))) from None
        except (_TransientError, requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
            last = exc
        except requests.RequestException as exc:
            raise DownloadError(failure(f"request failed ({exc})")) from exc
        if number < attempts:
            delay = backoff * 2 ** (number - 1)
            msg = "Download of %s failed (attempt %d/%d: %s); retrying in %.1f s"
            logger.warning(msg, shown, number, attempts, last, delay)
            time.sleep(delay)
    kept = f"The partial file {part} is kept; calling again resumes from it." if part.exists() else ""
    raise DownloadError(failure(f"gave up after {attempts} attempts; last error: {last}", kept)) from last


def _attempt(get: Callable[..., requests.Response], part: Path, chunk_size: int, bar: dict) -> None:
    """Make one request and append (206, from the byte it starts at) or write (200) its body to `part`."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with get(headers=headers) as resp:
        code, content_range = resp.status_code, resp.headers.get("Content-Range")
        if code == 416 and offset:  # our resume request: the .part is either complete or unusable
            match = _UNSATISFIABLE_RANGE.search(content_range or "")
            if match and int(match.group(1)) == offset:
                logger.info("%s is already complete (%d bytes)", part, offset)
                return
            part.unlink()
            raise _TransientError(f"server refused to resume at byte {offset}; restarting from 0")
        if code >= 500 or code in _RETRYABLE_STATUS:
            raise _TransientError(f"HTTP {code} {resp.reason}")
        if code not in (200, 206):
            raise _RefusedError(f"the server answered HTTP {code} {resp.reason}")
        if code == 206:
            match = _CONTENT_RANGE.search(content_range or "")
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"bad Content-Range {content_range!r} for a resume at byte {offset}; restarting from 0"
                )
            start, total = offset, None if match.group(3) == "*" else int(match.group(3))
        else:
            if offset:
                logger.info("Server ignored the Range request for %s; restarting from byte 0", resp.url)
            length = resp.headers.get("Content-Length")
            start, total = 0, int(length) if length and length.isdigit() else None
        written = start
        progress = tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, leave=False, **bar
        )
        with progress, part.open("ab" if start else "wb") as fh:
            for chunk in resp.iter_content(chunk_size=chunk_size):
                fh.write(chunk)
                written += len(chunk)
                progress.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if total is not None and encoding == "identity" and written != total:
            raise _TransientError(f"transfer cut short: got {written} of {total} bytes")
