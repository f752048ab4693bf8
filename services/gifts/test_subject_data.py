from __future__ import annotations

import json

from services.gifts.conftest import Harness
from services.gifts.usecases import subject_data


def test_the_export_holds_the_wallet_its_entries_and_the_lives_of_a_user(harness: Harness) -> None:
    harness.top_up("alice")
    live = harness.go_live("alice")
    sections = subject_data.export(harness.reader, "alice", harness.clock())
    json.dumps(sections)  # machine-readable as it is
    assert sections["wallet"]["COINS"]["credits_posted"] > 0
    assert [entry["entry"]["code"] for entry in sections["ledger_entries"]] == ["TOP_UP_COINS"]
    assert [session["sealed_title"] for session in sections["live_sessions"]] == [live.sealed_title]
    assert subject_data.export(harness.reader, "nobody", harness.clock()) == {}


def test_the_erasure_step_keeps_the_ledger_and_says_under_which_law() -> None:
    erasure = subject_data.erasure()
    assert "kept by law" in erasure.summary
    kept = {retained.data_category: retained.legal_basis for retained in erasure.kept}
    assert kept["gifts.ledger"].startswith("§ 257 HGB / § 147 AO")
