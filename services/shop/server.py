"""The shop wired for one process: the store, the embedded payment provider, the clients of
gifts, compliance and affiliate, the servicers, the sweep, the delivery shipper and the audit
shipper. Nothing else lives here.

At start, before the server takes a call, the sweep compensates every checkout a crash left
half done (an order CREATED: its authorisation is voided and its stock released) and every
order whose reservation lapsed; afterwards it runs every `sweep_interval`. Over PostgreSQL,
with replicas sharing the store, a CREATED order is left alone at start until it is older than
the checkout grace, as in every later sweep: another replica may still be finishing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from libs.audit.client import AuditClient
from libs.auth.principal import Role
from libs.clock import Clock, utc_now
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.privacy.fields import PersonalData
from libs.privacy.remote import personal_data_for
from libs.privacy.servicer import SUBJECT_DATA_ACCESS, SUBJECT_DATA_SERVICE, SubjectDataServicer
from services.shop.affiliate import AffiliateClient
from services.shop.clients import AdRepositoryClient, ComplianceDisclosure, GiftsLiveSessions
from services.shop.config import ShopConfig
from services.shop.data_map import DATA_MAP
from services.shop.deliveries import DeliveryShipper
from services.shop.payments import LocalPaymentProvider
from services.shop.servicer import (
    CatalogServicer,
    InventoryServicer,
    KitAuditEvents,
    LivePinServicer,
    OrderServicer,
    ShopSubjectData,
)
from services.shop.store import ShopStore
from services.shop.usecases import pins
from services.shop.usecases import sweep as sweeping
from services.shop.usecases.ports import ShopContext

logger = logging.getLogger(__name__)

PACKAGE = "limelight.shop.v1"
CATALOG = f"{PACKAGE}.CatalogService"
INVENTORY = f"{PACKAGE}.InventoryService"
PINS = f"{PACKAGE}.LivePinService"
ORDERS = f"{PACKAGE}.OrderService"

USERS = frozenset({Role.VIEWER, Role.CREATOR, Role.MERCHANT})
MERCHANTS = frozenset({Role.MERCHANT})
MERCHANTS_AND_STAFF = frozenset({Role.MERCHANT, Role.SERVICE, Role.ADMIN})
BUYERS_AND_SERVICES = USERS | {Role.SERVICE}

ACCESS = AccessPolicy(roles={
    **method_paths(CATALOG, {"CreateProduct": MERCHANTS, "UpdateProduct": MERCHANTS}),
    **method_paths(INVENTORY, {"AdjustInventory": MERCHANTS, "GetInventory": MERCHANTS_AND_STAFF,
                               "ReserveStock": BUYERS_AND_SERVICES}),
    **method_paths(PINS, {"PinProduct": frozenset({Role.CREATOR}), "UnpinProduct": frozenset({Role.CREATOR})}),
    **method_paths(ORDERS, {"Checkout": BUYERS_AND_SERVICES, "FulfillOrder": MERCHANTS,
                            "RefundOrder": MERCHANTS_AND_STAFF,
                            "RecordParentalConsent": frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER})}),
    **SUBJECT_DATA_ACCESS,
})


class ShopService:
    def __init__(self, runtime: ServiceRuntime, *, config: ShopConfig | None = None, clock: Clock = utc_now,
                 personal: PersonalData | None = None) -> None:
        self.config = config or ShopConfig.from_environment()
        self.clock = clock
        self._runtime = runtime
        self._personal = personal
        self._store: ShopStore | None = None
        self._payments: LocalPaymentProvider | None = None
        self._audit: AuditClient | None = None
        self._shipper: DeliveryShipper | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.context: ShopContext | None = None

    @property
    def store(self) -> ShopStore:
        assert self._store is not None, "the service has not started"
        return self._store

    @property
    def shipper(self) -> DeliveryShipper:
        assert self._shipper is not None, "the service has not started"
        return self._shipper

    def definition(self) -> ServiceDefinition:
        root = self._runtime.data_root
        self._store = ShopStore.open(root, clock=self.clock)
        self._payments = LocalPaymentProvider.open(root, clock=self.clock)
        self._audit = AuditClient.for_runtime(self._runtime, outbox=self._store.audit_outbox)
        clients = self._runtime.clients
        self.context = ShopContext(
            store=self._store, payments={self._payments.name: self._payments}, audit=KitAuditEvents(self._audit),
            clock=self.clock, rules=self.config.rules, sealer=self._personal or personal_data_for(self._runtime),
            lives=GiftsLiveSessions(clients), disclosure=ComplianceDisclosure(clients))
        self._shipper = DeliveryShipper(self._store, AffiliateClient(clients), AdRepositoryClient(clients),
                                        clock=self.clock, on_ad_registered=self._ad_registered)
        self._store.add_commit_listener(self._wake)
        handlers: dict[str, Any] = {CATALOG: CatalogServicer(self.context, self._store),
                                    INVENTORY: InventoryServicer(self.context, self._store),
                                    PINS: LivePinServicer(self.context, self._store),
                                    ORDERS: OrderServicer(self.context, self._store),
                                    SUBJECT_DATA_SERVICE: SubjectDataServicer(DATA_MAP, ShopSubjectData(self.context,
                                                                                                        self._store))}
        return package_definition(PACKAGE, handlers, policy=ACCESS, on_start=self._start, on_stop=self._stop)

    async def _ad_registered(self, pin: str, ad: str) -> None:
        assert self.context is not None
        await pins.deliver_register_ad_result(self.context, pin, ad)

    def _wake(self) -> None:
        if self._audit is not None:
            self._audit.wake_shipper()
        if self._shipper is not None:
            self._shipper.wake()

    async def sweep(self, *, at_start: bool = False) -> sweeping.SweepResult:
        assert self.context is not None
        return await sweeping.sweep(self.context, at_start=at_start)

    async def _start(self) -> None:
        # A CREATED order is a lost call at start only when no other replica shares the store: one
        # that does may have that checkout in flight, so its orders wait out the grace like any.
        result = await self.sweep(at_start=not self.store.shared)
        logger.info("shop start: %d orders finished or compensated, %d reservations expired, %d left for the next"
                    " sweep %s", result.finished_orders, result.expired_reservations, len(result.failed_orders),
                    list(result.failed_orders))
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="shop-sweep")
        await self.shipper.start()
        if self.config.ship_audit and self._audit is not None:
            await self._audit.start()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval.total_seconds())
            try:
                result = await self.sweep()
                if result.failed_orders:
                    logger.warning("shop sweep: %s left for the next pass", list(result.failed_orders))
            except Exception:  # one failed pass must not end the loop; the next one retries
                logger.exception("shop sweep failed")

    async def _stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.shipper.stop()
        if self._audit is not None and self.config.ship_audit:
            await self._audit.stop()
        if self._payments is not None:
            await asyncio.to_thread(self._payments.close)
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return ShopService(runtime).definition()
