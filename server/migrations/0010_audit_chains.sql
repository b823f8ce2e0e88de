-- Both audit trails are hash chains. Each row carries its place on its chain (`seq`, from 1 with
-- no gaps) and a hash over its content and the hash of the row before it, so a row changed,
-- removed or slipped in afterwards breaks the chain from there on; `baton-server audit verify`
-- names the first broken link. `audit_chains` holds each chain's last link, locked by every
-- transaction that appends, so appends from several nodes take their turns. Rows written before
-- this migration are put on their chain once, at the server's next start (`sealed` says it is
-- done); a row without a place after that was not written by the server.
CREATE TABLE audit_chains (
    chain   TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL,
    sealed  BIGINT NOT NULL
);
INSERT INTO audit_chains (chain, seq, hash, sealed)
VALUES ('task_events', 0, '', 0), ('security_audit', 0, '', 0);

ALTER TABLE task_events ADD COLUMN seq BIGINT;
-- The heads of the changes the event arrived in (hex hashes, comma-separated): the event is in
-- the task's history at those heads, which ties the trail to Automerge's own change hashes.
ALTER TABLE task_events ADD COLUMN heads TEXT;
ALTER TABLE task_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX task_events_seq ON task_events (seq);

ALTER TABLE security_audit ADD COLUMN seq BIGINT;
ALTER TABLE security_audit ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX security_audit_seq ON security_audit (seq);
