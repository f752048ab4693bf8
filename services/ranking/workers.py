"""The Ray adapter of the `Scorer` port: scoring actors, fed by one micro-batcher.

- Local Ray by default (`libs.ray_cluster.connect`), `RAY_ADDRESS` for a cluster.
- `ScoringActor` declares its resources: one CPU, or one GPU when the cluster has any, and
  then scores with torch on that GPU; otherwise numpy (`scoring.py` keeps the two equal).
- Micro-batching: every GetFeed hands its feature rows to `MicroBatcher.score`; whatever
  queued while the previous actor call was in flight goes out as one call (up to `max_rows`),
  so 64 concurrent feeds cost a handful of actor calls, not 64. At most `max_in_flight`
  calls are outstanding (one per actor); callers await their slice, never block the loop.
- Tracing: each actor call carries the W3C context of the first request in its batch and
  the number of requests it serves; the actor continues that trace in a span `ranking.score`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import ray

from libs import ray_cluster
from libs.kit.telemetry import Telemetry, configure_telemetry, extract_carrier, inject_carrier
from services.ranking.scoring import Matrix, Scores, TaskHeads, score_numpy, score_torch

logger = logging.getLogger(__name__)


def scoring_resources() -> dict[str, float]:
    """One GPU when the cluster has GPUs; otherwise no reserved CPU.

    The scorer is a long-lived server that is idle between micro-batches: reserving a CPU for its
    lifetime would take it from ingest's transcodes for good (half of a two-core cluster), so it
    shares the CPUs the node has instead."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    if resources.get("GPU", 0) >= 1:
        return {"num_cpus": 0, "num_gpus": 1}
    return {"num_cpus": 0}


class ScoringActor:
    """Holds the task heads; scores stacked feature rows on the GPU (torch) or CPU (numpy)."""

    def __init__(self, heads: TaskHeads, telemetry_root: str) -> None:
        self._heads = heads
        self._device = "cuda" if ray.get_gpu_ids() else ""
        self._telemetry_root = telemetry_root
        self._telemetry: Telemetry | None = None

    def set_heads(self, heads: TaskHeads) -> None:
        self._heads = heads

    def device(self) -> str:
        return self._device or "cpu (numpy)"

    def score(self, features: Matrix, carrier: dict[str, str], requests: int) -> tuple[Matrix, Matrix]:
        if self._telemetry is None:
            self._telemetry = configure_telemetry("ranking-scorer", data_root=Path(self._telemetry_root))
        with self._telemetry.tracer.start_as_current_span(
                "ranking.score", context=extract_carrier(carrier),
                attributes={"ranking.rows": int(features.shape[0]), "ranking.requests": requests,
                            "ranking.device": self.device()}):
            scores = (score_torch(features, self._heads, device=self._device) if self._device
                      else score_numpy(features, self._heads))
        return scores.predictions, scores.values


_scoring_actor = ray.remote(ScoringActor)


class InProcessScorer:
    """The same numpy scoring in this process, without Ray (LIMELIGHT_RANKING_SCORER=in-process)."""

    def __init__(self, heads: TaskHeads) -> None:
        self._heads = heads

    async def start(self) -> None:
        return None

    async def score(self, features: Matrix) -> Scores:
        return score_numpy(features, self._heads)

    async def close(self) -> None:
        return None


@dataclass
class _Waiting:
    features: Matrix
    carrier: dict[str, str]
    future: asyncio.Future[Scores]


BatchCall = Callable[[Matrix, dict[str, str], int], Awaitable[tuple[Matrix, Matrix]]]


class MicroBatcher:
    """Gathers concurrent score requests into one call each time a call slot is free."""

    def __init__(self, call: BatchCall, *, max_rows: int = 16_384, max_in_flight: int = 1) -> None:
        self._call = call
        self._max_rows = max_rows
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self.calls = 0
        self.requests = 0

    async def score(self, features: Matrix) -> Scores:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="ranking-micro-batcher")
        future: asyncio.Future[Scores] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(features, inject_carrier(), future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self._slots.acquire()
            batch: list[_Waiting] = []
            rows = 0
            while self._waiting and (not batch or rows + len(self._waiting[0].features) <= self._max_rows):
                waiting = self._waiting.pop(0)
                batch.append(waiting)
                rows += len(waiting.features)
            if not self._waiting:
                self._wake.clear()
            if not batch:
                self._slots.release()
                continue
            asyncio.create_task(self._dispatch(batch))

    async def _dispatch(self, batch: list[_Waiting]) -> None:
        try:
            stacked = np.concatenate([w.features for w in batch]) if len(batch) > 1 else batch[0].features
            predictions, values = await self._call(stacked, batch[0].carrier, len(batch))
            self.calls += 1
            self.requests += len(batch)
            start = 0
            for waiting in batch:
                end = start + len(waiting.features)
                if not waiting.future.done():
                    waiting.future.set_result(Scores(predictions[start:end], values[start:end]))
                start = end
        except Exception as error:  # every waiter hears of the failed call
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
        finally:
            self._slots.release()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None


class RayScorer:
    """The `Scorer` the service uses: actors on Ray behind one `MicroBatcher`.

    Connects on `start` (off the event loop: `ray.init` takes seconds); `close` shuts down a
    Ray it started.
    """

    def __init__(self, heads: TaskHeads, *, telemetry_root: Path, actors: int = 1,
                 actor_options: dict[str, Any] | None = None) -> None:
        self._heads = heads
        self._telemetry_root = telemetry_root
        self._actor_count = actors
        self._actor_options = actor_options
        self._actors: list[Any] = []
        self._next = 0
        self._started_ray = False
        self.batcher = MicroBatcher(self._call, max_in_flight=actors)

    async def start(self) -> None:
        self._started_ray = await asyncio.to_thread(ray_cluster.connect)
        options = {**scoring_resources(), **(self._actor_options or {})}
        self._actors = [cast(Any, _scoring_actor).options(**options).remote(self._heads, str(self._telemetry_root))
                        for _ in range(self._actor_count)]
        await asyncio.gather(*(actor.device.remote() for actor in self._actors))

    async def device(self) -> str:
        return str(await self._actors[0].device.remote())

    async def _call(self, features: Matrix, carrier: dict[str, str], requests: int) -> tuple[Matrix, Matrix]:
        actor = self._actors[self._next % len(self._actors)]
        self._next += 1
        predictions, values = await actor.score.remote(features, carrier, requests)
        return predictions, values

    async def score(self, features: Matrix) -> Scores:
        return await self.batcher.score(features)

    async def close(self) -> None:
        await self.batcher.close()
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._actors = []
        if self._started_ray:
            await asyncio.to_thread(ray.shutdown)
            self._started_ray = False
