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
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from services.compliance.ads.servicer import AD_REPOSITORY, AdRepositoryServicer
from services.compliance.audit.config import AuditSettings
from services.compliance.audit.keys import load_or_create_signing_key
from services.compliance.audit.model import UnauthenticatedDenials
from services.compliance.audit.servicer import AUDIT, AuditServicer, access_policy
from services.compliance.audit.store import SqliteAuditStore
from services.compliance.audit.usecases import AuditLog
from services.compliance.consent.servicer import CONSENT, ConsentServicer
from services.compliance.disclosure.servicer import DISCLOSURE, DisclosureServicer
from services.compliance.privacy.servicer import DATA_SUBJECT, DataSubjectServicer


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    settings = AuditSettings.from_environment()
    store = SqliteAuditStore.open(runtime.data_root)
    log = AuditLog(store, load_or_create_signing_key(runtime.data_root / "compliance", settings.origin),
                   clock=utc_now, checkpoint_interval=settings.checkpoint_interval)
    denials = UnauthenticatedDenials(window=settings.denial_window, max_peers=settings.denial_max_peers)
    audit = AuditServicer(log, store, Pseudonymizer.for_deployment(runtime.data_root), denials, clock=utc_now)

    async def on_start() -> None:
        await asyncio.to_thread(audit.start)  # signs the log as found: a write

    async def on_stop() -> None:
        # Draining the writer waits on the disk: off the event loop, like every other write.
        await asyncio.to_thread(audit.stop)
        await asyncio.to_thread(store.close)

    return package_definition(
        "limelight.compliance.v1",
        {
            AUDIT: audit,
            # The generated stubs mark every RPC abstract; unbuilt, each answers UNIMPLEMENTED.
            DISCLOSURE: DisclosureServicer(),  # type: ignore[abstract]
            AD_REPOSITORY: AdRepositoryServicer(),  # type: ignore[abstract]
            CONSENT: ConsentServicer(),  # type: ignore[abstract]
            DATA_SUBJECT: DataSubjectServicer(),  # type: ignore[abstract]
        },
        policy=access_policy(),
        on_start=on_start,
        on_stop=on_stop,
        on_denied=audit.record_denial,
    )
