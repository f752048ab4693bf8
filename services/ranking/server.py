"""Ranking wired for one process: the store, the catalogue rebuilt from it, the scorer on Ray,
consent from compliance, the retraining loop and the four servicers. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Protocol

import numpy as np
from limelight.compliance.v1 import consent_pb2_grpc

from libs.auth.principal import Role
from libs.clock import Clock, utc_now
from libs.consent.cache import ConsentCache
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.privacy.remote import personal_data_for
from libs.privacy.servicer import SUBJECT_DATA_ACCESS, SUBJECT_DATA_SERVICE, SubjectDataServicer
from services.ranking.ann import UsearchIndex
from services.ranking.catalogue import Catalogue
from services.ranking.clients import ComplianceConsent, NoConsent
from services.ranking.config import RankingConfig
from services.ranking.data_map import DATA_MAP
from services.ranking.engagement import BotGuard
from services.ranking.scoring import TaskHeads
from services.ranking.servicer import CandidateServicer, FeedServicer, FollowServicer, SignalServicer
from services.ranking.store import RankingStore
from services.ranking.usecases import ConsentChecker, Ranking, Scorer
from services.ranking.workers import InProcessScorer, RayScorer

logger = logging.getLogger(__name__)

PACKAGE = "limelight.ranking.v1"
CANDIDATES = f"{PACKAGE}.CandidateService"
SIGNALS = f"{PACKAGE}.SignalService"
FOLLOWS = f"{PACKAGE}.FollowService"
FEED = f"{PACKAGE}.FeedService"

SERVICES_AND_ADMINS = frozenset({Role.SERVICE, Role.ADMIN})
STAFF = frozenset({Role.SERVICE, Role.ADMIN, Role.COMPLIANCE_OFFICER})

ACCESS = AccessPolicy(
    public=frozenset({f"/{FEED}/GetRankingParameters"}),
    roles={
        # Ingest registers what it publishes; compliance officers and services take videos down.
        **method_paths(CANDIDATES, {"RegisterVideo": SERVICES_AND_ADMINS, "UnregisterVideo": STAFF,
                                    "GetCandidate": STAFF}),
        **SUBJECT_DATA_ACCESS,
    },
)


class StartableScorer(Scorer, Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


class RankingService:
    def __init__(self, runtime: ServiceRuntime, *, config: RankingConfig | None = None,
                 clock: Clock = utc_now) -> None:
        self.config = config or RankingConfig.from_environment()
        self._runtime = runtime
        self._clock = clock
        self.heads = TaskHeads()
        self.store = RankingStore.open(runtime.data_root)
        settings = self.config.catalogue
        self.catalogue = Catalogue(settings, UsearchIndex(2 * settings.dim), self.config.feed.exposure)
        loaded = self.store.load()
        for candidate in loaded.candidates:
            self.catalogue.put(candidate, index=False)  # indexed once, after the first training
        for follow in loaded.follows:
            self.catalogue.follow(follow)
        self.catalogue.flagged = set(loaded.flagged)
        for row in self.store.history():
            self.catalogue.replay(row.viewer, row.target, row.kind, row.watch_seconds)
        self.scorer: StartableScorer = (RayScorer(self.heads, telemetry_root=runtime.data_root,
                                                  actors=self.config.scoring_actors)
                                        if self.config.scorer == "ray" else InProcessScorer(self.heads))
        self._consent_cache: ConsentCache | None = None
        consent: ConsentChecker = NoConsent()
        if self.config.consent == "compliance":
            self._consent_cache = ConsentCache(runtime.clients.stub("compliance", consent_pb2_grpc.ConsentServiceStub))
            consent = ComplianceConsent(self._consent_cache)
        self.ranking = Ranking(
            store=self.store, catalogue=self.catalogue, scorer=self.scorer, consent=consent,
            sealer=personal_data_for(runtime), bots=BotGuard(self.config.bots, loaded.flagged), heads=self.heads,
            policy=self.config.feed, clock=clock, new_id=lambda: uuid.uuid4().hex, settings=loaded.settings,
            live=loaded.live)
        self._tasks: list[asyncio.Task[None]] = []

    def definition(self) -> ServiceDefinition:
        return package_definition(
            PACKAGE,
            {CANDIDATES: CandidateServicer(self.ranking), SIGNALS: SignalServicer(self.ranking),
             FOLLOWS: FollowServicer(self.ranking), FEED: FeedServicer(self.ranking, self._clock),
             SUBJECT_DATA_SERVICE: SubjectDataServicer(DATA_MAP, self.ranking)},
            policy=ACCESS, on_start=self._start, on_stop=self._stop)

    async def retrain(self) -> None:
        """The batch half of learning: factorise the engagement log, swap the factors in."""
        training = self.config.training
        history = await asyncio.to_thread(lambda: [(r.viewer, r.target, r.kind, r.watch_seconds)
                                                   for r in self.store.history()])
        matrix, items = self.ranking.training_data(history, training.max_items)
        model = await asyncio.to_thread(Ranking.train, matrix, items, dim=self.config.catalogue.dim, l2=training.l2)
        self.ranking.install(model)
        count, rows, vectors = self.catalogue.index_snapshot()
        index = await asyncio.to_thread(self._new_index, rows, vectors)
        self.catalogue.swap_index(index, count, rows)

    def _new_index(self, rows: np.ndarray, vectors: np.ndarray) -> UsearchIndex:
        index = UsearchIndex(2 * self.config.catalogue.dim)
        if rows.size:
            index.upsert(rows, vectors, threads=0)
        return index

    async def _start(self) -> None:
        if self._consent_cache is not None:
            await self._consent_cache.start()
        await self.scorer.start()
        await self.retrain()
        if self.config.training.retrain_seconds > 0:
            self._tasks.append(asyncio.create_task(self._retrain_forever(), name="ranking-retrain"))

    async def _retrain_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.training.retrain_seconds)
            try:
                await self.retrain()
            except Exception:  # a failed pass keeps the current factors; the next one retries
                logger.exception("ranking retraining failed")

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consent_cache is not None:
            await self._consent_cache.stop()
        await self.scorer.close()
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime, config: RankingConfig | None = None) -> ServiceDefinition:
    return RankingService(runtime, config=config).definition()
