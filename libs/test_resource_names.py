from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from libs.resource_names import RESOURCE_NAME_INVALID, ResourcePattern, is_valid_id

GIFT_TRANSFER = ResourcePattern("creators/{creator}/lives/{live}/giftTransfers/{gift_transfer}")
WALLET = ResourcePattern("users/{user}/wallet")

ids = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


@given(creator=ids, live=ids, gift_transfer=ids)
def test_parse_inverts_format(creator: str, live: str, gift_transfer: str) -> None:
    name = GIFT_TRANSFER.format(creator=creator, live=live, gift_transfer=gift_transfer)
    assert GIFT_TRANSFER.parse(name) == {"creator": creator, "live": live, "gift_transfer": gift_transfer}
    assert GIFT_TRANSFER.format(**GIFT_TRANSFER.parse(name)) == name


@given(name=st.text(alphabet="abcAB-/0{}", max_size=40))
def test_a_name_matches_exactly_when_it_parses(name: str) -> None:
    if GIFT_TRANSFER.matches(name):
        assert GIFT_TRANSFER.format(**GIFT_TRANSFER.parse(name)) == name
    else:
        with pytest.raises(InvalidArgument):
            GIFT_TRANSFER.parse(name)


def _problem(pattern: ResourcePattern, name: str, field: str = "name") -> str:
    with pytest.raises(InvalidArgument) as refused:
        pattern.parse(name, field=field)
    assert refused.value.reason == RESOURCE_NAME_INVALID
    assert [v.field for v in refused.value.violations] == [field]
    return refused.value.violations[0].description


def test_a_capital_letter_is_explained_in_words_not_a_regular_expression() -> None:
    problem = _problem(GIFT_TRANSFER, "creators/Ada/lives/l1/giftTransfers/g7")
    assert "creator id 'Ada'" in problem and "lowercase letters" in problem
    assert not any(mark in problem for mark in ("[", "^", "(?", "\\"))


def test_the_field_and_the_expected_shape_are_named() -> None:
    problem = _problem(GIFT_TRANSFER, "lives/l1", field="parent")
    assert "creators/{creator}/lives/{live}/giftTransfers/{gift_transfer}" in problem
    assert "expected 'lives'" in _problem(GIFT_TRANSFER, "creators/ada/live/l1/giftTransfers/g7")
    assert "empty" in _problem(WALLET, "")


def test_ids_follow_the_protos_rule() -> None:
    assert all(is_valid_id(text) for text in ("a", "ada", "0-9", "a" * 63))
    assert not any(is_valid_id(text) for text in ("", "-a", "a-", "A", "a_b", "a" * 64, "a/b", "é"))


def test_a_singleton_and_a_wildcard() -> None:
    assert WALLET.parse("users/u1/wallet") == {"user": "u1"}
    assert WALLET.parent_of({"user": "u1"}) == "users/u1"
    assert GIFT_TRANSFER.parent_of({"creator": "ada", "live": "l1", "gift_transfer": "g"}) == "creators/ada/lives/l1"
    assert not WALLET.matches("users/-/wallet")
    assert WALLET.parse("users/-/wallet", wildcard=True) == {"user": "-"}


def test_format_refuses_what_parse_would() -> None:
    with pytest.raises(ValueError):
        WALLET.format(user="Ada")
    with pytest.raises(ValueError):
        WALLET.format(user="u1", extra="x")
    with pytest.raises(ValueError):
        ResourcePattern("users/{user}/{user}")
