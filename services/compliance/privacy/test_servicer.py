from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService
from services.compliance.privacy.servicer import PrivacyArea


def bearer(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    token = mint_token(platform_signing_key(root), TokenClaims(subject, frozenset(roles)), ttl=dt.timedelta(minutes=5))
    return (("authorization", f"Bearer {token}"),)


async def test_a_service_gets_the_same_key_to_seal_and_to_open(
    privacy_server: tuple[RunningService, PrivacyArea], tmp_path: Path,
) -> None:
    running, _ = privacy_server
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = privacy_pb2_grpc.PersonalDataKeyServiceStub(channel)
        service = bearer(tmp_path, "services/gifts", Role.SERVICE)
        current = await stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject="users/ada"), metadata=service)
        named = await stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject="users/ada", key_id=current.key_id),
                                      metadata=service)
    assert len(current.key) == 32 and named.key == current.key
    assert current.cache_ttl.ToTimedelta() == dt.timedelta(seconds=7)


@pytest.mark.parametrize("roles", [(Role.VIEWER,), (Role.COMPLIANCE_OFFICER,), (Role.ADMIN,)])
async def test_no_person_may_fetch_a_data_key(
    privacy_server: tuple[RunningService, PrivacyArea], tmp_path: Path, roles: tuple[Role, ...],
) -> None:
    running, _ = privacy_server
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = privacy_pb2_grpc.PersonalDataKeyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject="users/ada"),
                                  metadata=bearer(tmp_path, "users/ada", *roles))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_after_shredding_the_key_is_refused_with_its_reason(
    privacy_server: tuple[RunningService, PrivacyArea], tmp_path: Path,
) -> None:
    running, area = privacy_server
    area.keys.current_key("users/ada")
    area.keys.shred("users/ada")
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = privacy_pb2_grpc.PersonalDataKeyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject="users/ada"),
                                  metadata=bearer(tmp_path, "services/gifts", Role.SERVICE))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "DATA_KEY_SHREDDED" in str(refused.value.trailing_metadata())
