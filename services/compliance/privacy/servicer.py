"""Privacy's gRPC handlers and the area's entry point.

The compliance server wires this area with `build(runtime)`: it registers each servicer of
`area.servicers`, merges `area.policy`, and calls `area.on_stop()` from its own hook.
the area's audit shipper starts and stops with it (`on_start` / `on_stop`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc

from libs.audit.client import AuditClient
from libs.audit.events import Outcome
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.errors import InvalidArgument, PermissionDenied
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_principal
from libs.kit.server import ServiceRuntime
from libs.pagination import page_size
from libs.privacy.data_map import DataMap
from libs.privacy.records import activities_out
from libs.timestamps import epoch_us
from services.compliance.privacy import messages, usecases
from services.compliance.privacy.config import PrivacyConfig
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey
from services.compliance.privacy.model import DataSubjectRequest, not_found
from services.compliance.privacy.sources import ComplianceRecords, ServiceSubjectData, service_sources
from services.compliance.privacy.store import PrivacyStore
from services.compliance.privacy.usecases import DataKeys, KeyEncryptionKey

DATA_KEYS = "limelight.compliance.v1.PersonalDataKeyService"
DATA_SUBJECT = "limelight.compliance.v1.DataSubjectService"
Context = grpc.aio.ServicerContext[Any, Any]
EXPORT_CHUNK_BYTES = 64 * 1024
OFFICER = frozenset({Role.COMPLIANCE_OFFICER})

# A data key opens everything a service holds about its subject: services only, never a person.
# Requests: the subject, a service acting for them, or an officer (checked in the handlers, since
# the rule depends on whom the request names); extending and rejecting: officers only. The
# record of processing is public (Art. 30 records, published as a transparency measure).
POLICY = AccessPolicy(
    public=frozenset(method_paths(DATA_SUBJECT, {"ListProcessingActivities": frozenset()})),
    roles={**method_paths(DATA_KEYS, {"GetDataKey": frozenset({Role.SERVICE})}),
           **method_paths(DATA_SUBJECT, {"ExtendDataSubjectRequest": OFFICER, "RejectDataSubjectRequest": OFFICER})},
)


class PersonalDataKeyServicer(privacy_pb2_grpc.PersonalDataKeyServiceServicer):
    def __init__(self, keys: DataKeys, config: PrivacyConfig) -> None:
        self._keys = keys
        self._config = config

    async def GetDataKey(self, request: privacy_pb2.GetDataKeyRequest, context: Context) -> privacy_pb2.GetDataKeyResponse:
        if request.key_id:
            key = await asyncio.to_thread(self._keys.key, request.subject, request.key_id)
        else:
            key = await asyncio.to_thread(self._keys.current_key, request.subject)
        return messages.data_key_out(key, self._config.key_cache_ttl)


class DataSubjectServicer(privacy_pb2_grpc.DataSubjectServiceServicer):
    def __init__(self, requests: usecases.DataSubjectRequests, audit: AuditClient, data_maps: Sequence[DataMap],
                 describers: Sequence[ServiceSubjectData]) -> None:
        self._requests = requests
        self._audit = audit
        self._data_maps = data_maps
        self._describers = describers

    async def CreateDataSubjectRequest(
        self, request: privacy_pb2.CreateDataSubjectRequestRequest, context: Context
    ) -> privacy_pb2.CreateDataSubjectRequestResponse:
        command = messages.new_request_in(request)
        principal = current_principal()
        if not _acts_for(principal, command.user):
            raise PermissionDenied(f"only users/{command.user}, a service acting for them or a compliance officer"
                                   " may open their request", reason="NOT_THE_SUBJECT",
                                   metadata={"parent": request.parent})
        created = await self._requests.create(command, principal.subject, _Steps(self._audit))
        return privacy_pb2.CreateDataSubjectRequestResponse(data_subject_request=messages.request_out(created))

    async def GetDataSubjectRequest(
        self, request: privacy_pb2.GetDataSubjectRequestRequest, context: Context
    ) -> privacy_pb2.GetDataSubjectRequestResponse:
        found = await self._requests.get(self._visible(request.name))
        return privacy_pb2.GetDataSubjectRequestResponse(data_subject_request=messages.request_out(found))

    async def ListDataSubjectRequests(
        self, request: privacy_pb2.ListDataSubjectRequestsRequest, context: Context
    ) -> privacy_pb2.ListDataSubjectRequestsResponse:
        user = messages.USER.parse(request.parent, field="parent", wildcard=True)["user"]
        principal = current_principal()
        if not (_acts_for(principal, user) if user != "-" else principal.has_role(Role.COMPLIANCE_OFFICER)):
            raise PermissionDenied("a subject lists their own requests; every subject's, only a compliance officer",
                                   reason="NOT_THE_SUBJECT", metadata={"parent": request.parent})
        listing = f"{request.parent}|state={request.state}|overdue={request.overdue_only}"
        after = messages.REQUEST_PAGES.decode(request.page_token, bound_to=listing, shape=(int, str))
        size = page_size(request.page_size, default=100)
        found = await self._requests.list(None if user == "-" else user, messages.state_in(request.state),
                                          request.overdue_only, None if after is None else (int(after[0]),
                                                                                            str(after[1])), size + 1)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = messages.REQUEST_PAGES.encode(epoch_us(last.due_time), last.name, bound_to=listing)
        return privacy_pb2.ListDataSubjectRequestsResponse(
            data_subject_requests=[messages.request_out(each) for each in found[:size]], next_page_token=token)

    async def ExtendDataSubjectRequest(
        self, request: privacy_pb2.ExtendDataSubjectRequestRequest, context: Context
    ) -> privacy_pb2.ExtendDataSubjectRequestResponse:
        messages.REQUEST.parse(request.name, field="name")
        extended = await self._requests.extend(request.name, request.extension_months, request.reason,
                                               _Steps(self._audit))
        return privacy_pb2.ExtendDataSubjectRequestResponse(data_subject_request=messages.request_out(extended))

    async def RejectDataSubjectRequest(
        self, request: privacy_pb2.RejectDataSubjectRequestRequest, context: Context
    ) -> privacy_pb2.RejectDataSubjectRequestResponse:
        messages.REQUEST.parse(request.name, field="name")
        rejected = await self._requests.reject(request.name, request.reason, _Steps(self._audit))
        return privacy_pb2.RejectDataSubjectRequestResponse(data_subject_request=messages.request_out(rejected))

    async def DownloadDataExport(
        self, request: privacy_pb2.DownloadDataExportRequest, context: Context
    ) -> AsyncIterator[privacy_pb2.DownloadDataExportResponse]:
        archive = await self._requests.export(self._visible(request.name))
        if request.offset > len(archive):
            raise InvalidArgument.for_field("offset", f"the export has {len(archive)} bytes")
        digest = hashlib.sha256(archive).hexdigest()
        offset = int(request.offset)
        while True:
            chunk = archive[offset:offset + EXPORT_CHUNK_BYTES]
            last = offset + len(chunk) >= len(archive)
            yield privacy_pb2.DownloadDataExportResponse(
                offset=offset, data=chunk, content_type="application/json" if offset == request.offset else "",
                sha256=digest if last else "")
            offset += len(chunk)
            if last:
                return

    async def ListProcessingActivities(
        self, request: privacy_pb2.ListProcessingActivitiesRequest, context: Context
    ) -> privacy_pb2.ListProcessingActivitiesResponse:
        start = messages.ACTIVITY_PAGES.decode_int(request.page_token) or 0
        size = page_size(request.page_size, default=100)
        # The union, asked afresh: a service that does not answer fails the call rather than
        # leave a record that silently lacks it.
        activities = [activity for data_map in self._data_maps for activity in activities_out(data_map)]
        for describer in self._describers:
            activities += await describer.activities()
        more = start + size < len(activities)
        return privacy_pb2.ListProcessingActivitiesResponse(
            activities=activities[start:start + size],
            next_page_token=messages.ACTIVITY_PAGES.encode(start + size) if more else "")

    def _visible(self, name: str) -> str:
        """`name` if the caller may see it; NOT_FOUND otherwise, as for a missing one."""
        user = messages.REQUEST.parse(name, field="name")["user"]
        if not _acts_for(current_principal(), user):
            raise not_found(name)
        return name


def _acts_for(principal: Principal, user: str) -> bool:
    """The subject themselves, a verified service acting for them, or a compliance officer."""
    subject = f"users/{user}"
    if principal.has_role(Role.COMPLIANCE_OFFICER):
        return True
    if principal.is_service:
        return principal.on_behalf_of is not None and principal.on_behalf_of.subject == subject
    return principal.subject == subject


class _Steps:
    """Each step's audit event, built on the call's task (who acted, the trace, the subject's pseudonym)."""

    def __init__(self, audit: AuditClient) -> None:
        self._audit = audit

    def step(self, action: str, request: DataSubjectRequest, **attributes: str) -> object:
        return self._audit.new_event(action=action, resource=request.name, outcome=Outcome.SUCCEEDED,
                                     subject=request.subject,
                                     attributes={"type": request.type.value, "state": request.state.value,
                                                 "due_time": request.due_time.isoformat(), **attributes})


@dataclass
class PrivacyArea:
    """What the privacy area adds to the compliance server."""

    keys: DataKeys
    store: PrivacyStore
    audit: AuditClient
    servicers: Mapping[str, object]
    policy: AccessPolicy = POLICY

    async def on_start(self) -> None:
        await self.audit.start()

    async def on_stop(self) -> None:
        await self.audit.stop(flush_seconds=0.5)
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime, *, clock: Clock = utc_now, kek: KeyEncryptionKey | None = None,
          config: PrivacyConfig | None = None, data_maps: Sequence[DataMap] = (),
          sources: Sequence[usecases.SubjectDataSource] | None = None,
          compliance_sources: Sequence[usecases.SubjectDataSource] = ()) -> PrivacyArea:
    """The area over `<data>/compliance/privacy.db`; the key-encryption key defaults to the local key file.

    `sources` are the services a request reaches besides compliance itself (default: the
    configured ones, over their SubjectDataService, which also describe their processing);
    `compliance_sources` the other compliance areas' data about a subject (consent's records);
    `data_maps` compliance's own records of processing."""
    config = config or PrivacyConfig.from_environment()
    remote = service_sources(runtime, config.sources) if sources is None else []
    if sources is None:
        sources = remote
    store = PrivacyStore.open(runtime.data_root)
    keys = DataKeys(store, kek or LocalKeyEncryptionKey.for_deployment(runtime.data_root), clock)
    audit = AuditClient.for_runtime(runtime, outbox=store.audit_outbox())
    requests = usecases.DataSubjectRequests(store, keys, [ComplianceRecords(store, compliance_sources), *sources],
                                            clock)
    servicers: dict[str, object] = {
        DATA_KEYS: PersonalDataKeyServicer(keys, config),
        DATA_SUBJECT: DataSubjectServicer(requests, audit, data_maps, remote),
    }
    return PrivacyArea(keys, store, audit, servicers)
