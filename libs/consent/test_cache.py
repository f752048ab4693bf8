"""The consent cache in a caller, against a real compliance server: a withdrawal reaches it within a second."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

from libs.consent.cache import ConsentCache
from services.compliance.consent.conftest import Callers

FEED = consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT
ADS = consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS


@pytest.fixture
async def cache(callers: Callers, consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub) -> AsyncIterator[ConsentCache]:
    opened = ConsentCache(consent_stub, metadata=callers.service())
    await opened.start()
    await opened.wait_live()
    yield opened
    await opened.stop()


async def grant(stub: consent_pb2_grpc.ConsentServiceAsyncStub, callers: Callers, user: str,
                purpose: consent_pb2.ConsentPurpose) -> None:
    request = consent_pb2.RecordConsentRequest(
        parent=f"users/{user}", request_id=str(uuid.uuid4()), purpose=purpose,
        decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="2026-05-01",
        method=consent_pb2.CONSENT_METHOD_IN_APP_DIALOG, source="ios/5.2.1")
    request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
    await stub.RecordConsent(request, metadata=callers.user(user))


async def until(condition: object, *, within: float) -> float:
    """Seconds until `condition()` holds, polled without assuming any order; fails after `within`."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, f"not within {within} s"
        await asyncio.sleep(0.001)
    return time.monotonic() - start


async def test_no_record_means_no_and_is_cached(cache: ConsentCache) -> None:
    assert await cache.permitted("users/nia", FEED) is False
    assert cache.cached("users/nia", FEED) is False


async def test_a_withdrawal_reaches_the_callers_cache_within_one_second(
        callers: Callers, consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub, cache: ConsentCache) -> None:
    await grant(consent_stub, callers, "ola", FEED)
    assert await cache.permitted("users/ola", FEED) is True
    assert cache.cached("users/ola", FEED) is True
    await consent_stub.WithdrawConsent(consent_pb2.WithdrawConsentRequest(
        parent="users/ola", request_id=str(uuid.uuid4()), purpose=FEED, source="ios/5.2.1"),
        metadata=callers.user("ola"))
    await until(lambda: cache.cached("users/ola", FEED) is not True, within=1.0)
    assert await cache.permitted("users/ola", FEED) is False


async def test_a_grant_reaches_the_cache_too(callers: Callers, consent_stub: consent_pb2_grpc.ConsentServiceAsyncStub,
                                             cache: ConsentCache) -> None:
    assert await cache.permitted("users/pia", ADS) is False
    await grant(consent_stub, callers, "pia", ADS)
    await until(lambda: cache.cached("users/pia", ADS) is None, within=1.0)
    assert await cache.permitted("users/pia", ADS) is True


async def test_an_answer_older_than_a_reported_change_is_not_kept(cache: ConsentCache) -> None:
    cache._changed("users/qui", 10**9)  # the stream reported a change the answer in flight predates
    assert await cache.permitted("users/qui", FEED) is False
    assert cache.cached("users/qui", FEED) is None


async def test_a_cached_check_costs_well_under_five_microseconds(cache: ConsentCache) -> None:
    await cache.permitted("users/rae", FEED)
    calls = 100_000
    start = time.perf_counter()
    for _ in range(calls):
        cache.cached("users/rae", FEED)
    per_call = (time.perf_counter() - start) / calls
    assert per_call < 5e-6, f"{per_call * 1e6:.2f} µs per cached check"
