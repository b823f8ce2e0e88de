-- Coverage overrides: someone in instead for a period (a sick call, a swap), over the role's
-- rotation on the unit. The unit's index document carries them to phones with the rotations.
CREATE TABLE coverage_overrides (
    id          TEXT PRIMARY KEY,
    unit_id     TEXT NOT NULL REFERENCES units (id),
    role_id     TEXT NOT NULL REFERENCES roles (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    -- The period, on the workflow clock (Unix ms): from `starts_at` up to `ends_at`.
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL,
    -- 1: the backup (secondary owner) for the period; 0: the one who covers.
    secondary   BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX coverage_overrides_unit ON coverage_overrides (unit_id, ends_at);
