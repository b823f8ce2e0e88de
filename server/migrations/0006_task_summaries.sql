-- One row per task: what lists of tasks show and filter by (`GET /api/v1/tasks`), taken from
-- the task's folded state by the document actor and written in the same transaction as every
-- change of the task. Closed tasks keep their row, with their final status.
CREATE TABLE task_summaries (
    doc_id            TEXT PRIMARY KEY,
    unit_id           TEXT NOT NULL,
    template_id       TEXT NOT NULL,
    template_version  BIGINT NOT NULL,
    -- `open`, `waiting`, `completed`, `cancelled` (or `pending`, before its `created` event).
    status            TEXT NOT NULL,
    -- Who owns the task now (NULL: nobody yet), and the role tasks of its template are owned in.
    owner_id          TEXT,
    owner_role        TEXT NOT NULL,
    acuity            TEXT NOT NULL,
    escalation_level  BIGINT NOT NULL,
    -- The earliest open deadline (workflow time, Unix ms); NULL when none is open.
    next_due_at       BIGINT,
    label             TEXT NOT NULL,
    -- When the server first stored the task, and last stored a change of it (Unix ms). Lists
    -- are paged by (created_at, doc_id), which never changes for a task.
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX task_summaries_unit ON task_summaries (unit_id, created_at, doc_id);
CREATE INDEX task_summaries_created ON task_summaries (created_at, doc_id);
