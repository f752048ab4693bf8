"""The gifts domain: entities, value objects and the rules between them. No I/O.

    ledger.py       accounts, transfers, balances, the gift split, and the ledger's invariants
    records.py      gifts, top-ups, payouts and how their state follows from the ledger
    live.py         LIVE sessions and their one state machine
    eligibility.py  who may go LIVE, buy, send, receive and cash out
    fraud.py        the fraud rules and their reasons
    catalog.py      published gift prices and coin packs
    payments.py     payment providers and the local provider's signed receipts
    idempotency.py  one effect per request id
    audit.py        what an audit event says, in gifts' terms
    views.py        read models (wallet, statement, feed, leaderboard, standing)
    names.py        the API's resource names
    access.py       ownership checks beside the kit's role policy
    periods.py      leaderboard periods
    ids.py          time-ordered ids
"""
