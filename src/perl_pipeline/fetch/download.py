"""Resumable, retried, checksum-verified and atomic HTTP downloads (no Kedro).

``download_file`` streams a URL into ``<dest>.part``. When a ``.part`` is already
there (an earlier attempt or an earlier run was cut off) it asks the server for
the rest with ``Range: bytes=N-``; a server that answers 200 instead of 206 is
followed from byte 0. Connection errors, timeouts, cut transfers, 5xx, 408 and
429 are retried with exponential backoff; any other 4xx fails at once with a
message naming the dataset and the manual route. The ``.part`` is checked
against the expected md5/sha256 and only then moved onto ``dest`` with
``os.replace``, so a file at ``dest`` is always a complete, verified file.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from perl_pipeline.provenance import file_digests

logger = logging.getLogger(__name__)

ResponseCheck = Callable[[requests.Response], None]
"""Hook run on each response before its body is written; whatever it raises propagates."""

_RETRYABLE_STATUS = frozenset({408, 429})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A download failed; the message names the URL, the destination and what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected checksum (the bad file was removed)."""


class _TransientError(Exception):
    """One attempt failed in a way that is worth retrying."""


@dataclass
class _Job:
    """Everything one download needs, so the helpers stay small."""

    url: str
    params: Mapping[str, str] | None
    dest: Path
    what: str
    manual_hint: str
    timeout: float
    chunk_size: int
    progress: bool
    session: requests.Session
    check_response: ResponseCheck | None

    @property
    def part(self) -> Path:
        return part_path(self.dest)

    @property
    def display_url(self) -> str:
        if not self.params:
            return self.url
        return requests.Request("GET", self.url, params=self.params).prepare().url or self.url

    def error(self, problem: str, advice: str = "") -> str:
        """Build an error message: what failed, why, and how to get the file anyway."""
        subject = f"{self.what}: " if self.what else ""
        text = [f"{subject}download of {self.display_url} to {self.dest} failed: {problem}."]
        if advice:
            text.append(advice)
        if self.manual_hint:
            text.append(self.manual_hint)
        else:
            text.append(
                f"Check the URL and your network, or fetch the file by hand and save it as {self.dest}."
            )
        return " ".join(text)


def part_path(dest: Path) -> Path:
    """Return the in-progress path used while downloading ``dest``.

    Args:
        dest: Final destination of the download.

    Returns:
        ``dest`` with ``.part`` appended to its name.
    """
    return dest.with_name(dest.name + ".part")


def file_md5(path: Path) -> str:
    """Return the md5 hex digest of a file, read in 1 MiB blocks."""
    return file_digests(path, ("md5",))["md5"]


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
    session: requests.Session | None = None,
    params: Mapping[str, str] | None = None,
    check_response: ResponseCheck | None = None,
) -> str:
    """Download url to dest atomically; return the sha256 hex digest of the final file.

    If ``dest`` already exists and matches the given checksums (or none are given)
    it is returned at once, without network. A ``dest`` that does not match is
    removed and downloaded again.

    Args:
        url: Address to fetch.
        dest: Final path; its parent folder is created.
        sha256: Expected sha256 hex digest, or None.
        md5: Expected md5 hex digest, or None.
        what: Human name of the thing (e.g. the dataset), used in messages.
        manual_hint: How to get the file by hand (where from, where to put it).
        retries: Extra attempts after the first on transient failures.
        backoff: First retry delay in seconds; doubles on each retry.
        timeout: Connect/read timeout per request, in seconds.
        chunk_size: Bytes per read from the network.
        progress: Show a tqdm bar (hidden anyway when stderr is not a terminal).
        session: A ``requests.Session`` to reuse (cookies, headers); one is made if None.
        params: Query parameters added to ``url``.
        check_response: Called with each response before its body is written
            (e.g. to reject an HTML page); what it raises propagates, unretried.

    Returns:
        The sha256 hex digest of ``dest``.

    Raises:
        ChecksumError: The bytes do not match ``sha256``/``md5``; nothing is left behind.
        DownloadError: HTTP 4xx, or every attempt failed; a partial ``.part`` is
            kept so the next call resumes.
    """
    dest = Path(dest)
    existing = reuse_verified(dest, sha256=sha256, md5=md5)
    if existing is not None:
        return existing
    dest.parent.mkdir(parents=True, exist_ok=True)
    job = _Job(
        url=url,
        params=params,
        dest=dest,
        what=what,
        manual_hint=manual_hint,
        timeout=timeout,
        chunk_size=chunk_size,
        progress=progress,
        session=session or requests.Session(),
        check_response=check_response,
    )
    try:
        _fetch_with_retries(job, retries=retries, backoff=backoff)
    finally:
        if session is None:
            job.session.close()
    digest = _verify_part(job, sha256=sha256, md5=md5)
    os.replace(job.part, dest)
    logger.info("Downloaded %s to %s (sha256 %s)", job.display_url, dest, digest)
    return digest


def _checksum_problem(digests: Mapping[str, str], sha256: str | None, md5: str | None) -> str | None:
    """Return 'expected X, got Y' for the first mismatching checksum, else None."""
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and digests[name] != expected.strip().lower():
            return f"expected {name} {expected.strip().lower()}, got {digests[name]}"
    return None


def _digests(path: Path, md5: str | None) -> dict[str, str]:
    return file_digests(path, ("sha256", "md5") if md5 is not None else ("sha256",))


def reuse_verified(dest: Path, *, sha256: str | None = None, md5: str | None = None) -> str | None:
    """Return dest's sha256 if it is already a good copy (no checksum given: any file).

    A dest that does not match is removed (with a warning) and None is returned, so the
    caller downloads it again.
    """
    if not dest.is_file():
        return None
    digests = _digests(dest, md5)
    problem = _checksum_problem(digests, sha256, md5)
    if problem is None:
        logger.info("%s already present and verified; not downloading", dest)
        return digests["sha256"]
    logger.warning("%s exists but does not match (%s); removing it and downloading again", dest, problem)
    dest.unlink()
    return None


def _fetch_with_retries(job: _Job, *, retries: int, backoff: float) -> None:
    attempts = max(retries, 0) + 1
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            _attempt(job)
            return
        except requests.exceptions.SSLError as exc:
            raise DownloadError(
                job.error(
                    f"TLS/SSL error ({exc})",
                    "The server's certificate is not trusted; use a mirror.",
                )
            ) from exc
        except (
            _TransientError,
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            last = exc
        except requests.RequestException as exc:
            raise DownloadError(job.error(f"request failed ({exc})")) from exc
        if attempt < attempts:
            delay = backoff * 2 ** (attempt - 1)
            logger.warning(
                "Download of %s failed (attempt %d/%d: %s); retrying in %.1f s",
                job.display_url,
                attempt,
                attempts,
                last,
                delay,
            )
            time.sleep(delay)
    kept = f"The partial file {job.part} is kept; calling again resumes from it." if job.part.exists() else ""
    raise DownloadError(job.error(f"gave up after {attempts} attempts; last error: {last}", kept)) from last


def _attempt(job: _Job) -> None:
    """Make one request and append (206) or write (200) its body to the .part file."""
    offset = job.part.stat().st_size if job.part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with job.session.get(
        job.url, params=job.params, headers=headers, stream=True, timeout=job.timeout
    ) as resp:
        if resp.status_code == 416 and offset:
            _handle_unsatisfiable_range(job, resp, offset)
            return
        _check_status(job, resp)
        start, total = _plan_write(job, resp, offset)
        _stream_body(job, resp, start, total)


def _check_status(job: _Job, resp: requests.Response) -> None:
    code = resp.status_code
    if code >= 500 or code in _RETRYABLE_STATUS:
        raise _TransientError(f"HTTP {code} {resp.reason}")
    if job.check_response is not None:
        job.check_response(resp)
    if code not in (200, 206):
        raise DownloadError(job.error(f"the server answered HTTP {code} {resp.reason}"))


def _handle_unsatisfiable_range(job: _Job, resp: requests.Response, offset: int) -> None:
    """A 416 for our resume request: the .part is either complete or unusable."""
    match = _UNSATISFIABLE_RANGE.search(resp.headers.get("Content-Range", ""))
    if match and int(match.group(1)) == offset:
        logger.info("%s is already complete (%d bytes)", job.part, offset)
        return
    job.part.unlink()
    raise _TransientError(f"server refused to resume at byte {offset}; restarting from 0")


def _plan_write(job: _Job, resp: requests.Response, offset: int) -> tuple[int, int | None]:
    """Return (first byte offset of the body, total file size if known)."""
    if resp.status_code == 206:
        match = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            job.part.unlink(missing_ok=True)
            raise _TransientError(
                f"bad Content-Range {resp.headers.get('Content-Range')!r} "
                f"for a resume at byte {offset}; restarting from 0"
            )
        total = match.group(3)
        return offset, None if total == "*" else int(total)
    if offset:
        logger.info("Server ignored the Range request for %s; restarting from byte 0", job.display_url)
    length = resp.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _stream_body(job: _Job, resp: requests.Response, start: int, total: int | None) -> None:
    written = start
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=job.what or job.dest.name,
        disable=None if job.progress else True,
        leave=False,
    )
    with bar, job.part.open("ab" if start else "wb") as fh:
        for chunk in resp.iter_content(chunk_size=job.chunk_size):
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if total is not None and encoding == "identity" and written != total:
        raise _TransientError(f"transfer cut short: got {written} of {total} bytes")


def _verify_part(job: _Job, *, sha256: str | None, md5: str | None) -> str:
    """Check the .part against the expected checksums; remove it on mismatch."""
    digests = _digests(job.part, md5)
    problem = _checksum_problem(digests, sha256, md5)
    if problem is not None:
        job.part.unlink()
        raise ChecksumError(
            job.error(
                f"checksum mismatch: {problem}",
                f"The downloaded file was removed and nothing was written to {job.dest}. "
                "Run again to retry; if it fails again the source file changed or is corrupt.",
            )
        )
    return digests["sha256"]
