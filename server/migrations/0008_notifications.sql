-- Notifications: who must be told about a task event, one row per delivery (a webhook, a
-- device's push), written in the same transaction as the event. The row id is the delivery's
-- idempotency key (`webhook-id`). Rows stay after delivery or death for the record.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    doc_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    -- `webhook`, or `push` (the device's registered platform decides the request).
    channel         TEXT NOT NULL,
    -- The webhook URL, or the device id.
    recipient       TEXT NOT NULL,
    -- The notice as JSON: task id, unit, role, user, level. Never patient information.
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    delivered_at    BIGINT,
    dead_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX notifications_dead ON notifications (dead_at, id)
    WHERE dead_at IS NOT NULL;

-- A device's push registration: `apns` or `fcm`, and its token. Revoking the device clears it.
ALTER TABLE devices ADD COLUMN push_platform TEXT;
ALTER TABLE devices ADD COLUMN push_token TEXT;
