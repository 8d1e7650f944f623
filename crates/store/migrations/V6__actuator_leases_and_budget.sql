-- Claims carry an owner and a lease. A pending action is taken over only once its lease has
-- expired (or by its own owner), so two actuator replicas never carry out one verdict at once,
-- as they could during a rebalance when a claim could be taken over at once.
ALTER TABLE actions
    ADD COLUMN claimed_by text NOT NULL DEFAULT '',
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT now();

-- The content-creation budget, shared by every actuator replica using a credential: one row
-- per reservation. An open reservation (ended_at NULL) counts as used now; a finished one
-- counts its used slots at the time it ended. Rows older than an hour no longer matter.
CREATE TABLE content_writes (
    id          bigserial PRIMARY KEY,
    credential  text        NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    slots       integer     NOT NULL CHECK (slots >= 0)
);
CREATE INDEX content_writes_by_credential ON content_writes (credential, reserved_at);
