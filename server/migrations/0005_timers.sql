-- One timer per open task: when its next due action falls (workflow time, Unix ms), the id of
-- the event that action writes (the same on every node), and the action as JSON. Written in the
-- same transaction as the changes it follows from; deleted when nothing is pending.
CREATE TABLE task_timers (
    doc_id     TEXT PRIMARY KEY,
    due_at     BIGINT NOT NULL,
    event_id   TEXT NOT NULL,
    action     TEXT NOT NULL
);
CREATE INDEX task_timers_due ON task_timers (due_at, doc_id);
