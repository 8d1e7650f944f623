-- One row per evaluation of an entity: when it was checked, why, how many rules it had and
-- how many verdicts changed. evaluation_history now keeps a row per rule only when its verdict
-- changed (status, message, details or input): a sweep of 100,000 repositories x 20 rules that
-- finds nothing new writes 100,000 rows here instead of 2,000,000 to history, and each rule's
-- history still shows every transition.
CREATE TABLE evaluation_checks (
    id             bigserial PRIMARY KEY,
    entity_id      text NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    project        text NOT NULL,
    cause_event_id text NOT NULL DEFAULT '',
    rules          integer NOT NULL,
    changed        integer NOT NULL,
    checked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evaluation_checks_by_entity ON evaluation_checks (entity_id, checked_at DESC);
CREATE INDEX evaluation_checks_by_time ON evaluation_checks (checked_at);
