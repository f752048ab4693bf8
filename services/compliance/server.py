"""Compliance: the audit trail, consent, disclosure rules, AI labels, the ad repository, data-subject requests.

The one wiring place: each area of `services/compliance/` (audit, disclosure, ads,
consent, privacy) is a package with its own rooms and its own database file; this module
builds them and serves them together as one process. The contract is in
protos/limelight/compliance/v1/; RPCs of an area not built yet answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio

from libs.audit.pseudonyms import Pseudonymizer
from libs.clock import utc_now
from libs.kit.access import AccessPolicy
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from services.compliance.ads import servicer as ads
from services.compliance.audit.config import AuditSettings
from services.compliance.audit.keys import load_or_create_signing_key
from services.compliance.audit.model import UnauthenticatedDenials
from services.compliance.audit.servicer import AUDIT, AuditServicer, access_policy
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog
from services.compliance.consent import servicer as consent
from services.compliance.data_map import DATA_MAP
from services.compliance.disclosure import servicer as disclosure
from services.compliance.privacy import servicer as privacy


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    settings = AuditSettings.from_environment()
    store = AuditLogStore.open(runtime.data_root)
    log = AuditLog(store, load_or_create_signing_key(runtime.data_root / "compliance", settings.origin),
                   clock=utc_now, checkpoint_interval=settings.checkpoint_interval)
    denials = UnauthenticatedDenials(window=settings.denial_window, max_peers=settings.denial_max_peers)
    audit = AuditServicer(log, store, Pseudonymizer.for_deployment(runtime.data_root), denials, clock=utc_now)
    disclosure_area = disclosure.build(runtime)
    consent_area = consent.build(runtime, append=audit.append_own, clock=utc_now)
    ad_repository = ads.build(runtime, clock=utc_now, consent=consent_area.ad_profiling)
    privacy_area = privacy.build(runtime, clock=utc_now, data_maps=[DATA_MAP],
                                 compliance_sources=[consent_area.subject_data])
    policies = [access_policy(), disclosure_area.policy, ad_repository.policy, consent_area.policy,
                privacy_area.policy]

    async def on_start() -> None:
        await asyncio.to_thread(audit.start)  # signs the log as found: a write
        await ad_repository.on_start()  # the retention sweep
        await consent_area.on_start()  # the shipper of consent's audit outbox
        await privacy_area.on_start()  # the requests' audit shipper

    async def on_stop() -> None:
        await consent_area.on_stop()  # ships what it can before the audit log stops
        await ad_repository.on_stop()
        await privacy_area.on_stop()
        # Draining the writer waits on the disk: off the event loop, like every other write.
        await asyncio.to_thread(audit.stop)
        await asyncio.to_thread(store.close)

    return package_definition(
        "limelight.compliance.v1",
        {
            AUDIT: audit,
            disclosure_area.service_name: disclosure_area.servicer,
            ad_repository.service_name: ad_repository.servicer,
            consent_area.service_name: consent_area.servicer,
            **privacy_area.servicers,
        },
        policy=AccessPolicy(
            public=frozenset().union(*(policy.public for policy in policies)),
            roles={method: roles for policy in policies for method, roles in policy.roles.items()},
        ),
        on_start=on_start,
        on_stop=on_stop,
        on_denied=audit.record_denial,
    )
