"""Download public Google Drive files (what ``gdown`` does), without Kedro.

Google Drive answers ``<base_url>?id=<id>&export=download`` either with the
file itself or, for files it cannot virus-scan, with an HTML page whose
"Download anyway" form carries hidden inputs (``id``, ``export``, ``confirm``,
``uuid``). ``download_gdrive`` submits that form and streams the file through
:func:`perl_pipeline.fetch.download.download_file`, so it gets the same resume,
retry, checksum and atomic-rename behaviour. Any other HTML page (quota
exceeded, sign-in required, region blocked) is turned into a
:class:`~perl_pipeline.fetch.download.DownloadError` that spells out the manual
route.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import requests

from perl_pipeline.fetch.download import DownloadError, download_file

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://drive.usercontent.google.com/download"
_MAX_PAGES = 3
_MAX_PAGE_BYTES = 1 << 20
_DOWNLOAD_URL_JSON = re.compile(r'"downloadUrl":("(?:[^"\\]|\\.)*")')
_QUOTA_WORDS = ("quota", "too many users")
_ACCESS_WORDS = ("sign in", "servicelogin", "access denied", "permission", "request access")


class _HtmlInsteadOfFile(Exception):
    """Google Drive sent an HTML page where the file was expected."""

    def __init__(self, page: str, url: str, status: int) -> None:
        super().__init__(f"HTML page from {url} (HTTP {status})")
        self.page = page
        self.url = url
        self.status = status


@dataclass
class _Form:
    action: str
    attrs: dict[str, str]
    inputs: dict[str, str] = field(default_factory=dict)


class _PageParser(HTMLParser):
    """Collect forms (with their named inputs), links, the title and error captions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.links: list[str] = []
        self.texts: list[str] = []
        self._form: _Form | None = None
        self._capturing: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = _Form(action=values.get("action", ""), attrs=values)
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and values.get("name"):
            self._form.inputs[values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if tag == "title" or "uc-error" in values.get("class", ""):
            self._capturing.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        if self._capturing and self._capturing[-1] == tag:
            self._capturing.pop()

    def handle_data(self, data: str) -> None:
        if self._capturing and data.strip():
            self.texts.append(" ".join(data.split()))


def download_gdrive(
    file_id: str,
    dest: Path,
    *,
    sha256: str | None = None,
    what: str = "",
    manual_hint: str = "",
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    base_url: str = DEFAULT_BASE_URL,
) -> str:
    """Download a public Google Drive file to dest; return its sha256 hex digest.

    Args:
        file_id: The Drive file id (the ``id=`` of a share link).
        dest: Final path of the file.
        sha256: Expected sha256 hex digest, or None.
        what: Human name of the file (e.g. ``"split_zhou_OxfordPets.json"``) for messages.
        manual_hint: Extra advice appended to the manual route in error messages.
        retries: Extra attempts after the first on transient failures.
        backoff: First retry delay in seconds; doubles on each retry.
        timeout: Connect/read timeout per request, in seconds.
        progress: Show a progress bar (hidden anyway when stderr is not a terminal).
        base_url: Download endpoint; injectable so tests can use a local server.

    Returns:
        The sha256 hex digest of ``dest``.

    Raises:
        DownloadError: Quota exceeded, file not public, blocked, or the transfer failed;
            the message gives the manual route (browser link and where to save the file).
        ChecksumError: The bytes do not match ``sha256``.
    """
    dest = Path(dest)
    what = what or f"Google Drive file {file_id}"
    hint = _manual_route(file_id, dest, manual_hint)
    url, params = base_url, {"id": file_id, "export": "download"}
    with requests.Session() as session:
        for _ in range(_MAX_PAGES):
            try:
                return download_file(
                    url,
                    dest,
                    sha256=sha256,
                    what=what,
                    manual_hint=hint,
                    retries=retries,
                    backoff=backoff,
                    timeout=timeout,
                    progress=progress,
                    session=session,
                    params=params,
                    check_response=_reject_html,
                )
            except _HtmlInsteadOfFile as page:
                url, params = _confirm_target(page, file_id=file_id, what=what, hint=hint)
                logger.info("%s: Google Drive asked for confirmation; submitting its form", what)
    raise DownloadError(
        f"{what}: Google Drive kept answering file {file_id} with confirmation "
        f"pages ({_MAX_PAGES} in a row). {hint}"
    )


def _manual_route(file_id: str, dest: Path, extra: str) -> str:
    route = (
        f"Manual route: open https://drive.google.com/uc?id={file_id} in a browser "
        f"(from another network if Google Drive is blocked where you are), download "
        f"the file and save it as {dest}."
    )
    return f"{route} {extra}".strip()


def _reject_html(resp: requests.Response) -> None:
    """check_response hook: stop before writing when Drive sends a web page."""
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "text/html":
        return
    raw = b""
    for chunk in resp.iter_content(chunk_size=1 << 16):
        raw += chunk
        if len(raw) >= _MAX_PAGE_BYTES:
            break
    page = raw.decode(resp.encoding or "utf-8", errors="replace")
    raise _HtmlInsteadOfFile(page, resp.url, resp.status_code)


def _confirm_target(
    page: _HtmlInsteadOfFile, *, file_id: str, what: str, hint: str
) -> tuple[str, dict[str, str]]:
    """Return (url, params) that confirm the download, or raise a DownloadError."""
    parser = _PageParser()
    parser.feed(page.page)
    target = _from_form(parser, page.url) or _from_link(parser, page.url)
    target = target or _from_json(page.page, page.url)
    if target is not None:
        return target
    raise DownloadError(_blocked_message(page, parser, file_id=file_id, what=what, hint=hint))


def _from_form(parser: _PageParser, page_url: str) -> tuple[str, dict[str, str]] | None:
    for form in parser.forms:
        if form.attrs.get("id") == "download-form" or "confirm" in form.inputs:
            action = urljoin(page_url, form.action) if form.action else page_url
            return _without_query(action), dict(form.inputs)
    return None


def _from_link(parser: _PageParser, page_url: str) -> tuple[str, dict[str, str]] | None:
    for href in parser.links:
        if "confirm=" in href and "export=download" in href:
            return _split_url(urljoin(page_url, html.unescape(href)))
    return None


def _from_json(page: str, page_url: str) -> tuple[str, dict[str, str]] | None:
    match = _DOWNLOAD_URL_JSON.search(page)
    if match is None:
        return None
    return _split_url(urljoin(page_url, json.loads(match.group(1))))


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    return _without_query(url), dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _without_query(url: str) -> str:
    scheme, netloc, path, _, _ = urlsplit(url)
    return urlunsplit((scheme, netloc, path, "", ""))


def _blocked_message(
    page: _HtmlInsteadOfFile, parser: _PageParser, *, file_id: str, what: str, hint: str
) -> str:
    summary = " ".join(parser.texts)[:300] or "no readable message"
    lowered = page.page.lower()
    if any(word in lowered for word in _QUOTA_WORDS):
        reason = "the download quota for this file is exceeded; it resets within about 24 h"
    elif any(word in lowered for word in _ACCESS_WORDS):
        reason = "the file is not public, or Google Drive asks to sign in"
    else:
        reason = "Google Drive may be blocked or rate-limiting this network"
    return (
        f"{what}: Google Drive answered file {file_id} with an HTML page "
        f"(HTTP {page.status}) instead of the file: {reason}. Page says: {summary!r}. "
        f"{hint}"
    )
