-- What each entity's last complete evaluation read, as validators (an ETag per GitHub read)
-- and a digest of everything else it was decided on (the entity, the profiles and rule types
-- that applied). A sweep asks GitHub whether any validator changed, with conditional requests
-- that cost no quota while the answer is 304; when none did and the context is the same, the
-- verdicts stand without reading or evaluating again. Kept here rather than in the
-- evaluator's memory, which is bounded and would evict them at 100,000 repositories.
CREATE TABLE entity_inputs (
    entity_id   text PRIMARY KEY REFERENCES entities (id) ON DELETE CASCADE,
    context     text NOT NULL,
    validators  jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
