"""The gifts schema: the tables and triggers that enforce the ledger's invariants.

The invariants are written out in `model/ledger.py`; this file is where they are enforced:

- Double entry: a transfer row names one debit and one credit account of its own currency
  (composite foreign keys on (account, currency)), with a positive amount (CHECK); the
  balance rows are changed only by the trigger on transfer INSERT, which adds the amount to
  one debit column and one credit column.
- No user account negative: CHECK `account_would_go_negative` on the balance row, which
  the trigger's UPDATE re-evaluates inside the same statement as the transfer INSERT.
- Immutable entries: UPDATE and DELETE on entry tables abort (triggers).
- One effect per request id: `request.request_id` is the primary key and every transfer
  references its request; the claim, the effect and the result commit together.
- Two-phase: a resolution row must repeat its pending transfer (trigger), resolves it at
  most once (unique index on `pending_id`), cannot post after the timeout nor expire
  before it (trigger).

All tables are STRICT, so an amount is an integer or the write fails.

PostgreSQL (`LIMELIGHT_DATABASE_URL`) holds the same invariants in its own dialect, migration
for migration: the same CHECKs and unique indexes on BIGINT columns, and the triggers as
PL/pgSQL functions that raise `check_violation` / `integrity_constraint_violation` (the
driver's IntegrityError, as SQLite's RAISE(ABORT)). Entry tables refuse UPDATE, DELETE and
TRUNCATE there. Row triggers of PostgreSQL fire after each row of a multi-row INSERT has
been written, at the end of the statement; the CHECK on the balance row still judges the
debit inside that statement, so an overdraft fails the statement whole on both engines.
"""

from __future__ import annotations

from pathlib import Path

from libs.storage.database import Database, Migration, open_database
from libs.storage.paths import data_dir
from services.gifts.store import legacy_outbox
from services.gifts.store.entries import ENTRIES_ARE_FINAL_POSTGRES, immutable, immutable_postgres

SERVICE = "gifts"


def database_path(root: Path | None = None) -> Path:
    """The SQLite file of the ledger (where no `LIMELIGHT_DATABASE_URL` is set)."""
    return (root or data_dir()) / SERVICE / f"{SERVICE}.db"


def open_ledger_database(root: Path | None = None, *, synchronous: str = "FULL") -> Database:
    """The ledger's database on this deployment's engine, migrated."""
    return open_database(SERVICE, MIGRATIONS, synchronous=synchronous, root=root)


_ENTRY_TABLES = ("request", "request_result", "transfer", "gift", "gift_feed", "top_up", "top_up_reversal",
                 "payout", "payout_settlement", "audit_outbox")


_SCHEMA_V1 = """
CREATE TABLE account (
    name TEXT PRIMARY KEY,
    currency TEXT NOT NULL CHECK (currency IN ('COIN', 'DIAMOND', 'EUR')),
    may_go_negative INTEGER NOT NULL CHECK (may_go_negative IN (0, 1)),
    debits_posted INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    opened_at_us INTEGER NOT NULL,
    UNIQUE (name, currency),
    CONSTRAINT account_would_go_negative
        CHECK (may_go_negative = 1 OR credits_posted - debits_posted - debits_pending >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE request (
    request_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    caller TEXT NOT NULL,
    parameters TEXT NOT NULL,
    received_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE request_result (
    request_id TEXT PRIMARY KEY REFERENCES request (request_id),
    result TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE transfer (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES request (request_id),
    code TEXT NOT NULL,
    phase TEXT NOT NULL
        CHECK (phase IN ('POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING', 'EXPIRE_PENDING')),
    debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    pending_id INTEGER REFERENCES transfer (id),
    timeout_us INTEGER,
    gift_id TEXT,
    created_at_us INTEGER NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((phase IN ('POSTED', 'PENDING')) = (pending_id IS NULL)),
    CHECK ((phase = 'PENDING') = (timeout_us IS NOT NULL)),
    FOREIGN KEY (debit_account, currency) REFERENCES account (name, currency),
    FOREIGN KEY (credit_account, currency) REFERENCES account (name, currency)
) STRICT;
CREATE UNIQUE INDEX transfer_resolves_pending_once ON transfer (pending_id) WHERE pending_id IS NOT NULL;
CREATE UNIQUE INDEX transfer_settles_hold_once ON transfer (gift_id)
    WHERE code IN ('DIAMOND_HOLD_RELEASE', 'GIFT_DIAMONDS_REVERSAL');
CREATE INDEX transfer_by_debit ON transfer (debit_account, id);
CREATE INDEX transfer_by_credit ON transfer (credit_account, id);
CREATE INDEX transfer_by_gift ON transfer (gift_id) WHERE gift_id IS NOT NULL;

-- Pending transfers not yet resolved, kept by the triggers below (a work list, not an entry).
CREATE TABLE pending_open (
    transfer_id INTEGER PRIMARY KEY REFERENCES transfer (id),
    timeout_us INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_open_by_timeout ON pending_open (timeout_us);

CREATE TRIGGER transfer_resolution_matches_pending BEFORE INSERT ON transfer WHEN NEW.pending_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a resolution must repeat its pending transfer')
    WHERE NOT EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id AND p.phase = 'PENDING' AND p.debit_account = NEW.debit_account
          AND p.credit_account = NEW.credit_account AND p.currency = NEW.currency AND p.amount = NEW.amount);
    SELECT RAISE(ABORT, 'a pending transfer cannot be posted after its timeout nor expired before it')
    WHERE EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id
          AND ((NEW.phase = 'POST_PENDING' AND NEW.created_at_us >= p.timeout_us)
            OR (NEW.phase = 'EXPIRE_PENDING' AND NEW.created_at_us < p.timeout_us)));
END;

-- The only writer of balances: one UPDATE of both accounts per transfer (cheaper than a
-- trigger per phase, measured), so the CHECK above judges the debit in the same statement.
--   POSTED          posted += amount
--   PENDING         pending += amount
--   POST_PENDING    pending -= amount, posted += amount
--   VOID/EXPIRE     pending -= amount
CREATE TRIGGER transfer_moves_balances AFTER INSERT ON transfer
BEGIN
    UPDATE account SET
        debits_posted = debits_posted + CASE
            WHEN name = NEW.debit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        credits_posted = credits_posted + CASE
            WHEN name = NEW.credit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        debits_pending = debits_pending + CASE
            WHEN name <> NEW.debit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END,
        credits_pending = credits_pending + CASE
            WHEN name <> NEW.credit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END
    WHERE name IN (NEW.debit_account, NEW.credit_account);
END;

CREATE TRIGGER transfer_opens_pending AFTER INSERT ON transfer WHEN NEW.phase = 'PENDING'
BEGIN
    INSERT INTO pending_open (transfer_id, timeout_us) VALUES (NEW.id, NEW.timeout_us);
END;

CREATE TRIGGER transfer_closes_pending AFTER INSERT ON transfer WHEN NEW.pending_id IS NOT NULL
BEGIN
    DELETE FROM pending_open WHERE transfer_id = NEW.pending_id;
END;

CREATE TABLE live_session (
    live_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    title TEXT NOT NULL,
    started_at_us INTEGER NOT NULL,
    deadline_us INTEGER NOT NULL,
    gifts_barred_reason TEXT NOT NULL,
    ended_at_us INTEGER,
    end_reason TEXT,
    CHECK ((ended_at_us IS NULL) = (end_reason IS NULL)),
    CHECK (deadline_us > started_at_us)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX one_open_live_per_host ON live_session (host) WHERE ended_at_us IS NULL;
CREATE INDEX live_by_deadline ON live_session (deadline_us) WHERE ended_at_us IS NULL;
CREATE TRIGGER live_session_ends_once BEFORE UPDATE ON live_session
WHEN OLD.ended_at_us IS NOT NULL OR NEW.live_id <> OLD.live_id OR NEW.host <> OLD.host
  OR NEW.started_at_us <> OLD.started_at_us OR NEW.deadline_us <> OLD.deadline_us
BEGIN
    SELECT RAISE(ABORT, 'a LIVE session only changes by ending, once');
END;

CREATE TABLE account_facts (
    user_id TEXT PRIMARY KEY,
    follower_count INTEGER NOT NULL CHECK (follower_count >= 0),
    good_standing INTEGER NOT NULL CHECK (good_standing IN (0, 1)),
    restriction_reason TEXT NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('PERSONAL', 'BUSINESS', 'POLITICAL', 'GOVERNMENT')),
    identity_verified INTEGER NOT NULL CHECK (identity_verified IN (0, 1)),
    joined_at_us INTEGER,
    updated_at_us INTEGER NOT NULL,
    updated_by TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE gift (
    gift_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    live_id TEXT NOT NULL REFERENCES live_session (live_id),
    sender TEXT NOT NULL,
    creator TEXT NOT NULL,
    catalog_gift TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    coins INTEGER NOT NULL CHECK (coins > 0),
    fee_coins INTEGER NOT NULL CHECK (fee_coins >= 0 AND fee_coins <= coins),
    diamonds INTEGER NOT NULL CHECK (diamonds >= 0),
    sent_at_us INTEGER NOT NULL,
    hold_reasons TEXT NOT NULL,
    CHECK (sender <> creator)
) STRICT;
CREATE INDEX gift_by_sender ON gift (sender, sent_at_us);
CREATE INDEX gift_by_live ON gift (live_id);
CREATE INDEX gift_by_sent_at ON gift (sent_at_us);

-- The LIVE overlay's log: one row per gift that reached the creator, in commit order.
CREATE TABLE gift_feed (
    sequence INTEGER PRIMARY KEY,
    live_id TEXT NOT NULL,
    gift_id TEXT NOT NULL UNIQUE REFERENCES gift (gift_id),
    posted_at_us INTEGER NOT NULL
) STRICT;
CREATE INDEX gift_feed_by_live ON gift_feed (live_id, sequence);

-- Diamonds waiting out their hold, by gift (a work list: a row leaves when released or clawed back).
CREATE TABLE diamond_hold (
    gift_id TEXT PRIMARY KEY REFERENCES gift (gift_id),
    creator TEXT NOT NULL,
    sender TEXT NOT NULL,
    matures_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX diamond_hold_by_maturity ON diamond_hold (matures_at_us);
CREATE INDEX diamond_hold_by_creator ON diamond_hold (creator, matures_at_us);
CREATE INDEX diamond_hold_by_sender ON diamond_hold (sender);

CREATE TABLE top_up (
    top_up_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    pack_id TEXT NOT NULL,
    coins INTEGER NOT NULL CHECK (coins > 0),
    price_eur_cents INTEGER NOT NULL CHECK (price_eur_cents > 0),
    purchased_at_us INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    CONSTRAINT receipt_redeemed_once UNIQUE (provider, receipt_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE top_up_reversal (
    top_up_id TEXT PRIMARY KEY REFERENCES top_up (top_up_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    kind TEXT NOT NULL CHECK (kind IN ('REFUND', 'CHARGEBACK')),
    reversed_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE payout (
    payout_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    eur_cents INTEGER NOT NULL CHECK (eur_cents > 0),
    diamonds INTEGER NOT NULL CHECK (diamonds > 0),
    payout_method TEXT NOT NULL,
    requested_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    diamonds_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id),
    cash_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id)
) STRICT, WITHOUT ROWID;
CREATE INDEX payout_by_user ON payout (user_id, requested_at_us);

CREATE TABLE payout_settlement (
    payout_id TEXT PRIMARY KEY REFERENCES payout (payout_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    paid INTEGER NOT NULL CHECK (paid IN (0, 1)),
    provider_reference TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    settled_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_outbox (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
) STRICT;
-- `log_id` names this outbox for good, so (log_id, sequence) is an event's lasting identity.
CREATE TABLE audit_delivery (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL,
    delivered_through INTEGER NOT NULL CHECK (delivered_through >= 0)
) STRICT;
INSERT INTO audit_delivery (id, log_id, delivered_through) VALUES (1, lower(hex(randomblob(16))), 0);
-- Events compliance refused for good (after they were isolated from their batch), and why.
CREATE TABLE audit_set_aside (
    sequence INTEGER PRIMARY KEY REFERENCES audit_outbox (sequence),
    error TEXT NOT NULL
) STRICT;
""" + "".join(immutable(table) for table in _ENTRY_TABLES)

# 3: StreamGifts numbers each session's gifts from 1 (`live_sequence`) instead of by the feed's
# rowid, which counted every LIVE's gifts (gaps a client could not tell from loss, and the
# platform's volume in public numbers). Existing rows are numbered in their feed order.
_PER_SESSION_SEQUENCE = """
ALTER TABLE gift_feed ADD COLUMN live_sequence INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER gift_feed_is_immutable;
UPDATE gift_feed SET live_sequence = (SELECT COUNT(*) FROM gift_feed AS earlier
    WHERE earlier.live_id = gift_feed.live_id AND earlier.sequence <= gift_feed.sequence);
CREATE TRIGGER gift_feed_is_immutable BEFORE UPDATE ON gift_feed
    BEGIN SELECT RAISE(ABORT, 'gift_feed entries are immutable'); END;
DROP INDEX gift_feed_by_live;
CREATE UNIQUE INDEX gift_feed_by_live ON gift_feed (live_id, live_sequence);
-- A session's numbers run 1, 2, 3, ... without gaps: each row is its session's last plus one.
CREATE TRIGGER gift_feed_numbers_without_gaps BEFORE INSERT ON gift_feed
    WHEN NEW.live_sequence <> 1 + COALESCE((SELECT MAX(live_sequence) FROM gift_feed
                                             WHERE live_id = NEW.live_id), 0)
    BEGIN SELECT RAISE(ABORT, 'gift_feed numbers a session without gaps'); END;
"""

_SCHEMA_V1_POSTGRES = ENTRIES_ARE_FINAL_POSTGRES + """
CREATE TABLE account (
    name TEXT PRIMARY KEY,
    currency TEXT NOT NULL CHECK (currency IN ('COIN', 'DIAMOND', 'EUR')),
    may_go_negative BIGINT NOT NULL CHECK (may_go_negative IN (0, 1)),
    debits_posted BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    opened_at_us BIGINT NOT NULL,
    UNIQUE (name, currency),
    CONSTRAINT account_would_go_negative
        CHECK (may_go_negative = 1 OR credits_posted - debits_posted - debits_pending >= 0)
);

CREATE TABLE request (
    request_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    caller TEXT NOT NULL,
    parameters TEXT NOT NULL,
    received_at_us BIGINT NOT NULL
);

CREATE TABLE request_result (
    request_id TEXT PRIMARY KEY REFERENCES request (request_id),
    result TEXT NOT NULL
);

CREATE TABLE transfer (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES request (request_id),
    code TEXT NOT NULL,
    phase TEXT NOT NULL
        CHECK (phase IN ('POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING', 'EXPIRE_PENDING')),
    debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    pending_id BIGINT REFERENCES transfer (id),
    timeout_us BIGINT,
    gift_id TEXT,
    created_at_us BIGINT NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((phase IN ('POSTED', 'PENDING')) = (pending_id IS NULL)),
    CHECK ((phase = 'PENDING') = (timeout_us IS NOT NULL)),
    FOREIGN KEY (debit_account, currency) REFERENCES account (name, currency),
    FOREIGN KEY (credit_account, currency) REFERENCES account (name, currency)
);
CREATE UNIQUE INDEX transfer_resolves_pending_once ON transfer (pending_id) WHERE pending_id IS NOT NULL;
CREATE UNIQUE INDEX transfer_settles_hold_once ON transfer (gift_id)
    WHERE code IN ('DIAMOND_HOLD_RELEASE', 'GIFT_DIAMONDS_REVERSAL');
CREATE INDEX transfer_by_debit ON transfer (debit_account, id);
CREATE INDEX transfer_by_credit ON transfer (credit_account, id);
CREATE INDEX transfer_by_gift ON transfer (gift_id) WHERE gift_id IS NOT NULL;

CREATE TABLE pending_open (
    transfer_id BIGINT PRIMARY KEY REFERENCES transfer (id),
    timeout_us BIGINT NOT NULL
);
CREATE INDEX pending_open_by_timeout ON pending_open (timeout_us);

CREATE FUNCTION transfer_resolution_matches_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id AND p.phase = 'PENDING' AND p.debit_account = NEW.debit_account
          AND p.credit_account = NEW.credit_account AND p.currency = NEW.currency AND p.amount = NEW.amount) THEN
        RAISE EXCEPTION 'a resolution must repeat its pending transfer' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id
          AND ((NEW.phase = 'POST_PENDING' AND NEW.created_at_us >= p.timeout_us)
            OR (NEW.phase = 'EXPIRE_PENDING' AND NEW.created_at_us < p.timeout_us))) THEN
        RAISE EXCEPTION 'a pending transfer cannot be posted after its timeout nor expired before it'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfer_resolution_matches_pending BEFORE INSERT ON transfer
    FOR EACH ROW WHEN (NEW.pending_id IS NOT NULL) EXECUTE FUNCTION transfer_resolution_matches_pending();

-- The only writer of balances, as on SQLite: one UPDATE of both accounts per transfer, judged by
-- the CHECK account_would_go_negative inside the INSERT's statement.
CREATE FUNCTION transfer_moves_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account SET
        debits_posted = debits_posted + CASE
            WHEN name = NEW.debit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        credits_posted = credits_posted + CASE
            WHEN name = NEW.credit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        debits_pending = debits_pending + CASE
            WHEN name <> NEW.debit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END,
        credits_pending = credits_pending + CASE
            WHEN name <> NEW.credit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END
    WHERE name IN (NEW.debit_account, NEW.credit_account);
    IF NEW.phase = 'PENDING' THEN
        INSERT INTO pending_open (transfer_id, timeout_us) VALUES (NEW.id, NEW.timeout_us);
    ELSIF NEW.pending_id IS NOT NULL THEN
        DELETE FROM pending_open WHERE transfer_id = NEW.pending_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transfer_moves_balances AFTER INSERT ON transfer
    FOR EACH ROW EXECUTE FUNCTION transfer_moves_balances();

CREATE TABLE live_session (
    live_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    title TEXT NOT NULL,
    started_at_us BIGINT NOT NULL,
    deadline_us BIGINT NOT NULL,
    gifts_barred_reason TEXT NOT NULL,
    ended_at_us BIGINT,
    end_reason TEXT,
    CHECK ((ended_at_us IS NULL) = (end_reason IS NULL)),
    CHECK (deadline_us > started_at_us)
);
CREATE UNIQUE INDEX one_open_live_per_host ON live_session (host) WHERE ended_at_us IS NULL;
CREATE INDEX live_by_deadline ON live_session (deadline_us) WHERE ended_at_us IS NULL;
CREATE FUNCTION live_session_ends_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a LIVE session only changes by ending, once' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER live_session_ends_once BEFORE UPDATE ON live_session FOR EACH ROW
    WHEN (OLD.ended_at_us IS NOT NULL OR NEW.live_id <> OLD.live_id OR NEW.host <> OLD.host
          OR NEW.started_at_us <> OLD.started_at_us OR NEW.deadline_us <> OLD.deadline_us)
    EXECUTE FUNCTION live_session_ends_once();

CREATE TABLE account_facts (
    user_id TEXT PRIMARY KEY,
    follower_count BIGINT NOT NULL CHECK (follower_count >= 0),
    good_standing BIGINT NOT NULL CHECK (good_standing IN (0, 1)),
    restriction_reason TEXT NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('PERSONAL', 'BUSINESS', 'POLITICAL', 'GOVERNMENT')),
    identity_verified BIGINT NOT NULL CHECK (identity_verified IN (0, 1)),
    joined_at_us BIGINT,
    updated_at_us BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE gift (
    gift_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    live_id TEXT NOT NULL REFERENCES live_session (live_id),
    sender TEXT NOT NULL,
    creator TEXT NOT NULL,
    catalog_gift TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count > 0),
    coins BIGINT NOT NULL CHECK (coins > 0),
    fee_coins BIGINT NOT NULL CHECK (fee_coins >= 0 AND fee_coins <= coins),
    diamonds BIGINT NOT NULL CHECK (diamonds >= 0),
    sent_at_us BIGINT NOT NULL,
    hold_reasons TEXT NOT NULL,
    CHECK (sender <> creator)
);
CREATE INDEX gift_by_sender ON gift (sender, sent_at_us);
CREATE INDEX gift_by_live ON gift (live_id);
CREATE INDEX gift_by_sent_at ON gift (sent_at_us);

CREATE TABLE gift_feed (
    sequence BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    live_id TEXT NOT NULL,
    gift_id TEXT NOT NULL UNIQUE REFERENCES gift (gift_id),
    posted_at_us BIGINT NOT NULL
);
CREATE INDEX gift_feed_by_live ON gift_feed (live_id, sequence);

CREATE TABLE diamond_hold (
    gift_id TEXT PRIMARY KEY REFERENCES gift (gift_id),
    creator TEXT NOT NULL,
    sender TEXT NOT NULL,
    matures_at_us BIGINT NOT NULL
);
CREATE INDEX diamond_hold_by_maturity ON diamond_hold (matures_at_us);
CREATE INDEX diamond_hold_by_creator ON diamond_hold (creator, matures_at_us);
CREATE INDEX diamond_hold_by_sender ON diamond_hold (sender);

CREATE TABLE top_up (
    top_up_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    pack_id TEXT NOT NULL,
    coins BIGINT NOT NULL CHECK (coins > 0),
    price_eur_cents BIGINT NOT NULL CHECK (price_eur_cents > 0),
    purchased_at_us BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    CONSTRAINT receipt_redeemed_once UNIQUE (provider, receipt_id)
);

CREATE TABLE top_up_reversal (
    top_up_id TEXT PRIMARY KEY REFERENCES top_up (top_up_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    kind TEXT NOT NULL CHECK (kind IN ('REFUND', 'CHARGEBACK')),
    reversed_at_us BIGINT NOT NULL
);

CREATE TABLE payout (
    payout_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    eur_cents BIGINT NOT NULL CHECK (eur_cents > 0),
    diamonds BIGINT NOT NULL CHECK (diamonds > 0),
    payout_method TEXT NOT NULL,
    requested_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    diamonds_transfer_id BIGINT NOT NULL UNIQUE REFERENCES transfer (id),
    cash_transfer_id BIGINT NOT NULL UNIQUE REFERENCES transfer (id)
);
CREATE INDEX payout_by_user ON payout (user_id, requested_at_us);

CREATE TABLE payout_settlement (
    payout_id TEXT PRIMARY KEY REFERENCES payout (payout_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    paid BIGINT NOT NULL CHECK (paid IN (0, 1)),
    provider_reference TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    settled_at_us BIGINT NOT NULL
);

CREATE TABLE audit_outbox (
    sequence BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event TEXT NOT NULL
);
CREATE TABLE audit_delivery (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL,
    delivered_through BIGINT NOT NULL CHECK (delivered_through >= 0)
);
INSERT INTO audit_delivery (id, log_id, delivered_through) VALUES (1, replace(gen_random_uuid()::text, '-', ''), 0);
CREATE TABLE audit_set_aside (
    sequence BIGINT PRIMARY KEY REFERENCES audit_outbox (sequence),
    error TEXT NOT NULL
);
""" + "".join(immutable_postgres(table) for table in _ENTRY_TABLES)

_PER_SESSION_SEQUENCE_POSTGRES = """
ALTER TABLE gift_feed ADD COLUMN live_sequence BIGINT NOT NULL DEFAULT 0;
DROP TRIGGER gift_feed_is_immutable ON gift_feed;
UPDATE gift_feed SET live_sequence = (SELECT COUNT(*) FROM gift_feed AS earlier
    WHERE earlier.live_id = gift_feed.live_id AND earlier.sequence <= gift_feed.sequence);
CREATE TRIGGER gift_feed_is_immutable BEFORE UPDATE ON gift_feed FOR EACH ROW EXECUTE FUNCTION entry_is_final();
DROP INDEX gift_feed_by_live;
CREATE UNIQUE INDEX gift_feed_by_live ON gift_feed (live_id, live_sequence);
CREATE FUNCTION gift_feed_numbers_without_gaps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.live_sequence <> 1 + COALESCE((SELECT MAX(live_sequence) FROM gift_feed WHERE live_id = NEW.live_id), 0)
    THEN
        RAISE EXCEPTION 'gift_feed numbers a session without gaps' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER gift_feed_numbers_without_gaps BEFORE INSERT ON gift_feed
    FOR EACH ROW EXECUTE FUNCTION gift_feed_numbers_without_gaps();
"""

# 2: the shared audit outbox (`libs.audit.outbox`) replaces gifts' own (`legacy_outbox.py`).
MIGRATIONS = [Migration(1, _SCHEMA_V1, postgres=_SCHEMA_V1_POSTGRES), legacy_outbox.MIGRATION,
              Migration(3, _PER_SESSION_SEQUENCE, postgres=_PER_SESSION_SEQUENCE_POSTGRES)]

