-- One timer per open task: when its next due action falls (workflow time, Unix ms), the id of
-- the event that action writes (the same on every node), and the action as JSON. Written in the
-- same transaction as the changes it follows from; deleted when nothing is pending. A node that
-- takes a due timer to fire it claims it until `claimed_until` (real time, Unix ms): no other
-- node takes it meanwhile, and a node that dies holding it loses it when the lease runs out.
CREATE TABLE task_timers (
    doc_id         TEXT PRIMARY KEY,
    due_at         BIGINT NOT NULL,
    event_id       TEXT NOT NULL,
    action         TEXT NOT NULL,
    claimed_by     TEXT,
    claimed_until  BIGINT
);
CREATE INDEX task_timers_due ON task_timers (due_at, doc_id);
