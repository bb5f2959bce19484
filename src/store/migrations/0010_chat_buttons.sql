-- Chat: what an outbox message carries besides its text (Telegram's Approve/Reject buttons on a
-- gate's announcement, or the message id an edit replaces), the index that finds a gate's
-- announcements again, and the runs whose outcome a chat waits for (so a restart keeps them).
ALTER TABLE outbox ADD COLUMN extra TEXT;
CREATE INDEX outbox_source ON outbox (source, id);
CREATE TABLE chat_watch (
    run_id      TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
