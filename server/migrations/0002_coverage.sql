-- Coverage: each unit's time zone and its rotations, one per role. The unit index document
-- carries them to phones, so a phone knows who covers a role at any moment while offline.

ALTER TABLE units ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE rotations (
    unit_id          TEXT NOT NULL REFERENCES units (id),
    role_id          TEXT NOT NULL REFERENCES roles (id),
    -- The local start of shift 0 (`2026-01-05T07:00:00`) and the length of a shift (`12h`).
    anchor           TEXT NOT NULL,
    shift            TEXT NOT NULL,
    -- JSON arrays of user ids: who covers shifts 0, 1, 2, … in turn, and their backups.
    primary_users    TEXT NOT NULL,
    secondary_users  TEXT NOT NULL,
    PRIMARY KEY (unit_id, role_id)
);
