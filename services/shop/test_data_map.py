from __future__ import annotations

from pathlib import Path

from libs.privacy.data_map import schema_after, undeclared_columns
from services.shop.data_map import DATA_MAP
from services.shop.payments import MIGRATIONS as PAYMENT_MIGRATIONS
from services.shop.store import MIGRATIONS


def test_every_personal_column_of_the_shop_databases_is_in_the_data_map(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "payments").mkdir()
    schema = {**schema_after(MIGRATIONS, tmp_path / "shop"), **schema_after(PAYMENT_MIGRATIONS, tmp_path / "payments")}
    assert undeclared_columns(DATA_MAP, schema) == []
