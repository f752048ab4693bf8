from __future__ import annotations

from pathlib import Path

from libs.privacy.data_map import schema_after, undeclared_columns
from services.affiliate.data_map import DATA_MAP
from services.affiliate.store import MIGRATIONS


def test_every_personal_column_of_the_affiliate_database_is_in_the_data_map(tmp_path: Path) -> None:
    assert undeclared_columns(DATA_MAP, schema_after(MIGRATIONS, tmp_path)) == []
