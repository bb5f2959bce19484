-- Chat access (who may talk to claw through a chat front end) and each inbound channel's cursor
-- (Telegram's next getUpdates offset), so a restart neither loses nor replays an update.
CREATE TABLE chat_access (
    channel     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('requested', 'allowed', 'denied')),
    name        TEXT NOT NULL DEFAULT '',
    decided_by  TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, chat)
);
CREATE TABLE inbound_cursor (
    channel     TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
