-- Baton's schema. Portable between SQLite (the embedded default) and Postgres: the same file runs
-- on both, so it uses only TEXT, BIGINT and BYTEA columns, natural keys, and no booleans (a
-- nullable timestamp says when something became true). Times are Unix milliseconds.

CREATE TABLE units (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    disabled_at  BIGINT
);

-- Which roles a user holds on which unit: the server's record, checked on every connection and
-- every document a connection opens. A token can narrow it, never widen it.
CREATE TABLE memberships (
    user_id  TEXT NOT NULL REFERENCES users (id),
    unit_id  TEXT NOT NULL REFERENCES units (id),
    role_id  TEXT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, unit_id, role_id)
);

-- Devices are enrolled on first use. A revoked device is refused, and told to wipe.
CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    last_user_id  TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    revoked_at    BIGINT
);

-- Workflow templates by version; a running task keeps the version it started with.
CREATE TABLE templates (
    id          TEXT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);

-- Every Automerge document the server holds: task documents and unit index documents.
CREATE TABLE documents (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    unit_id           TEXT NOT NULL,
    template_id       TEXT,
    template_version  BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX documents_unit ON documents (unit_id, kind);

-- Changes as they arrive, append-only, keyed by their hash (so a change stored twice, by two
-- nodes or a retried write, is one row). Compaction folds them into doc_snapshots.
CREATE TABLE doc_changes (
    doc_id       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    bytes        BYTEA NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (doc_id, hash)
);

CREATE TABLE doc_snapshots (
    doc_id        TEXT PRIMARY KEY,
    bytes         BYTEA NOT NULL,
    heads         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- The current index document of each unit.
CREATE TABLE unit_indexes (
    unit_id     TEXT PRIMARY KEY REFERENCES units (id),
    doc_id      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Refusals and other security-relevant facts: forged or invalid changes, refused tokens,
-- requests for documents outside a caller's units, revoked devices that tried to connect.
CREATE TABLE security_audit (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    device_id  TEXT,
    doc_id     TEXT,
    detail     TEXT NOT NULL
);
CREATE INDEX security_audit_at ON security_audit (at);
