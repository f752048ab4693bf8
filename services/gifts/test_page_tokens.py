from __future__ import annotations

import pytest

from libs.errors import InvalidArgument
from services.gifts.page_tokens import MAX_PAGE_SIZE, decode_cursor, decode_int_cursor, encode_cursor, page_size


def test_a_cursor_round_trips_within_its_scope() -> None:
    assert decode_int_cursor(encode_cursor("lives/x", 42), "lives/x", field="cursor") == 42
    assert decode_cursor(encode_cursor("lives/x", "abc-1"), "lives/x") == "abc-1"
    assert decode_cursor("", "lives/x", field="cursor") is None


@pytest.mark.parametrize("token", [encode_cursor("lives/y", 42), "garbage!", encode_cursor("lives/x", -1), "djE"])
def test_a_foreign_or_mangled_cursor_is_refused_on_its_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_int_cursor(token, "lives/x", field="page_token")
    assert refused.value.violations[0].field == "page_token"


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 50 and page_size(10**6) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)
