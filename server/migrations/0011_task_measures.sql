-- What the operational metrics are computed from (docs/metrics.md), kept on each task's summary
-- and so written in the same transaction as every change of the task. Times are events' stamps
-- (workflow time, Unix ms); NULL until the fact happens.
ALTER TABLE task_summaries ADD COLUMN program TEXT NOT NULL DEFAULT '';
ALTER TABLE task_summaries ADD COLUMN opened_at BIGINT;
ALTER TABLE task_summaries ADD COLUMN first_ack_at BIGINT;
ALTER TABLE task_summaries ADD COLUMN first_outreach_at BIGINT;
ALTER TABLE task_summaries ADD COLUMN closed_at BIGINT;
ALTER TABLE task_summaries ADD COLUMN escalations_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_summaries ADD COLUMN escalations_acuity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_summaries ADD COLUMN escalations_manual BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_summaries ADD COLUMN interventions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_summaries ADD COLUMN first_step_done_at BIGINT;
ALTER TABLE task_summaries ADD COLUMN last_step_done_at BIGINT;
CREATE INDEX task_summaries_opened ON task_summaries (opened_at);
-- Summaries written before are written again at the next start, from the tasks' documents,
-- with their measures.
DELETE FROM task_summaries;
