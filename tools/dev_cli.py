"""`limelight dev`: what a client team needs on a development platform, without handling its keys."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def dev() -> None:
    """Development helpers: receipts from the local payment provider."""


def _bare(name: str, collection: str) -> str:
    """`alice` from `users/alice` or `alice`."""
    return name.removeprefix(f"{collection}/")


@app.command()
def receipt(
    user: Annotated[str, typer.Option(help="The buyer: users/{id} or {id}.")],
    pack: Annotated[str, typer.Option(help="The coin pack: coinPacks/{id} or {id}, for example coins-1000.")],
    receipt_id: Annotated[str | None, typer.Option(help="The provider's receipt id; a fresh UUID by default.")] = None,
) -> None:
    """Ask the local payment provider of this data directory for a receipt (for TopUpCoins,
    provider `local`); the format is documented at `PaymentReceipt.receipt` in wallet.proto.

    Example: limelight dev receipt --user users/alice --pack coins-1000
    """
    from libs.storage.paths import ensure_data_dir
    from services.gifts.config import GiftsConfig
    from services.gifts.providers import issue_dev_receipt

    root = ensure_data_dir()
    try:
        issued = issue_dev_receipt(root, GiftsConfig().catalog, user_id=_bare(user, "users"),
                                   pack_id=_bare(pack, "coinPacks"), now=dt.datetime.now(dt.UTC),
                                   receipt_id=receipt_id)
    except ValueError as unknown:
        raise typer.BadParameter(str(unknown), param_hint="--pack") from None
    typer.echo(issued)
