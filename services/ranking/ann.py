"""The nearest-neighbour index of the feed: usearch HNSW over inner product.

Why usearch (measured with `python -m tools.bench.ann_choice`, README "Ranking"): it answers
as fast as faiss and hnswlib at the same recall, takes additions and removals in place (a
registration or a compliance hold never waits for a rebuild; faiss's HNSW cannot remove), and
ships wheels, where hnswlib is compiled from source on every fresh machine.
"""

from __future__ import annotations

import threading

import numpy as np
from usearch.index import Index

from services.ranking.catalogue import Matrix, Rows


class UsearchIndex:
    """Satisfies `catalogue.NeighbourIndex`; safe to search while another thread writes."""

    def __init__(self, dim: int, *, connectivity: int = 16, expansion_add: int = 100,
                 expansion_search: int = 128) -> None:
        self._index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=connectivity,
                            expansion_add=expansion_add, expansion_search=expansion_search)
        self._lock = threading.Lock()

    def upsert(self, rows: Rows, vectors: Matrix, *, threads: int = 1) -> None:
        """Add or replace; `threads=0` uses every core (a bulk build off the event loop)."""
        keys = np.asarray(rows, dtype=np.uint64)
        with self._lock:
            if len(self._index):
                present = np.array([key in self._index for key in keys.tolist()], dtype=bool)
                if present.any():
                    self._index.remove(keys[present])
            self._index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32), threads=threads)

    def remove(self, row: int) -> None:
        with self._lock:
            if row in self._index:
                self._index.remove(row)

    def search(self, vector: Matrix, count: int) -> Rows:
        with self._lock:
            if len(self._index) == 0:
                return np.zeros(0, np.int64)
            found = self._index.search(np.ascontiguousarray(vector, dtype=np.float32), count, threads=1)
        return np.asarray(found.keys, dtype=np.int64)
