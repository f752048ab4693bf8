from __future__ import annotations

from pathlib import Path

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, schema_after, undeclared_columns
from libs.storage.database import Migration

MIGRATIONS = [Migration(1, "CREATE TABLE profile (user_id TEXT, display_name BLOB, follower_count INTEGER);")]


def test_a_personal_sounding_column_the_map_does_not_declare_is_reported(tmp_path: Path) -> None:
    data_map = DataMap("services/x", (), not_personal=(NotPersonal("profile.user_id", "opaque id"),))
    assert undeclared_columns(data_map, schema_after(MIGRATIONS, tmp_path)) == ["profile.display_name"]


def test_a_map_that_declares_every_such_column_passes(tmp_path: Path) -> None:
    data_map = DataMap("services/x", (), personal_fields=(PersonalField("profile.display_name", "name", sealed=True),),
                       not_personal=(NotPersonal("profile.user_id", "opaque id"),))
    assert undeclared_columns(data_map, schema_after(MIGRATIONS, tmp_path)) == []


def test_a_declared_column_the_schema_lost_is_reported(tmp_path: Path) -> None:
    data_map = DataMap("services/x", (), personal_fields=(PersonalField("profile.display_name", "name", sealed=True),
                                                          PersonalField("profile.email", "e-mail", sealed=True)),
                       not_personal=(NotPersonal("profile.user_id", "opaque id"),))
    assert undeclared_columns(data_map, schema_after(MIGRATIONS, tmp_path)) == [
        "profile.email (declared, not in the schema)"]
