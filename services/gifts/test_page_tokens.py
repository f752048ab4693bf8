"""Gifts' page tokens, as its lists use the shared codec: bound to their list and its parent."""

from __future__ import annotations

import pytest

from libs.errors import InvalidArgument
from libs.pagination import MAX_PAGE_SIZE, PAGE_TOKEN_INVALID, page_size
from services.gifts.servicer import LIVE_LEADERBOARD, LIVE_SESSIONS, PAYOUTS

LIVE = "creators/c/lives/x"


def test_a_token_round_trips_within_its_list_and_parent() -> None:
    assert LIVE_LEADERBOARD.decode_int(LIVE_LEADERBOARD.encode(42, bound_to=LIVE), bound_to=LIVE) == 42
    assert PAYOUTS.decode_str(PAYOUTS.encode("abc-1", bound_to="users/u|0"), bound_to="users/u|0") == "abc-1"
    assert LIVE_LEADERBOARD.decode_int("", bound_to=LIVE) is None


@pytest.mark.parametrize("token", [LIVE_LEADERBOARD.encode(42, bound_to="creators/c/lives/y"),
                                   LIVE_SESSIONS.encode(42, bound_to=LIVE), "garbage!",
                                   LIVE_LEADERBOARD.encode("x", bound_to=LIVE), "djE"])
def test_a_foreign_or_mangled_token_is_refused_on_its_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        LIVE_LEADERBOARD.decode_int(token, bound_to=LIVE)
    assert refused.value.violations[0].field == "page_token"
    assert refused.value.reason == PAGE_TOKEN_INVALID


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 50 and page_size(10**6) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)
