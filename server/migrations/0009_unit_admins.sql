-- Administrators of some units only. A user in `admins` administers the server: every unit,
-- and what belongs to no unit (templates, units, roles, who else is an admin). A user listed
-- here administers the units listed for them, and nothing else: their users' memberships and
-- devices, their tasks, their notifications. Either way the token must claim `admin` too.
CREATE TABLE unit_admins (
    user_id     TEXT NOT NULL REFERENCES users (id),
    unit_id     TEXT NOT NULL REFERENCES units (id),
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, unit_id)
);
