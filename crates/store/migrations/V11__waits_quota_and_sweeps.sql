-- What waits, and until when, for `plumb status` and `plumb dev`'s posture line. Services
-- record; the control API reads one project's rows.
--
-- Entities whose evaluation or remediation is parked on a known limit (a spent GitHub quota,
-- the content-creation budget): one row per entity and stage, replaced on each park, read only
-- while `until` is ahead (so nothing has to clear it), deleted a day after by the reconciler.
CREATE TABLE waits (
    entity_id   text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    stage       text NOT NULL CHECK (stage IN ('evaluation', 'remediation')),
    project     text NOT NULL,
    cause       text NOT NULL
        CHECK (cause IN ('dependency', 'provider_quota', 'content_budget', 'action_lease')),
    reason      text NOT NULL,
    until       timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_id, stage)
);
CREATE INDEX waits_by_project ON waits (project, until);

-- Each credential's GitHub quota as an evaluator last read it from GitHub's answers: the
-- reconciler defers the sweep of entities whose credential is down to its reserve.
-- `credential` is 'own' (the services' own) or 'provider:<project>/<name>'.
CREATE TABLE credential_quota (
    credential    text PRIMARY KEY,
    project       text NOT NULL,
    remaining     bigint NOT NULL,
    quota_limit   bigint NOT NULL,
    resets_at     timestamptz NOT NULL,
    limited_until timestamptz,
    observed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credential_quota_by_project ON credential_quota (project);

-- The active reconciler's progress through each project in the current sweep.
CREATE TABLE sweep_progress (
    project         text PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    entities        bigint NOT NULL,
    done            bigint NOT NULL DEFAULT 0,
    -- Entities left out of this sweep because their credential's quota was at its reserve,
    -- and when the earliest such quota renews.
    deferred        bigint NOT NULL DEFAULT 0,
    deferred_until  timestamptz,
    expected_finish timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
