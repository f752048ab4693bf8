"""Which ANN library serves ranking's nearest-neighbour candidates: faiss-cpu, hnswlib or usearch.

    python -m tools.bench.ann_choice [--items 100000] [--dim 64] [--queries 2000]

Each builds an inner-product HNSW index over the same random unit vectors (M=16,
ef_construction=100, ef_search=64, one thread, as the service runs it), then answers
top-200 queries one at a time (the service asks once per GetFeed). Reported: build
seconds, query p50/p99 in microseconds, recall@200 against exact search, and whether the
index takes additions and removals in place (a registration or a compliance hold must
not wait for a rebuild).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

K = 200


def _timed_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(search(query))
        times.append((time.perf_counter() - start) * 1e6)
    return times, found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, args.items, args.queries)] + 0.3 * rng.standard_normal(
        (args.queries, args.dim)).astype(np.float32)
    exact = [set(np.argpartition(-(vectors @ q), K)[:K].tolist()) for q in queries]
    ids = np.arange(args.items)

    def report(name: str, build_s: float, times: list[float], found: list[np.ndarray], in_place: str) -> None:
        recall = float(np.mean([len(exact[i] & set(np.asarray(f).tolist())) / K for i, f in enumerate(found)]))
        print(f"{name:8} build {build_s:6.1f} s  query p50 {np.percentile(times, 50):7.0f} us  "
              f"p99 {np.percentile(times, 99):7.0f} us  recall@{K} {recall:.3f}  add/remove in place: {in_place}")

    import faiss  # type: ignore[import-untyped]
    faiss.omp_set_num_threads(1)
    start = time.perf_counter()
    flat = faiss.IndexHNSWFlat(args.dim, 16, faiss.METRIC_INNER_PRODUCT)
    flat.hnsw.efConstruction = 100
    flat.add(vectors)
    build = time.perf_counter() - start
    flat.hnsw.efSearch = max(64, K)
    times, found = _timed_queries(lambda q: flat.search(q[None, :], K)[1][0], queries)
    report("faiss", build, times, found, "add yes, remove no (HNSW)")

    import hnswlib
    start = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=args.dim)
    graph.init_index(max_elements=args.items, M=16, ef_construction=100)
    graph.set_num_threads(1)
    graph.add_items(vectors, ids)
    build = time.perf_counter() - start
    graph.set_ef(max(64, K))
    times, found = _timed_queries(lambda q: graph.knn_query(q, k=K)[0][0], queries)
    report("hnswlib", build, times, found, "yes (mark_deleted, replace_deleted)")

    from usearch.index import Index
    start = time.perf_counter()
    index = Index(ndim=args.dim, metric="ip", connectivity=16, expansion_add=100, expansion_search=max(64, K))
    index.add(ids, vectors, threads=1)
    build = time.perf_counter() - start
    times, found = _timed_queries(lambda q: index.search(q, K, threads=1).keys, queries)
    report("usearch", build, times, found, "yes (add, remove)")


if __name__ == "__main__":
    main()
