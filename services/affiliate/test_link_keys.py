"""Key rotation through restarts on one data directory: old links verify until their key is retired."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.kit.server import start_service
from libs.kit.testing import status_detail
from libs.storage.secret_files import SecretFileError
from services.affiliate.config import AffiliateConfig
from services.affiliate.conftest import fresh, start_affiliate
from services.affiliate.link_keys import key_directory, load_key_ring
from services.affiliate.model.links import sign_token, verify_token
from services.compliance.server import build as build_compliance


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_key_ring(tmp_path, "k1", frozenset())
    path = key_directory(tmp_path) / "k1.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(SecretFileError):
        load_key_ring(tmp_path, "k1", frozenset())


def test_rotation_keeps_old_links_verifying_until_their_key_is_retired(tmp_path: Path) -> None:
    old = sign_token(load_key_ring(tmp_path, "k1", frozenset()), "creators/a/trackingLinks/l1", "merchants/m/programs/p", "")
    rotated = load_key_ring(tmp_path, "k2", frozenset())
    assert verify_token(rotated, old).key_id == "k1"
    assert sign_token(rotated, "creators/a/trackingLinks/l2", "merchants/m/programs/p", "").split(".")[1] == "k2"
    with pytest.raises(Exception, match="retired"):
        verify_token(load_key_ring(tmp_path, "k2", frozenset({"k1"})), old)


async def test_a_click_on_a_link_signed_with_a_retired_key_is_refused(tmp_path: Path) -> None:
    compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    first = await start_affiliate(tmp_path, compliance, AffiliateConfig(link_key_id="k1"))
    try:
        program = await first.program(fresh("m"))
        old_link = await first.link(fresh("c"), program)
        buyer = fresh("u")
        await first.grant_tracking(buyer)
    finally:
        await first.stop()
    rotated = await start_affiliate(tmp_path, compliance, AffiliateConfig(link_key_id="k2"))
    try:
        assert (await rotated.click(old_link.token, user=buyer)).counted, "the old key still verifies"
        new_link = await rotated.link(fresh("c"), program)
        assert new_link.token.split(".")[1] == "k2"
    finally:
        await rotated.stop()
    retired = await start_affiliate(tmp_path, compliance, AffiliateConfig(link_key_id="k2",
                                                                          retired_link_keys=frozenset({"k1"})))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await retired.click(old_link.token, user=fresh("u"))
        violation = status_detail(refused.value, error_details_pb2.BadRequest).field_violations[0]
        assert (refused.value.code(), violation.field, violation.reason) == \
            (grpc.StatusCode.INVALID_ARGUMENT, "token", "TOKEN_KEY_RETIRED")
        assert (await retired.click(new_link.token, user=buyer)).counted
    finally:
        await retired.stop()
        await compliance.stop(grace=0)
