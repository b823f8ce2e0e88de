-- What follows from a document's changes is written in the same transaction as the changes.

-- Every event of every task as the server received it: who wrote it, in which role, from which
-- device, the device's time and stamp, and when the server received it. Kept when the changes
-- are compacted into a snapshot.
CREATE TABLE task_events (
    doc_id       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    device_time  BIGINT NOT NULL,
    hlc          TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (doc_id, event_id)
);
CREATE INDEX task_events_received ON task_events (received_at);

-- Index entries owed to unit index documents: a task opened, changed what its entry shows, or
-- closed. The newest entry per task replaces an older one still owed; the index writer applies
-- each to its unit's index document and then deletes it, and start-up drains what is left.
CREATE TABLE index_outbox (
    doc_id     TEXT PRIMARY KEY,
    unit_id    TEXT NOT NULL,
    -- The entry as JSON; NULL takes the task off the index.
    entry      TEXT,
    -- Microseconds since the Unix epoch, unique per entry written by one server process.
    queued_at  BIGINT NOT NULL
);
