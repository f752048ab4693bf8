"""Serve a blob store over HTTP for local playback of HLS output (loopback only).

`GET /<key>` and `HEAD /<key>` return the object with the MIME type players expect
(`application/vnd.apple.mpegurl` for playlists, `video/mp2t` for TS segments, ...),
single `Range: bytes=a-b` requests (Safari asks for them), and a permissive CORS header
so a browser player on another local origin (hls.js) can fetch the segments.

    python -m libs.blobstore.http_server --root .data/ingest/blobs --port 8080
    # then open http://127.0.0.1:8080/videos/<video>/hls/<job>/master.m3u8 in a player
"""

from __future__ import annotations

import argparse
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

from libs.blobstore.interface import BlobStore
from libs.blobstore.local import LocalBlobStore
from libs.errors import DomainError

LOOPBACK = "127.0.0.1"

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".json": "application/json",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def content_type_for(key: str) -> str:
    suffix = key[key.rfind("."):].lower() if "." in key.rsplit("/", 1)[-1] else ""
    return CONTENT_TYPES.get(suffix, "application/octet-stream")


class BlobHTTPServer:
    """A threaded HTTP server over a `BlobStore`; `start()` runs it in a daemon thread."""

    def __init__(self, store: BlobStore, *, port: int = 0) -> None:
        handler = type("BoundBlobHandler", (_BlobRequestHandler,), {"store": store})
        self._server = ThreadingHTTPServer((LOOPBACK, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="blob-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def start(self) -> BlobHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> BlobHTTPServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _BlobRequestHandler(BaseHTTPRequestHandler):
    store: BlobStore
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a player fetches hundreds of segments."""

    def _respond(self, *, send_body: bool) -> None:
        key = unquote(urlparse(self.path).path).lstrip("/")
        try:
            size = self.store.stat(key).size
        except DomainError:
            self._send_empty(HTTPStatus.NOT_FOUND)
            return
        start, end = 0, size
        status = HTTPStatus.OK
        requested = self.headers.get("Range")
        if requested:
            byte_range = _parse_range(requested, size)
            if byte_range is None:
                self._send_empty(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
                return
            start, end = byte_range
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", content_type_for(key))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Access-Control-Allow-Origin", "*")
        if status is HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if send_body:
            for chunk in self.store.stream(key, start=start, end=end):
                self.wfile.write(chunk)

    def _send_empty(self, status: HTTPStatus, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range as a half-open `(start, end)`, or None when unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    return (start, end) if start < end else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="blob store root (default: the ingest store)")
    parser.add_argument("--port", type=int, default=8080)
    arguments = parser.parse_args()
    store = LocalBlobStore(arguments.root) if arguments.root else LocalBlobStore.for_service("ingest")
    server = BlobHTTPServer(store, port=arguments.port)
    print(f"serving {store.root} at {server.base_url}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
