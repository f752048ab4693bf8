from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from libs.pagination import MAX_PAGE_SIZE, PAGE_TOKEN_INVALID, PageTokens, page_size

PAYOUTS = PageTokens("gifts.ListPayouts")


def _refused(call: Callable[[], object]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as refused:
        call()
    assert refused.value.reason == PAGE_TOKEN_INVALID
    assert [v.field for v in refused.value.violations] == ["page_token"]
    return refused.value


# Positions are store keys (resource ids the API bounds, times, counters): far shorter than a token may be.
positions = st.lists(st.one_of(st.integers(), st.text(max_size=100)), min_size=1, max_size=4).map(tuple)


@given(position=positions, bound_to=st.text())
def test_a_token_gives_back_its_position_for_the_same_list_and_filter(position: tuple[int | str, ...],
                                                                     bound_to: str) -> None:
    assert PAYOUTS.decode(PAYOUTS.encode(*position, bound_to=bound_to), bound_to=bound_to) == position


def test_a_position_too_long_for_a_token_is_a_programming_error_not_a_token_refused_later() -> None:
    with pytest.raises(ValueError):
        PAYOUTS.encode("x" * 4_000)


def test_an_empty_token_is_the_first_page() -> None:
    assert PAYOUTS.decode("", bound_to="users/ada") is None
    assert PAYOUTS.decode_int("") is None


def test_a_token_is_refused_for_another_filter_parent_or_list() -> None:
    token = PAYOUTS.encode("p-17", bound_to="users/ada|state=PAID")
    _refused(lambda: PAYOUTS.decode(token, bound_to="users/ada|state=FAILED"))
    _refused(lambda: PAYOUTS.decode(token, bound_to="users/bob|state=PAID"))
    _refused(lambda: PageTokens("gifts.ListGifts").decode(token, bound_to="users/ada|state=PAID"))
    assert PAYOUTS.decode_str(token, bound_to="users/ada|state=PAID") == "p-17"


def test_an_altered_or_foreign_token_is_refused() -> None:
    token = PAYOUTS.encode(40, bound_to="f")
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    payload[1] = [4000]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    _refused(lambda: PAYOUTS.decode(forged, bound_to="f"))
    deep = base64.urlsafe_b64encode(b"[" * 1000 + b"]" * 1000).decode()
    for garbage in ("not a token!", "e30", token[:-3], base64.urlsafe_b64encode(b"v1|gifts|5").decode(), deep,
                    "A" * 5000):
        _refused(partial(PAYOUTS.decode, garbage, bound_to="f"))


def test_a_token_of_the_wrong_shape_is_refused() -> None:
    token = PAYOUTS.encode("17", bound_to="f")
    _refused(lambda: PAYOUTS.decode_int(token, bound_to="f"))
    _refused(lambda: PAYOUTS.decode(token, bound_to="f", shape=(str, int)))
    assert PAYOUTS.decode(PAYOUTS.encode(1700, "v1"), shape=(int, str)) == (1700, "v1")


def test_the_message_tells_the_caller_what_to_do() -> None:
    assert "empty page_token" in _refused(lambda: PAYOUTS.decode("junk")).message


def test_page_size_defaults_caps_and_refuses_negatives() -> None:
    assert page_size(0) == 50
    assert page_size(0, default=100) == 100
    assert page_size(7) == 7
    assert page_size(10**6) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as refused:
        page_size(-1)
    assert refused.value.violations[0].field == "page_size"
