"""ConsentService end to end: a real compliance server on loopback, called through the generated stub."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc, audit_pb2, audit_pb2_grpc, consent_pb2, consent_pb2_grpc

from libs.kit.server import RunningService, start_service
from services.compliance.consent.conftest import Callers, Metadata
from services.compliance.consent.test_tcf import tc_string
from services.compliance.server import build

ADS = consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS
FEED = consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT
ANALYTICS = consent_pb2.CONSENT_PURPOSE_PRODUCT_ANALYTICS
GRANTED = consent_pb2.CONSENT_DECISION_GRANTED


Purpose = consent_pb2.ConsentPurpose


def give(user: str, purpose: Purpose, decision: consent_pb2.ConsentDecision = GRANTED, *, request_id: str | None = None,
         notice: str = "2026-05-01") -> consent_pb2.RecordConsentRequest:
    request = consent_pb2.RecordConsentRequest(
        parent=f"users/{user}", request_id=request_id or str(uuid.uuid4()), purpose=purpose, decision=decision,
        notice_version=notice, method=consent_pb2.CONSENT_METHOD_IN_APP_DIALOG, jurisdiction="DE", source="ios/5.2.1")
    request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
    return request


def withdraw(user: str, purpose: Purpose) -> consent_pb2.WithdrawConsentRequest:
    return consent_pb2.WithdrawConsentRequest(parent=f"users/{user}", request_id=str(uuid.uuid4()), purpose=purpose,
                                              source="android/5.2.0")


async def check(stub: consent_pb2_grpc.ConsentServiceAsyncStub, metadata: Metadata, user: str,
                *purposes: Purpose) -> consent_pb2.CheckConsentResponse:
    return await stub.CheckConsent(consent_pb2.CheckConsentRequest(parent=f"users/{user}", purposes=purposes),
                                   metadata=metadata)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert isinstance(status, status_pb2.Status)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


async def test_without_a_record_every_purpose_is_no(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers) -> None:
    answer = await check(consent_stub, callers.service(), "ana", ADS, FEED, ANALYTICS)
    assert [(d.permitted, d.basis) for d in answer.decisions] == [(False, consent_pb2.CONSENT_BASIS_NO_DECISION)] * 3
    assert answer.version == 0


async def test_give_then_withdraw_in_one_call_each(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers) -> None:
    given = await consent_stub.RecordConsent(give("ana", FEED), metadata=callers.user("ana"))
    assert given.record.name.startswith("users/ana/consentRecords/")
    assert (given.record.jurisdiction, given.record.source, given.record.recorded_by) == ("DE", "ios/5.2.1", "users/ana")
    assert (await check(consent_stub, callers.service(), "ana", FEED)).decisions[0].permitted

    withdrawn = await consent_stub.WithdrawConsent(withdraw("ana", FEED), metadata=callers.service_for("ana"))
    assert withdrawn.record.decision == consent_pb2.CONSENT_DECISION_WITHDRAWN
    assert withdrawn.record.notice_version == "2026-05-01"  # the notice the withdrawn grant was given under
    assert withdrawn.record.version > given.record.version
    answer = await check(consent_stub, callers.service(), "ana", FEED)
    assert (answer.decisions[0].permitted, answer.decisions[0].basis) == (
        False, consent_pb2.CONSENT_BASIS_REFUSED_OR_WITHDRAWN)
    assert answer.version == withdrawn.record.version


async def test_history_pages_newest_first(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers) -> None:
    for purpose in (FEED, ADS, ANALYTICS, FEED, ADS):
        await consent_stub.RecordConsent(give("ben", purpose), metadata=callers.user("ben"))
    seen, token = [], ""
    while True:
        page = await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(
            parent="users/ben", page_size=2, page_token=token), metadata=callers.officer())
        seen += [record.version for record in page.records]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    only_ads = await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(
        parent="users/ben", purpose=ADS), metadata=callers.user("ben"))
    assert len(only_ads.records) == 2
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(
            parent="users/ben", purpose=ADS, page_token=token or page.next_page_token or "x"), metadata=callers.officer())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_state_names_the_latest_record_per_purpose(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                          callers: Callers) -> None:
    first = await consent_stub.RecordConsent(give("cem", FEED), metadata=callers.user("cem"))
    state = await consent_stub.GetConsentState(consent_pb2.GetConsentStateRequest(parent="users/cem"),
                                               metadata=callers.user("cem"))
    by_purpose = {p.purpose: p for p in state.purposes}
    assert by_purpose[FEED].record == first.record.name and by_purpose[FEED].decision == GRANTED
    assert by_purpose[ADS].decision == consent_pb2.CONSENT_DECISION_UNSPECIFIED
    assert len(state.purposes) == len(consent_pb2.ConsentPurpose.keys()) - 1


async def test_same_request_id_one_effect_other_parameters_refused(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                                    callers: Callers) -> None:
    request_id = str(uuid.uuid4())
    retried = give("dan", FEED, request_id=request_id)  # one request sent twice: its decision time is part of it
    first = await consent_stub.RecordConsent(retried, metadata=callers.user("dan"))
    again = await consent_stub.RecordConsent(retried, metadata=callers.user("dan"))
    assert again.record == first.record
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await consent_stub.RecordConsent(give("dan", ANALYTICS, request_id=request_id), metadata=callers.user("dan"))
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS and reason_of(refused.value) == "REQUEST_ID_REUSED"
    history = await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(parent="users/dan"),
                                                    metadata=callers.user("dan"))
    assert len(history.records) == 1


@pytest.mark.parametrize("age", [15, None])
async def test_a_user_not_known_adult_cannot_consent_to_ad_profiling(
        consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers, age: int | None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await consent_stub.RecordConsent(give("eli", ADS), metadata=callers.user("eli", age=age))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(refused.value) == "MINOR_AD_PROFILING"
    await consent_stub.RecordConsent(give("eli", FEED), metadata=callers.user("eli", age=age))  # other purposes: fine
    history = await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(parent="users/eli"),
                                                    metadata=callers.user("eli", age=age))
    assert [r.purpose for r in history.records] == [FEED]


async def test_check_says_no_to_ad_profiling_for_a_known_minor(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                               callers: Callers) -> None:
    await consent_stub.RecordConsent(give("fay", ADS), metadata=callers.user("fay", age=18))
    assert (await check(consent_stub, callers.service_for("fay", age=18), "fay", ADS)).decisions[0].permitted
    minor = await check(consent_stub, callers.service_for("fay", age=17), "fay", ADS)
    assert (minor.decisions[0].permitted, minor.decisions[0].basis) == (False, consent_pb2.CONSENT_BASIS_SUBJECT_IS_MINOR)


async def test_tcf_string_records_one_decision_per_purpose_it_decides(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                                      callers: Callers) -> None:
    tc = tc_string(purposes={1, 3, 4, 7}, vendors={2, 8}, disclosed={2, 8, 21})
    response = await consent_stub.RecordTcfConsent(consent_pb2.RecordTcfConsentRequest(
        parent="users/gus", request_id=str(uuid.uuid4()), tc_string=tc, notice_version="cmp-7", jurisdiction="FR",
        source="cmp/300"), metadata=callers.user("gus"))
    assert (response.tcf.framework_version, list(response.tcf.disclosed_vendors)) == ("2.3", [2, 8, 21])
    decided = {r.purpose: r.decision for r in response.records}
    assert decided[ADS] == GRANTED and decided[consent_pb2.CONSENT_PURPOSE_AD_MEASUREMENT] == GRANTED
    assert decided[FEED] == consent_pb2.CONSENT_DECISION_REFUSED
    state = await consent_stub.GetConsentState(consent_pb2.GetConsentStateRequest(parent="users/gus"),
                                               metadata=callers.officer())
    assert state.tcf.tc_string == tc and {p.purpose for p in state.purposes if p.granted_by_tcf} == {
        consent_pb2.CONSENT_PURPOSE_DEVICE_STORAGE, ADS, consent_pb2.CONSENT_PURPOSE_AD_MEASUREMENT}


async def test_malformed_tcf_string_is_invalid_argument_with_its_reason(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                                         callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await consent_stub.RecordTcfConsent(consent_pb2.RecordTcfConsentRequest(
            parent="users/gus", request_id=str(uuid.uuid4()), tc_string=tc_string(purposes={1}, disclosed=None),
            notice_version="cmp-7", source="cmp/300"), metadata=callers.user("gus"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(refused.value) == "TCF_DISCLOSED_VENDORS_MISSING"


@pytest.mark.parametrize(("who", "allowed"), [
    ("subject", True), ("service for subject", True), ("other user", False), ("service alone", False),
    ("officer", False), ("service for other", False)])
async def test_only_the_subject_or_a_service_for_them_may_record(
        consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers, who: str, allowed: bool) -> None:
    metadata = {"subject": callers.user("hal"), "service for subject": callers.service_for("hal"),
                "other user": callers.user("ivy"), "service alone": callers.service(), "officer": callers.officer(),
                "service for other": callers.service_for("ivy")}[who]
    try:
        await consent_stub.WithdrawConsent(withdraw("hal", FEED), metadata=metadata)
    except grpc.aio.AioRpcError as error:
        assert not allowed and error.code() is grpc.StatusCode.PERMISSION_DENIED
    else:
        assert allowed


async def test_readers_are_the_subject_a_service_for_them_and_officers(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                                      callers: Callers) -> None:
    request = consent_pb2.GetConsentStateRequest(parent="users/jon")
    for metadata in (callers.user("jon"), callers.service_for("jon"), callers.officer()):
        await consent_stub.GetConsentState(request, metadata=metadata)
    for metadata in (callers.user("kim"), callers.service()):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await consent_stub.GetConsentState(request, metadata=metadata)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(consent_stub, callers.service_for("kim"), "jon", FEED)  # for one user, asking about another
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(consent_stub, callers.user("kim"), "jon", FEED)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_every_decision_reaches_the_audit_trail(compliance: RunningService, consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                      callers: Callers) -> None:
    given = await consent_stub.RecordConsent(give("lea", FEED), metadata=callers.user("lea"))
    await consent_stub.WithdrawConsent(withdraw("lea", FEED), metadata=callers.user("lea"))
    async with grpc.aio.insecure_channel(compliance.target) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            reply = await audit.QueryEvents(audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(
                subject="users/lea")), metadata=callers.officer())
            actions = sorted(e.event.action for e in reply.events
                             if e.event.resource.startswith("users/lea/consentRecords/"))
            if len(actions) >= 2 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
    assert actions == ["compliance.RecordConsent", "compliance.WithdrawConsent"]
    assert given.record.name in {e.event.resource for e in reply.events}


async def test_the_ad_repository_targets_by_profile_only_after_a_grant_and_not_after_withdrawal(
        compliance: RunningService, consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers) -> None:
    profiled = ads_pb2.CheckAdTargetingRequest(viewer="users/max", targeting=ads_pb2.AdTargeting(
        min_age=18, interests=["skincare"], uses_profiling=True))
    async with grpc.aio.insecure_channel(compliance.target) as channel:
        ads = ads_pb2_grpc.AdRepositoryServiceStub(channel)
        before = await ads.CheckAdTargeting(profiled, metadata=callers.service_for("max"))
        assert not before.permitted and list(before.refusals) == [ads_pb2.TARGETING_REFUSAL_NO_CONSENT]
        await consent_stub.RecordConsent(give("max", ADS), metadata=callers.user("max"))
        assert (await ads.CheckAdTargeting(profiled, metadata=callers.service_for("max"))).permitted
        await consent_stub.WithdrawConsent(withdraw("max", ADS), metadata=callers.user("max"))
        assert not (await ads.CheckAdTargeting(profiled, metadata=callers.service_for("max"))).permitted


async def test_a_retried_withdrawal_returns_the_first_record(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                             callers: Callers) -> None:
    request = withdraw("nia", FEED)
    first = await consent_stub.WithdrawConsent(request, metadata=callers.user("nia"))
    again = await consent_stub.WithdrawConsent(request, metadata=callers.user("nia"))
    assert again.record == first.record
    request.source = "web/1.0"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await consent_stub.WithdrawConsent(request, metadata=callers.user("nia"))
    assert reason_of(refused.value) == "REQUEST_ID_REUSED"


async def test_a_retried_tcf_request_records_once(consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                                  callers: Callers) -> None:
    request = consent_pb2.RecordTcfConsentRequest(parent="users/oda", request_id=str(uuid.uuid4()),
                                                  tc_string=tc_string(purposes={1, 5, 6}), notice_version="cmp-7",
                                                  source="cmp/300")
    first = await consent_stub.RecordTcfConsent(request, metadata=callers.user("oda"))
    again = await consent_stub.RecordTcfConsent(request, metadata=callers.user("oda"))
    assert list(again.records) == list(first.records)
    history = await consent_stub.ListConsentRecords(consent_pb2.ListConsentRecordsRequest(parent="users/oda"),
                                                    metadata=callers.user("oda"))
    assert len(history.records) == len(first.records)


async def next_change(watch: Any, *, timeout: float = 2.0) -> consent_pb2.WatchConsentChangesResponse:
    change = await asyncio.wait_for(watch.read(), timeout=timeout)
    assert isinstance(change, consent_pb2.WatchConsentChangesResponse)
    return change


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
async def test_a_withdrawal_through_one_replica_holds_at_the_other(
        tmp_path: Path, database_engine: str, callers: Callers) -> None:
    """Two compliance replicas over one PostgreSQL: neither answers from a state the other has changed."""
    replicas = [await start_service("compliance", build, port=0, data_root=tmp_path) for _ in range(2)]
    try:
        async with grpc.aio.insecure_channel(replicas[0].target) as first, \
                grpc.aio.insecure_channel(replicas[1].target) as second:
            one, other = consent_pb2_grpc.ConsentServiceStub(first), consent_pb2_grpc.ConsentServiceStub(second)
            watch = other.WatchConsentChanges(consent_pb2.WatchConsentChangesRequest(), metadata=callers.service())
            head = await next_change(watch, timeout=5)
            assert not (await check(one, callers.service(), "ana", FEED)).decisions[0].permitted
            given = await one.RecordConsent(give("ana", FEED), metadata=callers.user("ana"))
            # A cache watching the other replica hears of it too, once.
            change = await next_change(watch)
            assert (change.subject, change.sequence, list(change.purposes)) == (
                "users/ana", given.record.version, [FEED])
            assert given.record.version > head.sequence
            assert (await check(other, callers.service(), "ana", FEED)).decisions[0].permitted
            assert (await check(one, callers.service(), "ana", FEED)).decisions[0].permitted
            withdrawn = await other.WithdrawConsent(withdraw("ana", FEED), metadata=callers.service_for("ana"))
            assert withdrawn.record.version == given.record.version + 1
            answer = await check(one, callers.service(), "ana", FEED)
            assert (answer.decisions[0].permitted, answer.version) == (False, withdrawn.record.version)
            change = await next_change(watch)  # its own, announced once as well
            assert (change.subject, change.sequence) == ("users/ana", withdrawn.record.version)
            with pytest.raises(asyncio.TimeoutError):
                await next_change(watch, timeout=0.3)
    finally:
        for replica in replicas:
            await replica.stop(grace=0)
