"""Who may delegate and what each method needs: decided by verified roles, never by a name's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, TokenVerifier, mint_token, platform_signing_key
from libs.errors import Unauthenticated
from libs.kit.access import ON_BEHALF_OF_HEADER, AccessPolicy, Authenticator, method_paths
from libs.kit.context import CallIdentity, current_principal
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, package_definition, start_service
from libs.kit.testing import error_info, raw_unary

DELEGATE = "limelight.test.v1.DelegateService"


async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    principal = current_principal()
    acting_for = principal.on_behalf_of.subject if principal.on_behalf_of else "-"
    return f"{principal.subject} service={principal.is_service} for {acting_for}".encode()


@pytest.fixture
async def delegate(tmp_path: Path) -> AsyncIterator[RunningService]:
    generic = grpc.method_handlers_generic_handler(DELEGATE, {"Who": grpc.unary_unary_rpc_method_handler(who)})

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        return ServiceDefinition(service_names=[DELEGATE],
                                 register=lambda server: server.add_generic_rpc_handlers((generic,)))

    running = await start_service("delegate", build, port=0, data_root=tmp_path)
    yield running
    await running.stop(grace=0)


def mint(root: Path, subject: str, *roles: Role) -> str:
    claims = TokenClaims(subject, frozenset(roles), birth_date=dt.date(1990, 1, 1))
    return mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(minutes=5))


async def call_who(target: str, bearer: str, on_behalf_of: str = "") -> bytes:
    metadata = [("authorization", f"Bearer {bearer}")]
    if on_behalf_of:
        metadata.append((ON_BEHALF_OF_HEADER, on_behalf_of))
    async with grpc.aio.insecure_channel(target) as channel:
        reply: bytes = await raw_unary(channel, f"/{DELEGATE}/Who")(b"", metadata=metadata, timeout=10)
        return reply


async def test_a_services_subject_with_only_the_viewer_role_cannot_delegate(
    delegate: RunningService, tmp_path: Path
) -> None:
    impostor = mint(tmp_path, "services/gifts", Role.VIEWER)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_who(delegate.target, impostor, on_behalf_of=mint(tmp_path, "users/ada", Role.VIEWER))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value).reason == "DELEGATION_NOT_ALLOWED"


async def test_a_services_subject_with_only_the_viewer_role_is_no_service(
    delegate: RunningService, tmp_path: Path
) -> None:
    reply = await call_who(delegate.target, mint(tmp_path, "services/gifts", Role.VIEWER))
    assert reply == b"services/gifts service=False for -"


async def test_a_verified_service_may_act_for_a_user(delegate: RunningService, tmp_path: Path) -> None:
    service = mint(tmp_path, "services/gifts", Role.SERVICE)
    reply = await call_who(delegate.target, service, on_behalf_of=mint(tmp_path, "users/ada", Role.VIEWER))
    assert reply == b"services/gifts service=True for users/ada"


def test_a_caller_that_is_no_service_forwards_its_own_token_as_the_user() -> None:
    key = Ed25519PrivateKey.generate()
    token = mint_token(key, TokenClaims("services/gifts", frozenset({Role.VIEWER})), ttl=dt.timedelta(minutes=5))
    principal = TokenVerifier(key.public_key()).verify(token)
    assert CallIdentity(principal, token).user_token == token


def test_a_service_token_is_refused_without_the_matching_certificate() -> None:
    key = Ed25519PrivateKey.generate()
    authenticator = Authenticator(TokenVerifier(key.public_key()))
    token = mint_token(key, TokenClaims("services/gifts", frozenset({Role.SERVICE})), ttl=dt.timedelta(minutes=5))
    metadata = {"authorization": f"Bearer {token}"}
    for certificate in ("", "ingest"):
        with pytest.raises(Unauthenticated) as raised:
            authenticator.authenticate(metadata, lambda: certificate)  # noqa: B023 (called at once)
        assert raised.value.reason == "SERVICE_CERTIFICATE_REQUIRED"
    authenticated = authenticator.authenticate(metadata, lambda: "gifts")
    assert authenticated is not None and authenticated[0].is_service


def test_the_access_table_lists_every_method_with_the_rule_the_kit_enforces() -> None:
    catalog = "limelight.shop.v1.CatalogService"
    definition = package_definition(
        "limelight.shop.v1",
        policy=AccessPolicy(
            public=frozenset({f"/{catalog}/GetProduct"}),
            roles=method_paths(catalog, {"CreateProduct": frozenset({Role.MERCHANT, Role.ADMIN})}),
        ),
    )
    table = {row.method: row for row in definition.access_table()}
    assert {row.method.split("/")[1] for row in table.values()} == set(definition.service_names)
    assert table[f"/{catalog}/GetProduct"].rule == "public (no token needed)"
    assert table[f"/{catalog}/CreateProduct"].rule == "one of: admin, merchant"
    assert table[f"/{catalog}/ListProducts"].rule == "any valid token"
    assert len(table) > 3


def test_with_certificates_checked_the_service_role_on_a_user_subject_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    authenticator = Authenticator(TokenVerifier(key.public_key()))
    token = mint_token(key, TokenClaims("users/ada", frozenset({Role.SERVICE})), ttl=dt.timedelta(minutes=5))
    with pytest.raises(Unauthenticated) as raised:
        authenticator.authenticate({"authorization": f"Bearer {token}"}, lambda: "")
    assert raised.value.reason == "SERVICE_CERTIFICATE_REQUIRED"
