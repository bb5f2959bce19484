-- The dashboard: its users (argon2id PHC strings, never a password), server-side sessions and
-- API tokens. Sessions and tokens are kept as the SHA-256 of what the client holds, so that a
-- copy of the database opens no session.
CREATE TABLE dashboard_users (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user);
CREATE TABLE dashboard_tokens (
    hash       TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used  INTEGER,
    UNIQUE (user, name)
);
