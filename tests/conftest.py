"""Shared fixtures: small randomly initialised open_clip models (no download anywhere), a local HTTP
server on 127.0.0.1 for the download tests, and the miniatures of the 15 benchmarks."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = "PERL-Tiny-ViT"


@pytest.fixture(scope="session")
def tiny_clip():
    """A 4-block ViT / 4-block causal text CLIP with random weights (64 px images)."""
    from perl_pipeline.models import load_clip

    return load_clip(TINY, pretrained=None, init_seed=0)


@pytest.fixture(scope="session")
def vit_b16():
    """The real ViT-B/16 architecture (OpenAI layout, QuickGELU) with random weights."""
    from perl_pipeline.models import load_clip

    return load_clip("ViT-B-16-quickgelu", pretrained=None, init_seed=0)


@pytest.fixture(scope="session")
def tokenize():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-16-quickgelu")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the local server received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


Responder = Callable[[BaseHTTPRequestHandler, RecordedRequest], None]


class LocalHTTPServer:
    """A scripted HTTP server bound to 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        self._routes: dict[str, list[Responder]] = {}
        self._log: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        """Absolute URL of path on this server."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, *responders: Responder) -> str:
        """Answer requests to path with responders in turn (the last repeats); return its URL."""
        self._routes[path] = list(responders)
        return self.url(path)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Requests received for path, oldest first."""
        with self._lock:
            return [req for req in self._log if req.path == path]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._log)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k: v for k, v in handler.headers.items()},
        )
        with self._lock:
            index = sum(1 for req in self._log if req.path == request.path)
            self._log.append(request)
        responders = self._routes.get(request.path)
        if not responders:
            self.status(404, b"no such route")(handler, request)
            return
        responders[min(index, len(responders) - 1)](handler, request)

    # ---- responders -------------------------------------------------------------------

    @staticmethod
    def file(
        data: bytes,
        *,
        honour_range: bool = True,
        cut_after: int | None = None,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> Responder:
        """Serve data (206 for ``Range: bytes=N-`` if honour_range); cut_after: drop the
        connection after that many body bytes although Content-Length promised more;
        headers: extra response headers (e.g. Content-Disposition)."""

        def respond(handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
            if honour_range and match:
                start = int(match.group(1))
                if start >= len(data):
                    handler.send_response(416)
                    handler.send_header("Content-Range", f"bytes */{len(data)}")
                    handler.send_header("Content-Length", "0")
                    handler.end_headers()
                    return
                handler.send_response(206)
                handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                handler.send_response(200)
            body = data[start:]
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body if cut_after is None else body[:cut_after])
            handler.wfile.flush()
            handler.close_connection = True

        return respond

    @staticmethod
    def status(code: int, body: bytes = b"", content_type: str = "text/plain") -> Responder:
        """Answer with a bare status code and body."""

        def respond(handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
            handler.send_response(code)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        return respond

    @classmethod
    def html(cls, page: str, code: int = 200) -> Responder:
        """Answer with an HTML page."""
        return cls.status(code, page.encode("utf-8"), "text/html; charset=utf-8")


def _make_handler(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                server._dispatch(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (timeout tests); nothing to report

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    return Handler


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    """A scripted local HTTP server on 127.0.0.1; closed after the test."""
    server = LocalHTTPServer()
    try:
        yield server
    finally:
        server.close()


# ---- benchmark specs and miniatures (perl_pipeline.benchmarks.spec / .miniature) ---------------


@pytest.fixture(scope="session")
def benchmark_params() -> dict:
    """conf/base/parameters_benchmarks.yml as loaded (a fresh copy per session)."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_benchmarks.yml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def benchmark_specs(benchmark_params: dict) -> dict:
    """The 15 BenchmarkSpecs of the project configuration, by name (as the pipelines build them)."""
    from perl_pipeline.benchmarks.spec import BenchmarkSpec
    from perl_pipeline.protocols import ALL_BENCHMARKS

    return {name: BenchmarkSpec.from_params(benchmark_params[name]["benchmark"]) for name in ALL_BENCHMARKS}


@pytest.fixture(scope="session")
def miniatures(tmp_path_factory: pytest.TempPathFactory, benchmark_specs: dict) -> tuple:
    """(data_root, {name: miniature spec}) for all 15 benchmarks. Shared: do not modify."""
    from perl_pipeline.toy.miniature import write_miniature

    root = tmp_path_factory.mktemp("miniatures")
    return root, {name: write_miniature(spec, root) for name, spec in benchmark_specs.items()}


@pytest.fixture(autouse=True)
def _paper_grid_only():
    """Each test starts with a registry that sees no run's parameters: a KedroSession of an
    earlier test (the demo's, with its benchmark of your own) must not change the pipelines a
    later test builds with register_pipelines()."""
    from perl_pipeline.pipelines.registry import use_parameters

    use_parameters(None)
    yield
    use_parameters(None)
