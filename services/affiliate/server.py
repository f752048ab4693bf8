"""Affiliate wired for one process: the store, the key ring, the click path, the compliance ports,
the servicers and the audit shipper. Nothing else lives here."""

from __future__ import annotations

import asyncio
import datetime as dt

from limelight.compliance.v1 import consent_pb2_grpc, privacy_pb2_grpc

from libs.audit.client import AuditClient
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.consent.cache import ConsentCache
from libs.errors import DomainError
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.privacy.fields import PersonalData
from libs.privacy.remote import RemoteDataKeys
from libs.privacy.servicer import SUBJECT_DATA_ACCESS, SUBJECT_DATA_SERVICE, SubjectDataServicer
from services.affiliate.clients import ComplianceDisclosure, ConsentTracking
from services.affiliate.config import AffiliateConfig
from services.affiliate.data_map import DATA_MAP
from services.affiliate.link_keys import load_key_ring, visitor_pseudonym_secret
from services.affiliate.model.clicks import GivtFilter
from services.affiliate.servicer import (
    AffiliateSubjectData,
    Backend,
    CommissionServicer,
    LinkServicer,
    ProgramServicer,
)
from services.affiliate.store import AffiliateStore
from services.affiliate.usecases.clicks import ClickCapture, ClickPolicy, LinkDirectory

PACKAGE = "limelight.affiliate.v1"
PROGRAMS = f"{PACKAGE}.ProgramService"
LINKS = f"{PACKAGE}.LinkService"
COMMISSIONS = f"{PACKAGE}.CommissionService"

MERCHANTS = frozenset({Role.MERCHANT, Role.ADMIN})
CREATORS = frozenset({Role.CREATOR})
SERVICES = frozenset({Role.SERVICE})
SERVICES_AND_ADMINS = frozenset({Role.SERVICE, Role.ADMIN})
OFFICERS = frozenset({Role.COMPLIANCE_OFFICER, Role.ADMIN})
EARNINGS_READERS = frozenset({Role.CREATOR, Role.COMPLIANCE_OFFICER, Role.SERVICE, Role.ADMIN})

ACCESS = AccessPolicy(roles={
    **method_paths(PROGRAMS, {"CreateProgram": MERCHANTS, "UpdateProgram": MERCHANTS}),
    **method_paths(LINKS, {"CreateTrackingLink": CREATORS, "ReviewLinkDisclosure": CREATORS,
                           "GetTrackingLink": frozenset({Role.CREATOR, Role.MERCHANT, Role.SERVICE, Role.ADMIN}),
                           "ListTrackingLinks": frozenset({Role.CREATOR, Role.SERVICE, Role.ADMIN}),
                           "SetLinkCommissionRate": MERCHANTS, "RecordClick": SERVICES}),
    **method_paths(COMMISSIONS, {"AttributeOrder": SERVICES, "RecordOrderEvent": SERVICES,
                                 "GetCommission": EARNINGS_READERS, "ListCommissions": EARNINGS_READERS,
                                 "GetEarnings": EARNINGS_READERS, "SettleCommissions": SERVICES_AND_ADMINS,
                                 "FreezeCommission": OFFICERS, "UnfreezeCommission": OFFICERS,
                                 "PayOutCommissions": frozenset({Role.CREATOR, Role.SERVICE, Role.ADMIN})}),
    **SUBJECT_DATA_ACCESS,
})


class AffiliateService:
    def __init__(self, runtime: ServiceRuntime, *, config: AffiliateConfig | None = None,
                 clock: Clock = utc_now) -> None:
        self.config = config or AffiliateConfig.from_environment()
        self.clock = clock
        self._runtime = runtime
        self._backend: Backend | None = None
        self._consent: ConsentCache | None = None

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "the service has not started"
        return self._backend

    def definition(self) -> ServiceDefinition:
        servicers = {PROGRAMS: ProgramServicer(self), LINKS: LinkServicer(self), COMMISSIONS: CommissionServicer(self),
                     SUBJECT_DATA_SERVICE: SubjectDataServicer(DATA_MAP, AffiliateSubjectData(self))}
        return package_definition(PACKAGE, servicers, policy=ACCESS, on_start=self._start, on_stop=self._stop,
                                  on_denied=self._record_denial)

    async def _start(self) -> None:
        runtime, config = self._runtime, self.config
        store = await asyncio.to_thread(AffiliateStore.open, runtime.data_root)
        keys = await asyncio.to_thread(load_key_ring, runtime.data_root, config.link_key_id, config.retired_link_keys)
        visitors = Pseudonymizer(await asyncio.to_thread(visitor_pseudonym_secret, runtime.data_root))
        audit = AuditClient.for_runtime(runtime, outbox=store.audit_outbox)
        self._consent = ConsentCache(runtime.clients.stub("compliance", consent_pb2_grpc.ConsentServiceStub))
        personal = PersonalData(RemoteDataKeys(runtime.clients.stub("compliance",
                                                                    privacy_pb2_grpc.PersonalDataKeyServiceStub)))
        directory = LinkDirectory(store, asyncio.to_thread, cached=not store.shared)
        capture = ClickCapture(
            keys=keys, givt=GivtFilter(data_centre_ranges=config.data_centre_ranges,
                                       extra_bot_patterns=config.extra_bot_patterns),
            directory=directory, consent=ConsentTracking(self._consent), personal=personal,
            pseudonym=lambda address: visitors.subject_ref(f"address/{address}"),
            policy=ClickPolicy(config.redirect_base_url, config.click_review_period, config.burst_limit,
                               config.burst_window))
        since = self.clock() - dt.timedelta(hours=1)
        capture.remember(await asyncio.to_thread(store.recent_counted_clicks, since))
        self._backend = Backend(store, capture, directory, keys, audit, ComplianceDisclosure(runtime.clients), personal,
                                config, self.clock)
        await self._consent.start()
        if config.ship_audit:
            store.add_commit_listener(audit.wake_shipper)
            await audit.start()

    async def _stop(self) -> None:
        if self._consent is not None:
            await self._consent.stop()
        if self._backend is not None:
            await self._backend.audit.stop()
            await asyncio.to_thread(self._backend.store.close)

    async def _record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        if self._backend is not None:
            await self._backend.record_denial(method, principal, error)


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return AffiliateService(runtime).definition()
