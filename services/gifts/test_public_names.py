"""Public transaction ids count nothing: a keyed permutation of the ledger's row ids (issue 16)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.gifts.model.names import TransactionIds

IDS = TransactionIds(b"k" * 32)


@given(st.integers(0, 2**64 - 1))
def test_a_public_transaction_id_names_its_transfer(transfer_id: int) -> None:
    assert IDS.transfer_id(IDS.public(transfer_id)) == transfer_id


def test_public_transaction_ids_do_not_count_and_depend_on_the_key() -> None:
    public = [IDS.public(transfer_id) for transfer_id in range(1, 1_001)]
    assert len(set(public)) == 1_000 and public != sorted(public)
    assert TransactionIds(b"o" * 32).public(1) != public[0]
    assert IDS.transfer_id("12") is None and IDS.transfer_id("not-a-public-id!") is None
