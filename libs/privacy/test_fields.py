"""PersonalData against a real compliance server: keys over the RPC, cached, and gone after erasure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from limelight.compliance.v1 import privacy_pb2_grpc
from opentelemetry import trace

from libs.auth.tokens import platform_signing_key
from libs.clock import utc_now
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import RunningService, start_service
from libs.privacy.fields import EphemeralDataKeys, PersonalData, SubjectErased
from libs.privacy.remote import RemoteDataKeys
from libs.privacy.sealing import DataKey
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey
from services.compliance.privacy.store import PrivacyStore
from services.compliance.privacy.usecases import DataKeys
from services.compliance.server import build


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def compliance(tmp_path: Path) -> AsyncIterator[RunningService]:
    running = await start_service("compliance", build, port=0, data_root=tmp_path)
    yield running
    await running.stop(grace=0)


@pytest.fixture
async def keys(tmp_path: Path, compliance: RunningService) -> AsyncIterator[RemoteDataKeys]:
    clients = ServiceClients(tracer=trace.get_tracer("test"),
                             service_token=ServiceTokenSource("gifts", platform_signing_key(tmp_path)),
                             targets={"compliance": compliance.target})
    yield RemoteDataKeys(clients.stub("compliance", privacy_pb2_grpc.PersonalDataKeyServiceStub))
    await clients.close()


def shred(tmp_path: Path, subject: str) -> None:
    """Erasure's last step, as compliance runs it."""
    store = PrivacyStore.open(tmp_path)
    DataKeys(store, LocalKeyEncryptionKey.for_deployment(tmp_path), utc_now).shred(subject)
    store.close()


async def test_fields_sealed_by_one_service_open_in_another(keys: RemoteDataKeys) -> None:
    sealed = await PersonalData(keys).seal("users/ada", "gift.message", "für dich, Ada")
    assert b"Ada" not in sealed
    assert await PersonalData(keys).open("users/ada", "gift.message", sealed) == "für dich, Ada"


async def test_after_erasure_every_copy_is_unreadable_once_the_cache_expires(
    keys: RemoteDataKeys, tmp_path: Path,
) -> None:
    clock = Clock()
    personal = PersonalData(keys, monotonic=clock)
    sealed = await personal.seal("users/ada", "caption", "my first video")
    backup = bytes(sealed)
    shred(tmp_path, "users/ada")
    clock.now += 31.0  # past the key's cache lifetime (30 s by default)
    assert await personal.open("users/ada", "caption", sealed) is None
    assert await PersonalData(keys).open("users/ada", "caption", backup) is None
    with pytest.raises(SubjectErased):
        await personal.seal("users/ada", "caption", "again")


async def test_forget_drops_a_cached_key_at_once(keys: RemoteDataKeys, tmp_path: Path) -> None:
    personal = PersonalData(keys)
    sealed = await personal.seal("users/ada", "caption", "hello")
    shred(tmp_path, "users/ada")
    assert await personal.open("users/ada", "caption", sealed) == "hello"  # still cached
    personal.forget("users/ada")
    assert await personal.open("users/ada", "caption", sealed) is None


async def test_nothing_stored_opens_to_nothing(keys: RemoteDataKeys) -> None:
    assert await PersonalData(keys).open("users/ada", "caption", None) is None


async def test_ephemeral_keys_seal_open_and_shred_in_one_process() -> None:
    keys = EphemeralDataKeys()
    personal = PersonalData(keys)
    sealed = await personal.seal("users/ada", "caption", "hello")
    assert await personal.open("users/ada", "caption", sealed) == "hello"
    keys.shred("users/ada")
    personal.forget("users/ada")
    assert await personal.open("users/ada", "caption", sealed) is None
    with pytest.raises(SubjectErased):
        await personal.seal("users/ada", "caption", "again")


class _HeldKeys(EphemeralDataKeys):
    """Ephemeral keys whose fetch for `held` waits until released; counts fetches per subject."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()
        self.fetches: dict[str, int] = {}

    async def current_key(self, subject: str) -> tuple[DataKey, float]:
        self.fetches[subject] = self.fetches.get(subject, 0) + 1
        if subject == self.held:
            await self.release.wait()
        return await super().current_key(subject)


async def test_a_slow_key_fetch_for_one_subject_holds_up_no_other_and_is_made_once() -> None:
    keys = _HeldKeys("users/slow")
    personal = PersonalData(keys)
    slow = [asyncio.create_task(personal.seal("users/slow", "f", "x")) for _ in range(3)]
    await asyncio.wait_for(personal.seal("users/fast", "f", "y"), timeout=2)  # not queued behind users/slow
    keys.release.set()
    await asyncio.gather(*slow)
    assert keys.fetches == {"users/slow": 1, "users/fast": 1}
