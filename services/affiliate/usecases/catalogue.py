"""Programmes and tracking links: merchants set the terms, creators make the links."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from libs.errors import AlreadyExists, FailedPrecondition, NotFound
from libs.pagination import PageTokens, page_size
from libs.timestamps import epoch_us
from services.affiliate.model.access import (
    Caller,
    require_creator,
    require_creator_in_person,
    require_merchant,
    user_of_creator,
)
from services.affiliate.model.links import TokenKeys, TrackingLink, short_code_of, sign_token
from services.affiliate.model.programs import Program, ProgramState, ProgramTerms
from services.affiliate.usecases.ports import AffiliateUnit, AuditTrail, DisclosureReview, Reads

PROGRAM_PAGES = PageTokens("affiliate.ListPrograms")
LINK_PAGES = PageTokens("affiliate.ListTrackingLinks")


def program_not_found(name: str) -> NotFound:
    return NotFound(f"no programme {name}", resource_name=name, reason="PROGRAM_NOT_FOUND")


def link_not_found(name: str) -> NotFound:
    return NotFound(f"no tracking link {name}", resource_name=name, reason="TRACKING_LINK_NOT_FOUND")


@dataclass(frozen=True)
class CreateProgram:
    caller: Caller
    merchant: str
    program_id: str
    terms: ProgramTerms


def create_program(command: CreateProgram, unit: AffiliateUnit, audit: AuditTrail, now: dt.datetime) -> Program:
    require_merchant(command.caller, command.merchant, command.merchant)
    command.terms.check(command.merchant)
    program = Program(command.merchant, command.program_id, command.terms, now, now)
    if unit.program(program.name) is not None:
        raise AlreadyExists(f"{program.name} exists", reason="PROGRAM_EXISTS", metadata={"program": program.name})
    unit.add_program(program)
    unit.record(audit.event("affiliate.CreateProgram", program.name, attributes=_terms_attributes(command.terms)))
    return program


@dataclass(frozen=True)
class UpdateProgram:
    caller: Caller
    name: str
    change: Callable[[ProgramTerms], ProgramTerms]  # applies the update mask


def update_program(command: UpdateProgram, unit: AffiliateUnit, audit: AuditTrail, now: dt.datetime) -> Program:
    program = unit.program(command.name)
    if program is None:
        raise program_not_found(command.name)
    require_merchant(command.caller, program.merchant, program.name)
    terms = command.change(program.terms)
    terms.check(program.merchant)
    changed = dataclasses.replace(program, terms=terms, update_time=now)
    unit.update_program(changed)
    unit.record(audit.event("affiliate.UpdateProgram", program.name, attributes=_terms_attributes(terms)))
    return changed


def _terms_attributes(terms: ProgramTerms) -> dict[str, str]:
    return {"commission_rate_bps": str(terms.commission_rate_bps), "cost_per_click_minor": str(terms.cost_per_click_minor),
            "daily_click_cap_minor": str(terms.daily_click_cap_minor), "currency_code": terms.currency_code,
            "attribution_model": terms.attribution_model.value, "state": terms.state.value,
            "attribution_window_s": str(int(terms.attribution_window.total_seconds())),
            "return_window_s": str(int(terms.return_window.total_seconds()))}


def get_program(reads: Reads, name: str) -> Program:
    program = reads.program(name)
    if program is None:
        raise program_not_found(name)
    return program


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def list_programs(reads: Reads, parent: str, state: ProgramState | None, requested_size: int,
                  page_token: str) -> Page[Program]:
    bound_to = f"{parent}|{state.value if state else ''}"
    after = PROGRAM_PAGES.decode(page_token, bound_to=bound_to, shape=(int, str))
    size = page_size(requested_size)
    merchant = None if parent == "merchants/-" else parent
    found = reads.programs(merchant, state, (int(after[0]), str(after[1])) if after else None, size + 1)
    page = found[:size]
    token = PROGRAM_PAGES.encode(epoch_us(page[-1].create_time), page[-1].name, bound_to=bound_to) \
        if len(found) > size else ""
    return Page(page, token)


@dataclass(frozen=True)
class CreateLink:
    caller: Caller
    creator: str
    program: str
    product: str
    link_id: str  # chosen by the servicer (random)
    short_number: int  # random, for the short code


def create_link(command: CreateLink, unit: AffiliateUnit, audit: AuditTrail, keys: TokenKeys,
                now: dt.datetime) -> TrackingLink:
    require_creator_in_person(command.caller, command.creator, command.creator)
    program = unit.program(command.program)
    if program is None:
        raise program_not_found(command.program)
    if not program.active:
        raise FailedPrecondition(f"{program.name} is {program.terms.state.value}", reason="PROGRAM_INACTIVE",
                                 metadata={"program": program.name})
    if command.product and not program.covers(command.product):
        raise FailedPrecondition(f"{program.name} does not cover {command.product}", reason="PRODUCT_NOT_IN_PROGRAM",
                                 metadata={"program": program.name, "product": command.product})
    name = f"{command.creator}/trackingLinks/{command.link_id}"
    link = TrackingLink(command.creator, command.link_id, program.name, command.product,
                        short_code_of(command.short_number), sign_token(keys, name, program.name, command.product),
                        None, now)
    unit.add_link(link)
    unit.record(audit.event("affiliate.CreateTrackingLink", link.name, subject=user_of_creator(command.creator),
                            attributes={"program": program.name, "product": command.product,
                                        "key_id": link.token.split(".")[1]}))
    return link


@dataclass(frozen=True)
class SetLinkRate:
    caller: Caller
    name: str
    rate_bps: int | None


def set_link_rate(command: SetLinkRate, unit: AffiliateUnit, audit: AuditTrail) -> TrackingLink:
    link = unit.link(command.name)
    if link is None:
        raise link_not_found(command.name)
    require_merchant(command.caller, link.merchant, link.name)
    unit.set_link_rate(link.name, command.rate_bps)
    unit.record(audit.event("affiliate.SetLinkCommissionRate", link.name, subject=user_of_creator(link.creator),
                            attributes={"commission_rate_bps": "" if command.rate_bps is None else str(command.rate_bps)}))
    return dataclasses.replace(link, commission_rate_bps=command.rate_bps)


def get_link(reads: Reads, caller: Caller, name: str) -> TrackingLink:
    link = reads.link(name)
    if link is None:
        raise link_not_found(name)
    if not (caller.is_merchant and link.merchant == f"merchants/{caller.user_id}"):
        require_creator(caller, link.creator, name)
    return link


def list_links(reads: Reads, caller: Caller, creator: str, program: str, requested_size: int,
               page_token: str) -> Page[TrackingLink]:
    require_creator(caller, creator, creator)
    bound_to = f"{creator}|{program}"
    after = LINK_PAGES.decode(page_token, bound_to=bound_to, shape=(int, str))
    size = page_size(requested_size)
    found = reads.links(creator, program, (int(after[0]), str(after[1])) if after else None, size + 1)
    page = found[:size]
    token = LINK_PAGES.encode(epoch_us(page[-1].create_time), page[-1].link_id, bound_to=bound_to) \
        if len(found) > size else ""
    return Page(page, token)


async def review_disclosure(reads: Reads, caller: Caller, disclosure: DisclosureReview, link_name: str, content: str,
                            caption: str, hashtags: Sequence[str], brand_name: str, label_text: str,
                            label_placement: int) -> object:
    """Content carrying a link goes to compliance with the link: it is advertising and must be labelled."""
    link = reads.link(link_name)
    if link is None:
        raise link_not_found(link_name)
    require_creator_in_person(caller, link.creator, link.name)
    if not content.startswith(f"{link.creator}/"):
        raise NotFound(f"{content} is not {link.creator}'s content", resource_name=content, reason="CONTENT_NOT_FOUND")
    return await disclosure.review(link, content, caption, hashtags, brand_name, label_text, label_placement)



def effective_rate(link: TrackingLink, program: Program) -> int:
    return program.terms.commission_rate_bps if link.commission_rate_bps is None else link.commission_rate_bps
