"""Resumable, retried, checksum-verified and atomic HTTP downloads (no Kedro).

``download_file`` streams into ``<dest>.part``, resuming an existing one with ``Range``
(a 200 answer restarts from byte 0). Connection errors, timeouts, cut transfers, 5xx, 408
and 429 are retried with exponential backoff; other 4xx fail at once. The ``.part`` is
checked against md5/sha256 before ``os.replace`` onto ``dest``, so ``dest`` is always
complete and verified.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.exceptions import ChunkedEncodingError
from tqdm import tqdm

from perl_pipeline.provenance import file_digests

logger = logging.getLogger(__name__)

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
    """Everything one download needs."""

    url: str
    params: Mapping[str, str] | None
    dest: Path
    what: str
    manual_hint: str
    timeout: float
    chunk_size: int
    progress: bool
    session: requests.Session

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")

    @property
    def display_url(self) -> str:
        if not self.params:
            return self.url
        return requests.Request("GET", self.url, params=self.params).prepare().url or self.url

    def error(self, problem: str, advice: str = "") -> str:
        """Build an error message: what failed, why, and how to get the file anyway."""
        subject = f"{self.what}: " if self.what else ""
        manual = self.manual_hint or (
            f"Check the URL and your network, or fetch the file by hand and save it as {self.dest}."
        )
        text = [f"{subject}download of {self.display_url} to {self.dest} failed: {problem}.", advice, manual]
        return " ".join(part for part in text if part)


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
    dest.parent.mkdir(parents=True, exist_ok=True)
    with requests.Session() as session:
        job = _Job(url, params, dest, what, manual_hint, timeout, chunk_size, progress, session)
        _fetch_with_retries(job, retries=retries, backoff=backoff)
    digest, problem = _check_digests(job.part, sha256, md5)
    if problem is not None:
        job.part.unlink()
        raise ChecksumError(
            job.error(
                f"checksum mismatch: {problem}",
                f"The downloaded file was removed and nothing was written to {job.dest}. "
                "Run again to retry; if it fails again the source file changed or is corrupt.",
            )
        )
    os.replace(job.part, dest)
    logger.info("Downloaded %s to %s (sha256 %s)", job.display_url, dest, digest)
    return digest


def _check_digests(path: Path, sha256: str | None, md5: str | None) -> tuple[str, str | None]:
    """(path's sha256; 'expected X, got Y' for the first mismatching checksum, None if all match)."""
    digests = file_digests(path, ("sha256", "md5") if md5 is not None else ("sha256",))
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and digests[name] != expected.strip().lower():
            return digests["sha256"], f"expected {name} {expected.strip().lower()}, got {digests[name]}"
    return digests["sha256"], None


def reuse_verified(dest: Path, *, sha256: str | None = None, md5: str | None = None) -> str | None:
    """Return dest's sha256 if it is already a good copy (no checksum given: any file), else None.

    A dest that does not match is removed with a warning.
    """
    if not dest.is_file():
        return None
    digest, problem = _check_digests(dest, sha256, md5)
    if problem is None:
        logger.info("%s already present and verified; not downloading", dest)
        return digest
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
                job.error(f"TLS/SSL error ({exc})", "The server's certificate is not trusted; use a mirror.")
            ) from exc
        except (_TransientError, requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
            last = exc
        except requests.RequestException as exc:
            raise DownloadError(job.error(f"request failed ({exc})")) from exc
        if attempt < attempts:
            delay = backoff * 2 ** (attempt - 1)
            msg = "Download of %s failed (attempt %d/%d: %s); retrying in %.1f s"
            logger.warning(msg, job.display_url, attempt, attempts, last, delay)
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
        code = resp.status_code
        if code == 416 and offset:  # our resume request: the .part is either complete or unusable
            match = _UNSATISFIABLE_RANGE.search(resp.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                logger.info("%s is already complete (%d bytes)", job.part, offset)
                return
            job.part.unlink()
            raise _TransientError(f"server refused to resume at byte {offset}; restarting from 0")
        if code >= 500 or code in _RETRYABLE_STATUS:
            raise _TransientError(f"HTTP {code} {resp.reason}")
        if code not in (200, 206):
            raise DownloadError(job.error(f"the server answered HTTP {code} {resp.reason}"))
        start, total = _plan_write(job, resp, offset)
        _stream_body(job, resp, start, total)


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
