-- Types are limited to TEXT and BIGINT so the same file runs on SQLite and PostgreSQL through
-- sqlx's Any driver (which cannot decode SQLite BOOLEAN or DATETIME). Lists are JSON text.

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    permissions TEXT NOT NULL,
    service_id  TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    name             TEXT PRIMARY KEY,
    password_hash    TEXT NOT NULL,
    roles            TEXT NOT NULL,
    permissions      TEXT NOT NULL,
    service_id       TEXT,
    token_generation BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE services (
    id                 TEXT PRIMARY KEY,
    commissioning_file TEXT NOT NULL,
    parameters         TEXT NOT NULL,
    target_state       TEXT NOT NULL,
    mqtt_password      TEXT NOT NULL,
    installed_at       BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
