-- Who administers the server. A token's `admin` claim is honoured only for a user listed here:
-- admin = claim AND record. An admin administers every unit (there are no per-unit admins yet).
CREATE TABLE admins (
    user_id     TEXT PRIMARY KEY REFERENCES users (id),
    granted_at  BIGINT NOT NULL
);

-- The security audit is read newest first and paged by (at, id).
CREATE INDEX security_audit_at_id ON security_audit (at, id);
