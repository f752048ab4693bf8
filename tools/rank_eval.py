"""Offline evaluation of the feed ranker against popularity, tuned implicit ALS and BPR, in one run.

    limelight rank eval [--interactions FILE.csv] [--out results.json] [--quick]

Data: MovieLens-100k from the installed `recbole==1.2.1` wheel (`recbole/dataset_example/ml-100k/`,
read in place, never copied into the repository), or any CSV with a header naming
`user,item,timestamp[,weight]` (one interaction per row; timestamp in any increasing number,
e.g. epoch seconds; weight optional, default 1; for MovieLens the weight is the rating).

Split (temporal, per user): each user's interactions sorted by time; the last 10% (at least
one) are the test set, the 10% before them the validation set, the rest the training set.
Tuning fits on train and scores validation; the final fit is on train + validation and
scores test. Items a user interacted with in the fitted data are never recommended to them.

Metrics, averaged over users with a test interaction: NDCG@10 (binary relevance), Recall@50
(hits in the top 50 over the user's test items) and catalogue coverage (distinct items in
all top-10 lists over the catalogue).

Models:
- popularity: interactions in the fitted data;
- ALS (`implicit`), grid over factors, regularisation and alpha on validation (printed);
- BPR (`implicit`), a small grid over factors and learning rate;
- ours: the service's own path (`services.ranking`): each interaction becomes a WATCH to the
  end (and a LIKE for weight >= 4) applied through `Catalogue.apply_signal` in time order,
  the EASE^R factors trained by `train_item_model` and installed with `install_model`, then
  `Catalogue.feature_rows` and the multi-task scorer `score_numpy` rank every candidate, as
  GetFeed does before its policy step. The rank, λ, the engagement decay and the weight of the
  video's own statistics on personalised pages (`CatalogueSettings.item_prior`) are tuned on validation; the service's own
  defaults are scored beside it ("ours (service defaults)").
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.ranking.catalogue import Catalogue, CatalogueSettings
from services.ranking.embeddings import train_item_model
from services.ranking.model import Candidate, SignalKind, VideoRegistration
from services.ranking.policy import ExposurePolicy
from services.ranking.scoring import TaskHeads, score_numpy

Scores = npt.NDArray[np.float32]
K_NDCG = 10
K_RECALL = 50


@dataclass(frozen=True)
class Interactions:
    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float32]
    n_users: int
    n_items: int


def movielens_path() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("recbole is not installed: pip install --no-deps recbole==1.2.1 (tools/setup.sh does)")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k" / "ml-100k.inter"


def read_interactions(path: Path) -> Interactions:
    """A CSV with header user,item,timestamp[,weight], or a RecBole `.inter` file (tab-separated)."""
    rows: list[tuple[str, str, float, float]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        dialect = "excel-tab" if path.suffix == ".inter" else "excel"
        reader = csv.reader(handle, dialect=dialect)
        header = [name.split(":")[0].strip().lower() for name in next(reader)]
        column = {name: header.index(name) for name in header}
        user_at = column.get("user", column.get("user_id"))
        item_at = column.get("item", column.get("item_id"))
        time_at = column.get("timestamp")
        weight_at = column.get("weight", column.get("rating"))
        if user_at is None or item_at is None or time_at is None:
            raise SystemExit(f"{path}: the header must name user, item and timestamp (and optionally weight)")
        for record in reader:
            if record:
                weight = float(record[weight_at]) if weight_at is not None else 1.0
                rows.append((record[user_at], record[item_at], float(record[time_at]), weight))
    users = {name: i for i, name in enumerate(sorted({r[0] for r in rows}))}
    items = {name: i for i, name in enumerate(sorted({r[1] for r in rows}))}
    return Interactions(np.array([users[r[0]] for r in rows]), np.array([items[r[1]] for r in rows]),
                        np.array([r[2] for r in rows]), np.array([r[3] for r in rows], np.float32),
                        len(users), len(items))


def temporal_split(data: Interactions) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index arrays (train, validation, test): per user, the last 10% test, the 10% before validation."""
    order = np.lexsort((data.times, data.users))
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    boundaries = np.flatnonzero(np.diff(data.users[order])) + 1
    for group in np.split(order, boundaries):
        n = len(group)
        n_test = max(1, round(0.1 * n)) if n >= 3 else 0
        n_valid = max(1, round(0.1 * n)) if n >= 3 else 0
        train.extend(group[:n - n_test - n_valid])
        validation.extend(group[n - n_test - n_valid:n - n_test])
        test.extend(group[n - n_test:])
    return np.array(train, np.int64), np.array(validation, np.int64), np.array(test, np.int64)


def evaluate(scores: Scores, fitted: Interactions, target: Interactions, rows: npt.NDArray[np.int64],
             known: npt.NDArray[np.int64]) -> dict[str, float]:
    """NDCG@10, Recall@50 and top-10 coverage of `scores` (users x items) on `target[rows]`."""
    scores = scores.copy()
    scores[fitted.users[known], fitted.items[known]] = -np.inf
    relevant: dict[int, set[int]] = {}
    for index in rows:
        relevant.setdefault(int(target.users[index]), set()).add(int(target.items[index]))
    ndcg, recall, shown = [], [], set()
    discounts = 1.0 / np.log2(np.arange(2, K_RECALL + 3))
    depth = min(K_RECALL, fitted.n_items - 1)
    for user, items in relevant.items():
        top = np.argpartition(-scores[user], depth)[:depth]
        top = top[np.argsort(-scores[user][top])]
        hits = np.array([item in items for item in top.tolist()])
        ideal = discounts[:min(len(items), K_NDCG)].sum()
        ndcg.append(float((hits[:K_NDCG] * discounts[:K_NDCG]).sum() / ideal))
        recall.append(float(hits.sum() / len(items)))
        shown.update(top[:K_NDCG].tolist())
    return {"ndcg@10": float(np.mean(ndcg)), "recall@50": float(np.mean(recall)),
            "coverage": len(shown) / fitted.n_items}


def _csr(data: Interactions, rows: npt.NDArray[np.int64], *, alpha: float = 1.0) -> object:
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    values = np.ones(len(rows), np.float32) * alpha
    matrix = csr_matrix((values, (data.users[rows], data.items[rows])), shape=(data.n_users, data.n_items))
    matrix.sum_duplicates()
    return matrix


def popularity_scores(data: Interactions, rows: npt.NDArray[np.int64]) -> Scores:
    counts = np.bincount(data.items[rows], minlength=data.n_items).astype(np.float32)
    return np.tile(counts, (data.n_users, 1))


def als_scores(data: Interactions, rows: npt.NDArray[np.int64], *, factors: int, regularization: float,
               alpha: float) -> Scores:
    from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha, iterations=15,
                                    random_state=7, num_threads=2)
    model.fit(_csr(data, rows), show_progress=False)
    return np.asarray(model.user_factors @ model.item_factors.T, np.float32)


def bpr_scores(data: Interactions, rows: npt.NDArray[np.int64], *, factors: int, learning_rate: float) -> Scores:
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # type: ignore[import-untyped]

    model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate, regularization=0.01,
                                        iterations=200, random_state=7, num_threads=2)
    model.fit(_csr(data, rows), show_progress=False)
    return np.asarray(model.user_factors @ model.item_factors.T, np.float32)


def ranker_scores(data: Interactions, rows: npt.NDArray[np.int64], *, dim: int, l2: float,
                  decay: float = 0.99, item_prior: float = 0.0) -> Scores:
    """The service's own catalogue, signals, trainer and scorer (see the module docstring)."""
    settings = CatalogueSettings(dim=dim, engagement_decay=decay, item_prior=item_prior, history_per_viewer=1_000)
    catalogue = Catalogue(settings, _NoIndex(), ExposurePolicy())
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    for item in range(data.n_items):
        catalogue.put(Candidate(VideoRegistration(f"i{item}", "v", dt.timedelta(seconds=60), (), (), False, "", "",
                                                  start), start))
    ordered = rows[np.argsort(data.times[rows], kind="stable")]
    for index in ordered.tolist():
        viewer, key = f"u{data.users[index]}", f"i{data.items[index]}/v"
        catalogue.count_impressions([int(data.items[index])])
        catalogue.apply_signal(viewer, key, SignalKind.WATCH, 1.0, 60.0)
        if data.weights[index] >= 4:
            catalogue.apply_signal(viewer, key, SignalKind.LIKE, 1.0, 0.0)
    # As `Ranking.training_data` weighs them: a full watch 0.7, with a like capped at 1.
    matrix = np.zeros((data.n_users, data.n_items), np.float32)
    matrix[data.users[rows], data.items[rows]] = np.where(data.weights[rows] >= 4, 1.0, 0.7)
    catalogue.install_model(train_item_model(matrix, [f"i{i}/v" for i in range(data.n_items)], dim=dim, l2=l2))
    heads = TaskHeads()
    all_rows = np.arange(data.n_items, dtype=np.int64)
    scores = np.zeros((data.n_users, data.n_items), np.float32)
    now_s = start.timestamp()
    for user in range(data.n_users):
        features = catalogue.feature_rows(f"u{user}", all_rows, region="", now_s=now_s, personal=True)
        scores[user] = score_numpy(features, heads).values
    return scores


class _NoIndex:
    """The eval scores every item, so it needs no nearest-neighbour index."""

    def upsert(self, rows: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        return None

    def remove(self, row: int) -> None:
        return None

    def search(self, vector: npt.NDArray[np.float32], count: int) -> npt.NDArray[np.int64]:
        return np.zeros(0, np.int64)


@dataclass(frozen=True)
class Grid:
    als: Sequence[dict[str, float]]
    bpr: Sequence[dict[str, float]]
    ours: Sequence[dict[str, float]]


FULL_GRID = Grid(
    als=[{"factors": f, "regularization": r, "alpha": a}
         for f in (32, 64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0, 40.0)],
    bpr=[{"factors": f, "learning_rate": lr} for f in (32, 64) for lr in (0.01, 0.05)],
    ours=[{"dim": d, "l2": 100.0, "decay": 0.99, "item_prior": prior} for d in (64, 512) for prior in (0.0, 0.25, 1.0)],
)
QUICK_GRID = Grid(als=[{"factors": 16, "regularization": 0.1, "alpha": 10.0}],
                  bpr=[{"factors": 16, "learning_rate": 0.05}], ours=[{"dim": 16, "l2": 50.0}])
# What the service runs (RankingConfig's defaults), scored beside the tuned setting.
SERVICE_SETTING = {"dim": 64, "l2": 100.0, "decay": 0.99, "item_prior": 0.0}


def _tune(name: str, fit: Callable[..., Scores], grid: Sequence[dict[str, float]], data: Interactions,
          train: npt.NDArray[np.int64], validation: npt.NDArray[np.int64],
          log: Callable[[str], None]) -> tuple[dict[str, float], list[dict[str, object]]]:
    tried: list[dict[str, object]] = []
    for parameters in grid:
        metrics = evaluate(fit(data, train, **parameters), data, data, validation, train)
        tried.append({"parameters": parameters, "validation": metrics})
        log(f"  {name:10} {json.dumps(parameters):60} validation NDCG@10 {metrics['ndcg@10']:.4f}")
    best = max(tried, key=lambda t: float(t["validation"]["ndcg@10"]))  # type: ignore[index]
    return best["parameters"], tried  # type: ignore[return-value]


def run(path: Path, *, grid: Grid = FULL_GRID, log: Callable[[str], None] = print) -> dict[str, object]:
    started = time.perf_counter()
    data = read_interactions(path)
    train, validation, test = temporal_split(data)
    fitted = np.concatenate([train, validation])
    log(f"{path.name}: {data.n_users} users, {data.n_items} items, {len(data.users)} interactions; "
        f"train {len(train)}, validation {len(validation)}, test {len(test)}")
    log("tuning on the validation split:")
    models: dict[str, tuple[Callable[..., Scores], dict[str, float]]] = {
        "popularity": (popularity_scores, {}), "ours (service defaults)": (ranker_scores, SERVICE_SETTING)}
    grids: dict[str, list[dict[str, object]]] = {}
    for name, fit, candidates in (("ALS", als_scores, grid.als), ("BPR", bpr_scores, grid.bpr),
                                  ("ours", ranker_scores, grid.ours)):
        best, tried = _tune(name, fit, candidates, data, train, validation, log)
        models[name] = (fit, best)
        grids[name] = tried
    results: dict[str, dict[str, object]] = {}
    for name, (fit, parameters) in models.items():
        metrics = evaluate(fit(data, fitted, **parameters), data, data, test, fitted)
        results[name] = {"parameters": parameters, "test": metrics}
    als_ndcg = float(results["ALS"]["test"]["ndcg@10"])  # type: ignore[index]
    ours_ndcg = float(results["ours"]["test"]["ndcg@10"])  # type: ignore[index]
    log("")
    log(f"{'model':24} {'NDCG@10':>8} {'Recall@50':>10} {'coverage':>9}  parameters (tuned on validation)")
    for name, result in results.items():
        m = result["test"]
        log(f"{name:24} {m['ndcg@10']:8.4f} {m['recall@50']:10.4f} {m['coverage']:9.3f}  "  # type: ignore[index]
            f"{json.dumps(result['parameters'])}")
    ratio = ours_ndcg / als_ndcg if als_ndcg else math.inf
    log(f"ours / tuned ALS NDCG@10: {ratio:.3f} (goal >= 1.05); {time.perf_counter() - started:.0f} s")
    return {"data": str(path), "users": data.n_users, "items": data.n_items, "interactions": int(len(data.users)),
            "split": {"train": int(len(train)), "validation": int(len(validation)), "test": int(len(test))},
            "results": results, "grids": grids, "ours_over_als": ratio}
