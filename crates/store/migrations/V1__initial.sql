-- Plumbline's initial schema.

CREATE TABLE projects (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO projects (name) VALUES ('default');

-- Registered entities. The id is provider/kind/upstream-id (GitHub's immutable numeric id), so a
-- rename updates a row instead of creating one.
CREATE TABLE entities (
    id           text PRIMARY KEY,
    project      text NOT NULL REFERENCES projects (name),
    provider     text NOT NULL,
    kind         text NOT NULL,
    upstream_id  text NOT NULL,
    owner        text NOT NULL,
    name         text NOT NULL,
    properties   jsonb NOT NULL DEFAULT '{}',
    labels       text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);
-- The reconciler pages through active entities of a project in id order.
CREATE INDEX entities_active_by_project ON entities (project, id) WHERE retired_at IS NULL;
CREATE INDEX entities_by_name ON entities (project, lower(owner), lower(name));

-- Rule types and profiles keep their source YAML; version increases on every content change.
CREATE TABLE rule_types (
    project     text NOT NULL REFERENCES projects (name),
    name        text NOT NULL,
    version     bigint NOT NULL,
    digest      text NOT NULL,
    source_yaml text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);

CREATE TABLE profiles (
    project     text NOT NULL REFERENCES projects (name),
    name        text NOT NULL,
    version     bigint NOT NULL,
    digest      text NOT NULL,
    source_yaml text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);

-- Latest verdict per entity x profile x rule.
CREATE TABLE evaluation_status (
    entity_id          text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    project            text NOT NULL,
    profile            text NOT NULL,
    rule_type          text NOT NULL,
    rule_name          text NOT NULL,
    status             text NOT NULL,
    message            text NOT NULL DEFAULT '',
    details            jsonb NOT NULL DEFAULT '[]',
    input_digest       text NOT NULL DEFAULT '',
    rule_type_version  bigint NOT NULL DEFAULT 0,
    evaluation_id      uuid NOT NULL,
    evaluated_at       timestamptz NOT NULL,
    PRIMARY KEY (entity_id, profile, rule_name)
);
CREATE INDEX evaluation_status_by_project ON evaluation_status (project, status);

-- Every evaluation, append-only.
CREATE TABLE evaluation_history (
    id              bigserial PRIMARY KEY,
    evaluation_id   uuid NOT NULL,
    entity_id       text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    project         text NOT NULL,
    profile         text NOT NULL,
    rule_type       text NOT NULL,
    rule_name       text NOT NULL,
    status          text NOT NULL,
    message         text NOT NULL DEFAULT '',
    details         jsonb NOT NULL DEFAULT '[]',
    input_digest    text NOT NULL DEFAULT '',
    cause_event_id  text NOT NULL DEFAULT '',
    evaluated_at    timestamptz NOT NULL
);
CREATE INDEX evaluation_history_by_rule ON evaluation_history (entity_id, profile, rule_name, evaluated_at DESC);
CREATE INDEX evaluation_history_by_time ON evaluation_history (evaluated_at);

-- Remediations and alerts. The idempotency key makes a redelivered verdict a no-op.
CREATE TABLE actions (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    entity_id        text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    project          text NOT NULL,
    profile          text NOT NULL,
    rule_type        text NOT NULL,
    kind             text NOT NULL,
    action_type      text NOT NULL,
    status           text NOT NULL,
    message          text NOT NULL DEFAULT '',
    method           text NOT NULL DEFAULT '',
    url              text NOT NULL DEFAULT '',
    body             text NOT NULL DEFAULT '',
    provider_ref     text NOT NULL DEFAULT '',
    evaluation_id    uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_by_entity ON actions (entity_id, created_at DESC);

-- Webhook deliveries already accepted, for dedupe across ingest replicas.
CREATE TABLE webhook_deliveries (
    delivery_id  text PRIMARY KEY,
    event        text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (expires_at);
