"""Every service, through real servers: serving, reflective, validating, and honest about what is not built."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.config import SERVICES
from libs.kit.registry import proto_services
from libs.kit.server import package_definition, start_service
from tests.conftest import InProcessPlatform
from tools.contract_samples import MALFORMED_REQUESTS

ALL_ROLES = tuple(Role)


def rpc_for(module_name: str, message_name: str) -> tuple[str, type, type]:
    """(method path, request type, response type) of the RPC taking `message_name`."""
    module = importlib.import_module(module_name)
    for service in module.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            if method.input_type.name == message_name:
                response_module = importlib.import_module(
                    method.output_type.file.name.removesuffix(".proto").replace("/", ".") + "_pb2"
                )
                return (
                    f"/{service.full_name}/{method.name}",
                    getattr(module, message_name),
                    getattr(response_module, method.output_type.name),
                )
    raise LookupError(f"no RPC takes {message_name}")


async def unary(platform: InProcessPlatform, service: str, method: str, request: object, response_type: type) -> object:
    async with grpc.aio.insecure_channel(platform.target(service)) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_type.FromString
        )
        return await call(request, metadata=[("authorization", f"Bearer {platform.token('users/ada', *ALL_ROLES)}")],
                          timeout=10)


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_reports_serving_for_every_service_it_serves(platform: InProcessPlatform, service: str) -> None:
    async with grpc.aio.insecure_channel(platform.target(service)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ["", *platform.services[service].definition.service_names]:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


@pytest.mark.parametrize("service", SERVICES)
async def test_reflection_lists_the_whole_contract(platform: InProcessPlatform, service: str) -> None:
    async with grpc.aio.insecure_channel(platform.target(service)) as channel:
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        listed = {s.name async for r in responses for s in r.list_services_response.service}
    own_package = {s.full_name for s in proto_services(f"limelight.{service}.v1")}
    served = set(platform.services[service].definition.service_names)
    assert own_package and own_package <= served <= listed


@pytest.mark.parametrize("case", MALFORMED_REQUESTS, ids=[case[1] for case in MALFORMED_REQUESTS])
async def test_a_malformed_request_is_invalid_argument_naming_the_field(
    platform: InProcessPlatform, case: tuple[str, str, dict[str, object], dict[str, object], str]
) -> None:
    module_name, message_name, _, malformed, bad_field = case
    method, request_type, response_type = rpc_for(module_name, message_name)
    service = module_name.split(".")[1]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(platform, service, method, json_format.ParseDict(malformed, request_type()), response_type)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [violation.field for violation in bad_request.field_violations] == [bad_field]


async def test_a_service_registered_without_its_implementation_answers_unimplemented(tmp_path: Path) -> None:
    """Every service is built today; a contract-only server (the kit's base servicers, as for a
    service added to the contract before it is built) answers a valid call UNIMPLEMENTED."""
    module_name, message_name, valid, _, _ = next(case for case in MALFORMED_REQUESTS if ".shop." in case[0])
    method, request_type, response_type = rpc_for(module_name, message_name)
    contract_only = await start_service("shop", lambda runtime: package_definition("limelight.shop.v1"), port=0,
                                        data_root=tmp_path)
    token = mint_token(platform_signing_key(tmp_path), TokenClaims("users/ada", frozenset(ALL_ROLES)),
                       ttl=dt.timedelta(minutes=5))
    try:
        async with grpc.aio.insecure_channel(contract_only.target) as channel:
            call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=response_type.FromString)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(json_format.ParseDict(valid, request_type()),
                           metadata=[("authorization", f"Bearer {token}")], timeout=10)
    finally:
        await contract_only.stop(grace=0)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
