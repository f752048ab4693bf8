"""The gifts service wired for one process: the ledger runner, the reader, the servicers,
the sweep and the audit shipper. Nothing else lives here.

The use cases run in the runner `runner.build_runner` picks (a ledger process of the
service's own by default); reads run here, on a query-only reader beside it. The sweep
expires overdue pending transfers, releases matured diamonds and ends overdue LIVEs; the
shared audit client ships the ledger's audit outbox to compliance's AuditService (events
wait in the outbox while it is unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from libs.audit.client import AuditClient
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.errors import DomainError
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import HealthReport, ServiceDefinition, ServiceRuntime, package_definition
from libs.privacy.fields import PersonalData
from libs.privacy.remote import personal_data_for
from libs.privacy.servicer import SUBJECT_DATA_ACCESS, SUBJECT_DATA_SERVICE, SubjectDataServicer
from services.gifts.config import GiftsConfig
from services.gifts.data_map import DATA_MAP
from services.gifts.live_signals import LiveSignals
from services.gifts.model.access import NotOwner
from services.gifts.providers import deployment_transaction_ids
from services.gifts.room_servicer import RoomServicer
from services.gifts.room_wiring import RoomParts
from services.gifts.runner import LedgerRunner, build_runner
from services.gifts.servicer import (
    AccountStandingServicer,
    Backend,
    GiftServicer,
    GiftsSubjectData,
    LiveServicer,
    PayoutServicer,
    WalletServicer,
)
from services.gifts.store.outbox import GiftsAuditOutbox
from services.gifts.store.reads import GiftsReader
from services.gifts.usecases.commands import RecordDenial, Sweep
from services.gifts.usecases.context import SYSTEM_ACTOR

logger = logging.getLogger(__name__)

PACKAGE = "limelight.gifts.v1"
LIVE = f"{PACKAGE}.LiveService"
WALLET = f"{PACKAGE}.WalletService"
GIFT = f"{PACKAGE}.GiftService"
PAYOUT = f"{PACKAGE}.PayoutService"
STANDING = f"{PACKAGE}.AccountStandingService"
ROOM = f"{PACKAGE}.RoomService"

OPERATORS = frozenset({Role.ADMIN})
SERVICES_AND_OPERATORS = frozenset({Role.ADMIN, Role.SERVICE})

ACCESS = AccessPolicy(
    public=frozenset({f"/{GIFT}/ListGifts", f"/{WALLET}/ListCoinPacks", f"/{PAYOUT}/GetPayoutPolicy"}),
    roles={
        **method_paths(GIFT, {"ResolveHeldGift": OPERATORS}),
        **method_paths(WALLET, {"ReverseTopUp": SERVICES_AND_OPERATORS}),
        **method_paths(PAYOUT, {"SettlePayout": SERVICES_AND_OPERATORS}),
        **method_paths(STANDING, {"UpdateAccountStanding": OPERATORS}),
        **SUBJECT_DATA_ACCESS,
    },
)


class GiftsService:
    def __init__(self, runtime: ServiceRuntime, *, config: GiftsConfig | None = None,
                 clock: Clock = utc_now, personal: PersonalData | None = None) -> None:
        self.config = config or GiftsConfig.from_environment()
        self.clock = clock
        self.personal = personal or personal_data_for(runtime)
        self.signals = LiveSignals(asyncio.get_running_loop())
        self._runtime = runtime
        self._runner: LedgerRunner | None = None
        self._backend: Backend | None = None
        self._outbox: GiftsAuditOutbox | None = None
        self._audit: AuditClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._report_health: HealthReport | None = None
        self._room_parts: RoomParts | None = None

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "the service has not started"
        return self._backend

    @property
    def room_parts(self) -> RoomParts:
        assert self._room_parts is not None, "the service has not started"
        return self._room_parts

    @property
    def runner(self) -> LedgerRunner:
        return self.backend.runner

    @property
    def reader(self) -> GiftsReader:
        return self.backend.reader

    @property
    def outbox(self) -> GiftsAuditOutbox:
        assert self._outbox is not None, "the service has not started"
        return self._outbox

    def definition(self) -> ServiceDefinition:
        return package_definition(
            PACKAGE,
            {LIVE: LiveServicer(self), WALLET: WalletServicer(self), GIFT: GiftServicer(self),
             PAYOUT: PayoutServicer(self), STANDING: AccountStandingServicer(self),
             SUBJECT_DATA_SERVICE: SubjectDataServicer(DATA_MAP, GiftsSubjectData(self)), ROOM: RoomServicer(self)},
            policy=ACCESS, on_start=self._start, on_stop=self._stop, on_denied=self._record_denial,
            on_serving=self._hear_health_report,
        )

    def _hear_health_report(self, report: HealthReport) -> None:
        self._report_health = report

    async def _ledger_health(self, serving: bool) -> None:
        """The ledger process went or came back: every gifts service writes through it."""
        if self._report_health is not None:
            await self._report_health(serving)

    async def _start(self) -> None:
        root = self._runtime.data_root
        # Opening the writer migrates the database, so the reader opens after it.
        runner = await asyncio.to_thread(build_runner, root, self.config, in_process=self.config.ledger_in_process,
                                         on_lives_touched=self.signals.on_commit, on_commit=self._wake_shipper,
                                         on_health=self._ledger_health)
        await runner.start()
        reader = await asyncio.to_thread(GiftsReader.of_service, root)
        self._outbox = await asyncio.to_thread(GiftsAuditOutbox.of_service, root)
        transaction_ids = await asyncio.to_thread(deployment_transaction_ids, root)
        self._backend = Backend(runner, reader, self.config, self.clock, self.signals, transaction_ids, self.personal)
        self._room_parts = RoomParts(self._runtime, self.config, self.clock, reader, self.signals, self.personal,
                                     root=root)
        self._backend.choose_recipient = self._room_parts.room.gift_recipient
        self._backend.room_subject_data = self._room_parts.room
        self._room_parts.store.add_commit_listener(self._room_parts.wake_shipper)
        await self._room_parts.start()
        self._tasks = [asyncio.create_task(self._every(self.config.sweep_interval.total_seconds(), self._sweep),
                                           name="gifts-sweep")]
        if self.config.ship_audit:
            # The shared client ships the ledger database's outbox; its own spool stays empty.
            self._audit = AuditClient.for_runtime(self._runtime, outbox=self._outbox)
            await self._audit.start()

    async def _stop(self) -> None:
        if self._room_parts is not None:
            await self._room_parts.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._audit is not None:
            await self._audit.stop()
        if self._backend is not None:
            await self._backend.runner.stop()
            await asyncio.to_thread(self._backend.reader.close)
        if self._outbox is not None:
            await asyncio.to_thread(self._outbox.close)

    def _wake_shipper(self) -> None:
        """After a commit (on another thread): the shipper need not wait for its next poll."""
        if self._audit is not None:
            self._audit.wake_shipper()

    async def _sweep(self) -> None:
        await self.backend.run(Sweep(str(uuid.uuid4())))

    @staticmethod
    async def _every(interval: float, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:  # one failed pass must not end the loop; the next one retries
                logger.exception("gifts background step failed")

    async def _record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        """Refusals the ledger did not see (no token, a bad one, a missing role, another's wallet)
        are audited like the rest; the kit reports the ledger's own PERMISSION_DENIED too.

        A handler's ownership check names the resource it refused; the kit's own checks run
        before the request is read, so for those the method is all there is to name."""
        if error in self.backend.audited_refusals or (
                self._room_parts is not None and error in self._room_parts.room.audited_refusals):
            return
        resource = error.resource_name if isinstance(error, NotOwner) else method
        await self.backend.run(RecordDenial(method.rsplit("/", 1)[-1], principal.subject if principal else SYSTEM_ACTOR,
                                            resource, error.reason, dict(error.metadata)))


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return GiftsService(runtime).definition()

