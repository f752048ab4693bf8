from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from libs.privacy.data_map import schema_after, undeclared_columns
from libs.storage.database import Migration
from services.compliance.ads.store import MIGRATIONS as ADS
from services.compliance.audit.store import MIGRATIONS as AUDIT
from services.compliance.consent.store import MIGRATIONS as CONSENT
from services.compliance.data_map import DATA_MAP
from services.compliance.privacy.store import MIGRATIONS as PRIVACY


@pytest.mark.parametrize("migrations", [AUDIT, ADS, CONSENT, PRIVACY], ids=["audit", "ads", "consent", "privacy"])
def test_every_personal_column_of_the_area_databases_is_in_the_data_map(
    tmp_path: Path, migrations: Sequence[Migration],
) -> None:
    columns = schema_after(migrations, tmp_path)
    undeclared = undeclared_columns(DATA_MAP, columns)
    assert [column for column in undeclared if "declared, not in the schema" not in column] == []
    # What the map declares is in one of the areas' databases.
    assert all(column.split(".")[0] in _every_table(tmp_path) for column in DATA_MAP.declared())


def _every_table(tmp_path: Path) -> set[str]:
    tables: set[str] = set()
    for number, migrations in enumerate([AUDIT, ADS, CONSENT, PRIVACY]):
        scratch = tmp_path / f"all-{number}"
        scratch.mkdir(exist_ok=True)
        tables |= set(schema_after(migrations, scratch))
    return tables
