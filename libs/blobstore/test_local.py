from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.blobstore import LocalBlobStore, open_blob_store, validate_key
from libs.errors import FailedPrecondition, InvalidArgument, NotFound

# Keys an attacker or a bug might produce; each must be refused before touching the disk.
HOSTILE_KEYS = [
    "", "/etc/passwd", "../outside", "a/../../outside", "a/./b", "a//b", "a/", ".",
    "..", "a\\..\\b", "a\x00b", "a b", "caf\u00e9", "a?b", "a#b", "%2e%2e/x", "x" * 1025,
]


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_put_then_get_returns_the_same_bytes(store: LocalBlobStore) -> None:
    info = store.put("videos/v1/source", b"hello")
    assert info.size == 5
    assert store.get("videos/v1/source") == b"hello"
    assert store.exists("videos/v1/source")
    assert store.stat("videos/v1/source").size == 5


def test_put_replaces_an_existing_object_whole(store: LocalBlobStore) -> None:
    store.put("k", b"old content that is longer")
    store.put("k", b"new")
    assert store.get("k") == b"new"


def test_put_stream_writes_every_chunk(store: LocalBlobStore) -> None:
    info = store.put_stream("big", (bytes([i]) * 1000 for i in range(10)))
    assert info.size == 10_000
    assert store.get("big")[4000:4002] == b"\x04\x04"


def test_failed_stream_leaves_neither_object_nor_temporary_file(store: LocalBlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.put_stream("half", chunks())
    assert not store.exists("half")
    assert list((store.root / "tmp").iterdir()) == []


def test_stream_returns_the_requested_byte_range(store: LocalBlobStore) -> None:
    store.put("r", bytes(range(100)))
    assert b"".join(store.stream("r", start=10, end=20, chunk_size=3)) == bytes(range(10, 20))
    assert b"".join(store.stream("r", start=95)) == bytes(range(95, 100))


def test_missing_objects_are_not_found(store: LocalBlobStore) -> None:
    for read in (store.get, store.stat, store.open_read, store.stream):
        with pytest.raises(NotFound) as raised:
            read("nope/missing")
        assert raised.value.reason == "BLOB_NOT_FOUND"
    assert not store.exists("nope/missing")


def test_list_by_prefix_is_sorted_and_respects_partial_segments(store: LocalBlobStore) -> None:
    for key in ["videos/a/2.ts", "videos/a/1.ts", "videos/ab/x", "videos/b/1.ts", "other"]:
        store.put(key, b"x")
    assert [i.key for i in store.list("videos/a/")] == ["videos/a/1.ts", "videos/a/2.ts"]
    assert [i.key for i in store.list("videos/a")] == ["videos/a/1.ts", "videos/a/2.ts", "videos/ab/x"]
    assert len(list(store.list())) == 5
    assert list(store.list("missing/")) == []


def test_delete_is_idempotent_and_frees_the_prefix_for_a_key(store: LocalBlobStore) -> None:
    store.put("a/b", b"x")
    store.delete("a/b")
    store.delete("a/b")
    assert not store.exists("a/b")
    store.put("a", b"now a key")
    assert store.get("a") == b"now a key"


def test_a_key_cannot_shadow_an_existing_prefix_or_object(store: LocalBlobStore) -> None:
    store.put("a/b", b"x")
    with pytest.raises(FailedPrecondition):
        store.put("a", b"y")
    store.put("c", b"x")
    with pytest.raises(FailedPrecondition):
        store.put("c/d", b"y")
    assert store.get("a/b") == b"x" and store.get("c") == b"x"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused(store: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        store.put(key, b"x")
    assert raised.value.reason == "INVALID_BLOB_KEY"
    assert not (store.root.parent / "outside").exists()


@given(st.text(max_size=40))
def test_every_accepted_key_stays_inside_the_root(key: str) -> None:
    root = Path("/srv/blobs/objects")
    try:
        validate_key(key)
    except InvalidArgument:
        return
    assert (root / key).resolve().is_relative_to(root)


def test_concurrent_writers_never_expose_a_torn_object(store: LocalBlobStore) -> None:
    payloads = [bytes([n]) * 200_000 for n in range(4)]
    seen: list[bytes] = []

    def write(payload: bytes) -> None:
        for _ in range(5):
            store.put("contended", payload)
            seen.append(store.get("contended"))

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(content in payloads for content in seen)


def test_the_url_reopens_the_same_store(store: LocalBlobStore) -> None:
    store.put("k", b"v")
    assert open_blob_store(store.url).get("k") == b"v"
    with pytest.raises(InvalidArgument):
        open_blob_store("s3://bucket/prefix")
