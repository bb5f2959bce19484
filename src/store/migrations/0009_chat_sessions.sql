-- The LLM chat mode of a chat front end (DESIGN.md §12): per chat, its mode (`chat` or `skill`),
-- its provider override (`/model`), and the last turns of its conversation (a JSON list of
-- {role, text, at}); a conversation older than its TTL is started afresh.
CREATE TABLE chat_sessions (
    channel     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    mode        TEXT NOT NULL DEFAULT 'chat',
    model       TEXT,
    history     TEXT NOT NULL DEFAULT '[]',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, chat)
);
