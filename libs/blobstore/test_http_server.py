from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libs.blobstore import LocalBlobStore
from libs.blobstore.http_server import BlobHTTPServer

Connect = Callable[[], http.client.HTTPConnection]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Connect]:
    store = LocalBlobStore(tmp_path)
    store.put("v/master.m3u8", b"#EXTM3U\n")
    store.put("v/720x1280/seg_00000.ts", bytes(range(256)))
    with BlobHTTPServer(store) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        yield lambda: http.client.HTTPConnection(host, int(port), timeout=5)


def fetch(connect: Connect, path: str, method: str = "GET",
          headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    connection = connect()
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_playlists_and_segments_carry_hls_mime_types(served: Connect) -> None:
    response, body = fetch(served, "/v/master.m3u8")
    assert response.status == 200 and body == b"#EXTM3U\n"
    assert response.getheader("Content-Type") == "application/vnd.apple.mpegurl"
    response, body = fetch(served, "/v/720x1280/seg_00000.ts")
    assert response.getheader("Content-Type") == "video/mp2t" and len(body) == 256
    assert response.getheader("Access-Control-Allow-Origin") == "*"


def test_byte_ranges_return_partial_content(served: Connect) -> None:
    response, body = fetch(served, "/v/720x1280/seg_00000.ts", headers={"Range": "bytes=10-19"})
    assert response.status == 206 and body == bytes(range(10, 20))
    assert response.getheader("Content-Range") == "bytes 10-19/256"
    response, body = fetch(served, "/v/720x1280/seg_00000.ts", headers={"Range": "bytes=-6"})
    assert body == bytes(range(250, 256))
    response, _ = fetch(served, "/v/720x1280/seg_00000.ts", headers={"Range": "bytes=300-"})
    assert response.status == 416


def test_head_sends_headers_without_a_body(served: Connect) -> None:
    response, body = fetch(served, "/v/master.m3u8", method="HEAD")
    assert response.status == 200 and body == b""
    assert response.getheader("Content-Length") == "8"


@pytest.mark.parametrize("path", ["/v/missing.ts", "/../etc/passwd", "/v/%2e%2e/%2e%2e/x", "/"])
def test_unknown_or_escaping_paths_are_not_found(served: Connect, path: str) -> None:
    response, _ = fetch(served, path)
    assert response.status == 404
