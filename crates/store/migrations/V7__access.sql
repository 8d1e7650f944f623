-- Who may do what, and what they did: service accounts (tokens kept as SHA-256 digests), roles
-- per project, and the control API's audit log. Projects record who created them.
ALTER TABLE projects ADD COLUMN created_by text NOT NULL DEFAULT 'system';

CREATE TABLE service_accounts (
    name         text PRIMARY KEY,
    token_digest bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz
);

-- A project's members. Deleting the project removes them with it.
CREATE TABLE role_bindings (
    project    text        NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    principal  text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text        NOT NULL,
    PRIMARY KEY (project, principal)
);
CREATE INDEX role_bindings_by_principal ON role_bindings (principal);

-- Every mutating call (recorded as allowed when authorized, before it is carried out), every
-- refused call, every call with a service-account token that is revoked or expired, and every
-- action the actuator ends (principal actuator:<replica>, rpc <kind>:<type>, outcome its
-- status, the digest of the requests sent or planned). Kept
-- when its project is deleted: the audit log outlives what it describes. project is '' for
-- calls about no one project (service accounts, and calls refused before one was considered).
CREATE TABLE audit_log (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    principal      text        NOT NULL,
    project        text        NOT NULL,
    rpc            text        NOT NULL,
    request_digest text        NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('allowed', 'denied', 'unauthenticated',
                                                         'applied', 'planned', 'skipped', 'failed', 'deferred'))
);
CREATE INDEX audit_log_by_project ON audit_log (project, id);
