"""Live shopping across real servers: shop pins a product in a LIVE that gifts runs, asks
compliance's disclosure engine for the label, registers the pin in the ad repository, and sells at
the flash price only inside the pin's window by its own (here: moved) clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc
from limelight.gifts.v1 import live_pb2, live_pb2_grpc, standing_pb2, standing_pb2_grpc
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    live_pins_pb2,
    live_pins_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.testing import error_info
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from services.compliance.server import build as build_compliance
from services.gifts.server import build as build_gifts
from services.shop.config import ShopConfig
from services.shop.server import ShopService

SHOP_START = dt.datetime(2026, 6, 1, 18, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = SHOP_START

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Live:
    root: Path
    shop: ShopService
    clock: Clock
    servers: dict[str, RunningService]
    channels: list[grpc.aio.Channel]

    def auth(self, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER}),
                             birth_date=birth_date_for_age(30, dt.date.today()))
        token = mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(hours=1))
        return (("authorization", f"Bearer {token}"),)

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(self.servers[service].target)
        self.channels.append(channel)
        return channel


@pytest.fixture
async def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Live]:
    monkeypatch.setenv("LIMELIGHT_GIFTS_LEDGER", "in-process")
    clock = Clock()
    built: list[ShopService] = []

    def build_shop(runtime: ServiceRuntime) -> ServiceDefinition:
        built.append(ShopService(runtime, config=ShopConfig(ship_audit=False, sweep_interval=dt.timedelta(hours=1)),
                                 clock=clock, personal=PersonalData(EphemeralDataKeys())))
        return built[0].definition()

    servers: dict[str, RunningService] = {}
    servers["compliance"] = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    servers["gifts"] = await start_service("gifts", build_gifts, port=0, data_root=tmp_path,
                                           targets={"compliance": servers["compliance"].target})
    servers["shop"] = await start_service("shop", build_shop, port=0, data_root=tmp_path, targets={
        "compliance": servers["compliance"].target, "gifts": servers["gifts"].target, "affiliate": "127.0.0.1:1"})
    handle = Live(tmp_path, built[0], clock, servers, [])
    yield handle
    for channel in handle.channels:
        await channel.close()
    for name in ("shop", "gifts", "compliance"):
        await servers[name].stop(grace=0.5)


async def _go_live(live: Live, creator: str) -> str:
    channel = live.channel("gifts")
    request = standing_pb2.UpdateAccountStandingRequest(standing=standing_pb2.AccountStanding(
        name=f"users/{creator}/standing", follower_count=5_000, identity_verified=True))
    request.update_mask.paths.extend(["follower_count", "identity_verified"])
    await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
        request, metadata=live.auth("users/ops", Role.ADMIN))
    started = await live_pb2_grpc.LiveServiceStub(channel).StartLive(live_pb2.StartLiveRequest(
        parent=f"creators/{creator}", request_id=str(uuid.uuid4()), title="drop night"),
        metadata=live.auth(f"users/{creator}", Role.CREATOR))
    return started.live_session.name


async def _product(live: Live) -> str:
    channel = live.channel("shop")
    merchant = live.auth("users/acme", Role.MERCHANT)
    created = await catalog_pb2_grpc.CatalogServiceStub(channel).CreateProduct(catalog_pb2.CreateProductRequest(
        parent="merchants/acme", product_id="glow-stick", product=catalog_pb2.Product(
            title="Glow stick", price_minor=5_000, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_PHYSICAL,
            state=catalog_pb2.PRODUCT_STATE_ACTIVE, vat_rate_bps=1_900)), metadata=merchant)
    await inventory_pb2_grpc.InventoryServiceStub(channel).AdjustInventory(inventory_pb2.AdjustInventoryRequest(
        request_id=str(uuid.uuid4()), name=f"{created.product.variants[0].name}/inventory", delta=10,
        reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), metadata=merchant)
    return created.product.name


async def _buy(live: Live, product: str, total: int, live_name: str = "") -> orders_pb2.Order:
    orders = orders_pb2_grpc.OrderServiceStub(live.channel("shop"))
    response = await orders.Checkout(orders_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()), buyer="users/fan", items=[orders_pb2.CheckoutItem(product=product, quantity=1)],
        payment_method=orders_pb2.PaymentMethod(provider="local", token="tok_debit"), expected_total_minor=total,
        currency_code="EUR", live=live_name), metadata=live.auth("users/fan"))
    return response.order


async def test_a_flash_price_applies_only_inside_the_pin_window_of_a_running_live(live: Live) -> None:
    live_name = await _go_live(live, "carol")
    product = await _product(live)
    pins = live_pins_pb2_grpc.LivePinServiceStub(live.channel("shop"))
    request = live_pins_pb2.PinProductRequest(parent=live_name, product=product, flash_price_minor=3_500)
    request.end_time.FromDatetime(SHOP_START + dt.timedelta(minutes=10))
    pinned = (await pins.PinProduct(request, metadata=live.auth("users/carol", Role.CREATOR))).live_pin
    assert pinned.active and pinned.flash_price_minor == 3_500 and pinned.disclosure_label == "Werbung"

    overlay = await pins.ListLivePins(live_pins_pb2.ListLivePinsRequest(parent=live_name, active_only=True),
                                      metadata=live.auth("users/fan"))
    assert [pin.name for pin in overlay.live_pins] == [pinned.name]

    inside = await _buy(live, product, 3_500, live_name)
    assert inside.lines[0].flash_price and inside.total_minor == 3_500
    assert (await _buy(live, product, 5_000)).total_minor == 5_000  # not bought from the LIVE: full price

    live.clock.now = SHOP_START + dt.timedelta(minutes=10)  # the window's end, by the shop's clock
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _buy(live, product, 3_500, live_name)
    assert error_info(raised.value).reason == "PRICE_CHANGED"
    after = await _buy(live, product, 5_000, live_name)
    assert not after.lines[0].flash_price

    # The pin is advertising of the creator's: registered in the DSA ad repository.
    for _ in range(100):  # the shipper delivers in the background; wait for the entry
        await live.shop.shipper.ship_due()
        listed = await pins.ListLivePins(live_pins_pb2.ListLivePinsRequest(parent=live_name),
                                         metadata=live.auth("users/fan"))
        if listed.live_pins[0].ad:
            break
        await asyncio.sleep(0.05)
    ad_name = listed.live_pins[0].ad
    assert ad_name.startswith("ads/") and not listed.live_pins[0].active
    ad = await ads_pb2_grpc.AdRepositoryServiceStub(live.channel("compliance")).GetAd(ads_pb2.GetAdRequest(name=ad_name))
    assert ad.ad.kind == ads_pb2.AD_KIND_PRODUCT_PLACEMENT and ad.ad.creator == "creators/carol"
    assert ad.ad.content == live_name


async def test_only_the_host_pins_and_only_in_a_running_live(live: Live) -> None:
    live_name = await _go_live(live, "dora")
    product = await _product(live)
    pins = live_pins_pb2_grpc.LivePinServiceStub(live.channel("shop"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await pins.PinProduct(live_pins_pb2.PinProductRequest(parent=live_name, product=product),
                              metadata=live.auth("users/eve", Role.CREATOR))
    assert (raised.value.code(), error_info(raised.value).reason) == (grpc.StatusCode.PERMISSION_DENIED,
                                                                      "NOT_LIVE_HOST")
    open_ended = (await pins.PinProduct(live_pins_pb2.PinProductRequest(parent=live_name, product=product),
                                        metadata=live.auth("users/dora", Role.CREATOR))).live_pin
    session = await live_pb2_grpc.LiveServiceStub(live.channel("gifts")).GetLiveSession(
        live_pb2.GetLiveSessionRequest(name=live_name), metadata=live.auth("users/dora"))
    assert open_ended.end_time == session.live_session.max_end_time  # it ends with the LIVE at the latest
    await live_pb2_grpc.LiveServiceStub(live.channel("gifts")).EndLive(
        live_pb2.EndLiveRequest(name=live_name), metadata=live.auth("users/dora", Role.CREATOR))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await pins.PinProduct(live_pins_pb2.PinProductRequest(parent=live_name, product=product),
                              metadata=live.auth("users/dora", Role.CREATOR))
    assert (raised.value.code(), error_info(raised.value).reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                                      "LIVE_NOT_LIVE")
