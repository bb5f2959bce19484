-- The durable outbox: every outbound message (one row per piece of a long text), committed
-- before it is sent, delivered in id order per (channel, target), marked sent or dead.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel       TEXT NOT NULL,
    target        TEXT NOT NULL,
    body          TEXT NOT NULL,
    source        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER,
    last_error    TEXT,
    provider_id   TEXT
);
CREATE INDEX outbox_pending ON outbox (status, channel, target, id);
