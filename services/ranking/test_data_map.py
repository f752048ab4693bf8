from __future__ import annotations

from pathlib import Path

from libs.privacy.data_map import schema_after, undeclared_columns
from services.ranking.data_map import DATA_MAP
from services.ranking.store import MIGRATIONS


def test_every_personal_column_of_the_ranking_database_is_in_the_data_map(tmp_path: Path) -> None:
    assert undeclared_columns(DATA_MAP, schema_after(MIGRATIONS, tmp_path)) == []
