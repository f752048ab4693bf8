"""`limelight dev receipt` against a running gifts service (issue 16): no key handled by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from limelight.gifts.v1 import wallet_pb2
from typer.testing import CliRunner

from services.gifts.test_server import UNLIMITED, Gifts, start_gifts
from tools.dev_cli import app as dev_app


def dev_receipt(root: Path, *arguments: str) -> str:
    result = CliRunner().invoke(dev_app, ["receipt", *arguments], env={"LIMELIGHT_DATA_DIR": str(root)})
    assert result.exit_code == 0, result.output
    return result.output.strip()


async def test_a_dev_receipt_from_the_cli_tops_up_a_running_service(tmp_path: Path) -> None:
    running, service, clock = await start_gifts(tmp_path, UNLIMITED, ledger_process=False)
    clock.now = dt.datetime.now(dt.UTC)  # the CLI dates its receipt by the wall clock
    gifts = Gifts(running, service, tmp_path, clock)
    try:
        receipt = dev_receipt(tmp_path, "--user", "users/alice", "--pack", "coinPacks/coins-500")
        request = wallet_pb2.TopUpCoinsRequest(
            request_id=str(uuid.uuid4()), wallet="users/alice/wallet", coin_pack="coinPacks/coins-500",
            receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=receipt))
        response = await gifts.stubs().wallet.TopUpCoins(request, metadata=gifts.auth("users/alice"))
        assert response.wallet.coin_balance == 500
    finally:
        await gifts.close()
        await running.stop(grace=0)


def test_a_dev_receipt_names_a_published_pack(tmp_path: Path) -> None:
    result = CliRunner().invoke(dev_app, ["receipt", "--user", "alice", "--pack", "coins-7"],
                                env={"LIMELIGHT_DATA_DIR": str(tmp_path)})
    assert result.exit_code != 0 and "coins-1000" in result.output
