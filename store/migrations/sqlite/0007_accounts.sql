-- Dashboard and API accounts, refresh-token families and the audit log, SQLite dialect. Keep in
-- step with ../postgres/0007_accounts.sql: same columns and keys.
--
-- users: one row per account. password_hash is a PHC string (argon2) computed by the caller, NULL
-- for an account that logs in only through OIDC; email is a verified address, used to map OIDC
-- logins to accounts, NULL when there is none; role is viewer, researcher, operator or admin;
-- disabled is 0 or 1. Accounts are disabled, never deleted (the audit log names them).
--
-- refresh_tokens: the caller keeps only a hash of each opaque token. A login starts a family; each
-- refresh marks its token used (used_at) and issues the next token of the same family. A token used
-- twice means it was stolen, and the whole family is revoked (revoked_at, revoked_reason 'reuse').
--
-- audit_log: who did what, when and from where; detail is JSON (TEXT), actor a username or e.g.
-- 'cli:root@host' or 'anonymous', actor_id the user's id when there is one. Rows are never changed
-- or deleted. All times are unix seconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT   NOT NULL UNIQUE,
    password_hash TEXT,
    role          TEXT   NOT NULL CHECK (role IN ('viewer', 'researcher', 'operator', 'admin')),
    email         TEXT   UNIQUE,
    disabled      BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    family         TEXT   NOT NULL,
    token_hash     TEXT   NOT NULL UNIQUE,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    revoked_at     BIGINT,
    revoked_reason TEXT
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT NOT NULL,
    actor_id BIGINT,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    target   TEXT,
    detail   TEXT   NOT NULL,
    ip       TEXT
);
