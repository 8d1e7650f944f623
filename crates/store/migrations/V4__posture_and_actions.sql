-- Fleet-scale posture queries (100k entities and more) and the actuator's per-rule actions.
--
-- Posture counts per (profile, rule, status) come from an index-only scan; failing (or any
-- status's) rows of a project page in entity order from an index; the whole posture pages in
-- entity order from another. Checked with EXPLAIN by the store's tests.
DROP INDEX IF EXISTS evaluation_status_by_project;
CREATE INDEX evaluation_status_posture ON evaluation_status (project, profile, rule_name, status);
CREATE INDEX evaluation_status_by_status ON evaluation_status (project, status, entity_id, profile, rule_name);
CREATE INDEX evaluation_status_by_project ON evaluation_status (project, entity_id, profile, rule_name);

-- A retired entity leaves the posture (its history stays); retiring now deletes its status rows.
DELETE FROM evaluation_status s USING entities e WHERE e.id = s.entity_id AND e.retired_at IS NOT NULL;

-- Actions name the profile's rule (a profile may use one rule type twice under two names) and
-- what they did: 'apply' (a remediation), 'open' or 'close' (an alert). `requests` holds the
-- exact requests sent or, in dry run, planned. The last action of a kind per rule answers
-- "is an alert open" and "is this rule cooling off after an error".
ALTER TABLE actions
    ADD COLUMN rule_name text NOT NULL DEFAULT '',
    ADD COLUMN operation text NOT NULL DEFAULT 'apply',
    ADD COLUMN requests jsonb NOT NULL DEFAULT '[]';
CREATE INDEX actions_by_rule ON actions (entity_id, profile, rule_name, kind, id DESC);
