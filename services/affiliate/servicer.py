"""Affiliate over gRPC: handlers only translate (proto -> command -> use case -> proto).

Every refusal a handler lets escape is audited first (`Backend.guarded`); the kit's own
refusals (no token, a missing role) reach `Backend.record_denial`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from limelight.affiliate.v1 import (
    commissions_pb2,
    commissions_pb2_grpc,
    links_pb2,
    links_pb2_grpc,
    programs_pb2,
    programs_pb2_grpc,
)
from limelight.compliance.v1 import disclosure_pb2

from libs.audit.client import AuditClient
from libs.audit.events import Outcome
from libs.auth.principal import Principal, Role
from libs.clock import Clock
from libs.errors import DomainError, InvalidArgument, PermissionDenied
from libs.kit.context import current_principal
from libs.privacy.subject_data import Erasure
from libs.timestamps import from_timestamp
from services.affiliate import messages
from services.affiliate.audit_trail import CallAudit
from services.affiliate.config import AffiliateConfig
from services.affiliate.model.access import Caller
from services.affiliate.model.links import TokenKeys, TrackingLink
from services.affiliate.model.programs import Program
from services.affiliate.store import AffiliateStore
from services.affiliate.usecases import catalogue, commissions, subject_data
from services.affiliate.usecases.clicks import ClickCapture, LinkDirectory
from services.affiliate.usecases.ports import DisclosureReview, PersonalFields

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


def caller_of(principal: Principal) -> Caller:
    return Caller(user_id=principal.subject.removeprefix("users/") if principal.subject.startswith("users/") else "",
                  is_service=principal.is_service, is_admin=principal.has_role(Role.ADMIN),
                  is_officer=principal.has_role(Role.COMPLIANCE_OFFICER), is_creator=principal.has_role(Role.CREATOR),
                  is_merchant=principal.has_role(Role.MERCHANT))


@dataclass
class Backend:
    """What the handlers share: the store, the click path, the audit trail, the clock and the ports."""

    store: AffiliateStore
    capture: ClickCapture
    directory: LinkDirectory
    keys: TokenKeys
    audit: AuditClient
    disclosure: DisclosureReview
    personal: PersonalFields
    config: AffiliateConfig
    clock: Clock

    def call_audit(self) -> CallAudit:
        return CallAudit.of_call(self.audit)

    async def guarded(self, method: str, resource: str, work: Callable[[CallAudit], Awaitable[T]]) -> T:
        audit = self.call_audit()
        try:
            return await work(audit)
        except DomainError as error:
            await self.store.record(audit.event(f"affiliate.{method}", resource or method, reason=error.reason,
                                                rejected=True, denied=isinstance(error, PermissionDenied),
                                                attributes=dict(error.metadata)))
            raise

    async def read(self, read: Callable[[], T]) -> T:
        return await asyncio.to_thread(read)

    async def record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        """The kit's refusals (no token, a missing role), before any handler ran: the method is the resource."""
        await self.store.record(self.audit.new_event(action=f"affiliate.{method.rsplit('/', 1)[-1]}", resource=method,
                                                     outcome=Outcome.DENIED, reason=error.reason))

    async def link_out(self, link: TrackingLink, program: Program | None = None) -> links_pb2.TrackingLink:
        if program is None:
            program = await self.directory.program(link.program)
        counted = await self.read(lambda: self.store.counted_clicks(link.name))
        return messages.link_out(link, program, counted, self.config.link_base_url)


class Started(Protocol):
    """The service the servicers belong to: its backend exists once it has started."""

    @property
    def backend(self) -> Backend: ...


class _Handlers:
    def __init__(self, service: Started) -> None:
        self._service = service

    @property
    def _b(self) -> Backend:
        return self._service.backend


class ProgramServicer(_Handlers, programs_pb2_grpc.ProgramServiceServicer):

    async def CreateProgram(self, request: programs_pb2.CreateProgramRequest,
                            context: Context) -> programs_pb2.CreateProgramResponse:
        async def work(audit: CallAudit) -> programs_pb2.CreateProgramResponse:
            messages.MERCHANT.parse(request.parent, field="parent")
            command = catalogue.CreateProgram(caller_of(current_principal()), request.parent,
                                              request.program_id or secrets.token_hex(8),
                                              messages.terms_in(request.program))
            program = await self._b.store.run(lambda unit: catalogue.create_program(command, unit, audit,
                                                                                     self._b.clock()))
            self._b.directory.changed_program(program)
            return programs_pb2.CreateProgramResponse(program=messages.program_out(program))
        return await self._b.guarded("CreateProgram", request.parent, work)

    async def GetProgram(self, request: programs_pb2.GetProgramRequest,
                         context: Context) -> programs_pb2.GetProgramResponse:
        async def work(audit: CallAudit) -> programs_pb2.GetProgramResponse:
            messages.PROGRAM.parse(request.name, field="name")
            program = await self._b.read(lambda: catalogue.get_program(self._b.store, request.name))
            return programs_pb2.GetProgramResponse(program=messages.program_out(program))
        return await self._b.guarded("GetProgram", request.name, work)

    async def ListPrograms(self, request: programs_pb2.ListProgramsRequest,
                           context: Context) -> programs_pb2.ListProgramsResponse:
        async def work(audit: CallAudit) -> programs_pb2.ListProgramsResponse:
            page = await self._b.read(lambda: catalogue.list_programs(
                self._b.store, request.parent, messages.program_state_filter(request.state), request.page_size,
                request.page_token))
            return programs_pb2.ListProgramsResponse(programs=[messages.program_out(p) for p in page.items],
                                                     next_page_token=page.next_page_token)
        return await self._b.guarded("ListPrograms", request.parent, work)

    async def UpdateProgram(self, request: programs_pb2.UpdateProgramRequest,
                            context: Context) -> programs_pb2.UpdateProgramResponse:
        async def work(audit: CallAudit) -> programs_pb2.UpdateProgramResponse:
            messages.PROGRAM.parse(request.program.name, field="program.name")
            paths = list(request.update_mask.paths)
            command = catalogue.UpdateProgram(caller_of(current_principal()), request.program.name,
                                              lambda terms: messages.masked_terms(request.program, paths, terms))
            program = await self._b.store.run(lambda unit: catalogue.update_program(command, unit, audit,
                                                                                     self._b.clock()))
            self._b.directory.changed_program(program)
            return programs_pb2.UpdateProgramResponse(program=messages.program_out(program))
        return await self._b.guarded("UpdateProgram", request.program.name, work)


class LinkServicer(_Handlers, links_pb2_grpc.LinkServiceServicer):

    async def CreateTrackingLink(self, request: links_pb2.CreateTrackingLinkRequest,
                                 context: Context) -> links_pb2.CreateTrackingLinkResponse:
        async def work(audit: CallAudit) -> links_pb2.CreateTrackingLinkResponse:
            messages.CREATOR.parse(request.parent, field="parent")
            command = catalogue.CreateLink(caller_of(current_principal()), request.parent, request.program,
                                           request.product, secrets.token_hex(8), secrets.randbits(64))
            link = await self._b.store.run(lambda unit: catalogue.create_link(command, unit, audit, self._b.keys,
                                                                               self._b.clock()))
            self._b.directory.changed_link(link)
            return links_pb2.CreateTrackingLinkResponse(tracking_link=await self._b.link_out(link))
        return await self._b.guarded("CreateTrackingLink", request.parent, work)

    async def GetTrackingLink(self, request: links_pb2.GetTrackingLinkRequest,
                              context: Context) -> links_pb2.GetTrackingLinkResponse:
        async def work(audit: CallAudit) -> links_pb2.GetTrackingLinkResponse:
            messages.TRACKING_LINK.parse(request.name, field="name")
            caller = caller_of(current_principal())
            link = await self._b.read(lambda: catalogue.get_link(self._b.store, caller, request.name))
            return links_pb2.GetTrackingLinkResponse(tracking_link=await self._b.link_out(link))
        return await self._b.guarded("GetTrackingLink", request.name, work)

    async def ListTrackingLinks(self, request: links_pb2.ListTrackingLinksRequest,
                                context: Context) -> links_pb2.ListTrackingLinksResponse:
        async def work(audit: CallAudit) -> links_pb2.ListTrackingLinksResponse:
            caller = caller_of(current_principal())
            page = await self._b.read(lambda: catalogue.list_links(self._b.store, caller, request.parent,
                                                                   request.program, request.page_size,
                                                                   request.page_token))
            return links_pb2.ListTrackingLinksResponse(
                tracking_links=[await self._b.link_out(link) for link in page.items],
                next_page_token=page.next_page_token)
        return await self._b.guarded("ListTrackingLinks", request.parent, work)

    async def SetLinkCommissionRate(self, request: links_pb2.SetLinkCommissionRateRequest,
                                    context: Context) -> links_pb2.SetLinkCommissionRateResponse:
        async def work(audit: CallAudit) -> links_pb2.SetLinkCommissionRateResponse:
            messages.TRACKING_LINK.parse(request.name, field="name")
            rate = request.commission_rate_bps if request.HasField("commission_rate_bps") else None
            command = catalogue.SetLinkRate(caller_of(current_principal()), request.name, rate)
            link = await self._b.store.run(lambda unit: catalogue.set_link_rate(command, unit, audit))
            self._b.directory.changed_link(link)
            return links_pb2.SetLinkCommissionRateResponse(tracking_link=await self._b.link_out(link))
        return await self._b.guarded("SetLinkCommissionRate", request.name, work)

    async def RecordClick(self, request: links_pb2.RecordClickRequest,
                          context: Context) -> links_pb2.RecordClickResponse:
        async def work(audit: CallAudit) -> links_pb2.RecordClickResponse:
            if request.user:
                messages.USER.parse(request.user, field="user")
            captured = await self._b.capture.record(messages.click_in(request), self._b.store.run, audit)
            return links_pb2.RecordClickResponse(click=messages.click_out(captured.click, captured.redirect_url))
        return await self._b.guarded("RecordClick", "", work)

    async def ReviewLinkDisclosure(self, request: links_pb2.ReviewLinkDisclosureRequest,
                                   context: Context) -> links_pb2.ReviewLinkDisclosureResponse:
        async def work(audit: CallAudit) -> links_pb2.ReviewLinkDisclosureResponse:
            messages.TRACKING_LINK.parse(request.tracking_link, field="tracking_link")
            caller = caller_of(current_principal())
            verdict = await catalogue.review_disclosure(
                self._b.store, caller, self._b.disclosure, request.tracking_link, request.content, request.caption,
                list(request.hashtags), request.brand_name, request.label_text, request.label_placement)
            assert isinstance(verdict, disclosure_pb2.EvaluateDisclosureResponse)
            return links_pb2.ReviewLinkDisclosureResponse(disclosure=verdict)
        return await self._b.guarded("ReviewLinkDisclosure", request.tracking_link, work)


class CommissionServicer(_Handlers, commissions_pb2_grpc.CommissionServiceServicer):

    async def AttributeOrder(self, request: commissions_pb2.AttributeOrderRequest,
                             context: Context) -> commissions_pb2.AttributeOrderResponse:
        async def work(audit: CallAudit) -> commissions_pb2.AttributeOrderResponse:
            command = messages.attribute_in(request)
            result = await self._b.store.run(lambda unit: commissions.attribute_order(command, unit, audit,
                                                                                       self._b.config.fraud))
            response = commissions_pb2.AttributeOrderResponse(
                attributed=result.attribution.attributed,
                non_attribution_reason=messages.non_attribution_out(result.attribution.reason),
                duplicate_order=result.duplicate_order)
            if result.commission is not None:
                response.commission.CopyFrom(messages.commission_out(result.commission))
            return response
        return await self._b.guarded("AttributeOrder", request.order, work)

    async def RecordOrderEvent(self, request: commissions_pb2.RecordOrderEventRequest,
                               context: Context) -> commissions_pb2.RecordOrderEventResponse:
        async def work(audit: CallAudit) -> commissions_pb2.RecordOrderEventResponse:
            command = messages.order_event_in(request)
            result = await self._b.store.run(lambda unit: commissions.record_order_event(command, unit, audit))
            response = commissions_pb2.RecordOrderEventResponse()
            if result.commission is not None:
                response.commission.CopyFrom(messages.commission_out(result.commission))
            if result.clawback is not None:
                response.clawback.CopyFrom(messages.commission_out(result.clawback))
            return response
        return await self._b.guarded("RecordOrderEvent", request.order, work)

    async def GetCommission(self, request: commissions_pb2.GetCommissionRequest,
                            context: Context) -> commissions_pb2.GetCommissionResponse:
        async def work(audit: CallAudit) -> commissions_pb2.GetCommissionResponse:
            messages.COMMISSION.parse(request.name, field="name")
            caller = caller_of(current_principal())
            commission = await self._b.read(lambda: commissions.get_commission(self._b.store, caller, request.name))
            return commissions_pb2.GetCommissionResponse(commission=messages.commission_out(commission))
        return await self._b.guarded("GetCommission", request.name, work)

    async def ListCommissions(self, request: commissions_pb2.ListCommissionsRequest,
                              context: Context) -> commissions_pb2.ListCommissionsResponse:
        async def work(audit: CallAudit) -> commissions_pb2.ListCommissionsResponse:
            caller = caller_of(current_principal())
            listed = await self._b.read(lambda: commissions.list_commissions(
                self._b.store, caller, request.parent, messages.state_filter(request.state), request.page_size,
                request.page_token))
            return commissions_pb2.ListCommissionsResponse(
                commissions=[messages.commission_out(c) for c in listed.page.items],
                totals=messages.totals_out(listed.totals), next_page_token=listed.page.next_page_token)
        return await self._b.guarded("ListCommissions", request.parent, work)

    async def SettleCommissions(self, request: commissions_pb2.SettleCommissionsRequest,
                                context: Context) -> commissions_pb2.SettleCommissionsResponse:
        async def work(audit: CallAudit) -> commissions_pb2.SettleCommissionsResponse:
            command = commissions.SettleCommissions(
                request.request_id, from_timestamp(request.settle_before_time, field="settle_before_time"))
            settlement = await self._b.store.run(lambda unit: commissions.settle_commissions(command, unit, audit,
                                                                                              self._b.clock()))
            return commissions_pb2.SettleCommissionsResponse(settled_count=settlement.settled_count,
                                                             settled_totals=messages.totals_out(settlement.totals))
        return await self._b.guarded("SettleCommissions", "", work)

    async def FreezeCommission(self, request: commissions_pb2.FreezeCommissionRequest,
                               context: Context) -> commissions_pb2.FreezeCommissionResponse:
        commission = await self._change_freeze(request.request_id, request.name, True, request.reason)
        return commissions_pb2.FreezeCommissionResponse(commission=commission)

    async def UnfreezeCommission(self, request: commissions_pb2.UnfreezeCommissionRequest,
                                 context: Context) -> commissions_pb2.UnfreezeCommissionResponse:
        commission = await self._change_freeze(request.request_id, request.name, False, "")
        return commissions_pb2.UnfreezeCommissionResponse(commission=commission)

    async def _change_freeze(self, request_id: str, name: str, freeze: bool, reason: str) -> commissions_pb2.Commission:
        async def work(audit: CallAudit) -> commissions_pb2.Commission:
            messages.COMMISSION.parse(name, field="name")
            command = commissions.ChangeFreeze(request_id, caller_of(current_principal()), name, freeze, reason)
            changed = await self._b.store.run(lambda unit: commissions.change_freeze(command, unit, audit))
            return messages.commission_out(changed)
        return await self._b.guarded("FreezeCommission" if freeze else "UnfreezeCommission", name, work)

    async def GetEarnings(self, request: commissions_pb2.GetEarningsRequest,
                          context: Context) -> commissions_pb2.GetEarningsResponse:
        async def work(audit: CallAudit) -> commissions_pb2.GetEarningsResponse:
            since = from_timestamp(request.start_time, field="start_time") if request.HasField("start_time") else None
            until = from_timestamp(request.end_time, field="end_time") if request.HasField("end_time") else None
            if since is not None and until is not None and until <= since:
                raise InvalidArgument.for_field("end_time", "must be after start_time")
            caller = caller_of(current_principal())
            totals = await self._b.read(lambda: commissions.earnings(self._b.store, caller, request.parent, since,
                                                                     until))
            return commissions_pb2.GetEarningsResponse(totals=messages.totals_out(totals))
        return await self._b.guarded("GetEarnings", request.parent, work)

    async def PayOutCommissions(self, request: commissions_pb2.PayOutCommissionsRequest,
                                context: Context) -> commissions_pb2.PayOutCommissionsResponse:
        async def work(audit: CallAudit) -> commissions_pb2.PayOutCommissionsResponse:
            command = commissions.PayOut(request.request_id, caller_of(current_principal()), request.parent)
            payouts = await self._b.store.run(lambda unit: commissions.pay_out(command, unit, audit, self._b.clock()))
            return commissions_pb2.PayOutCommissionsResponse(payouts=messages.payouts_out(payouts))
        return await self._b.guarded("PayOutCommissions", request.parent, work)


class AffiliateSubjectData(_Handlers):
    """What affiliate holds about a user, for the shared SubjectDataService (libs.privacy.servicer)."""

    async def export(self, user_id: str) -> dict[str, Any]:
        return await subject_data.export(self._b.store, self._b.personal, f"users/{user_id}")

    async def erase(self, user_id: str) -> Erasure:
        return await subject_data.erase(self._b.store, self._b.call_audit(), f"users/{user_id}")
