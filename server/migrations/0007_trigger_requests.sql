-- Tasks opened by inbound triggers (`POST /api/v1/triggers`), by the integration that sent each
-- and its idempotency key. A row is written in the same transaction as the first commit of the
-- task it names, and only if the key is free: a crash leaves neither a task without its key nor
-- a key without its task, and one key opens one task however many times it is sent.
CREATE TABLE trigger_requests (
    integration  TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    -- A fingerprint (SHA-256, hex) of the request as the server read it: the same key with
    -- another request is refused.
    request      TEXT NOT NULL,
    doc_id       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (integration, idem_key)
);
