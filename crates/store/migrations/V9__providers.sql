-- The credentials a project acts with: a GitHub App installation (by id; the App's key is the
-- services' own) or a personal access token, sealed (AES-256-GCM: the sealing key's id, the
-- nonce, the ciphertext with its tag; see crates/runtime/src/sealed.rs). A token is never
-- stored, logged or returned in the clear. An installation belongs to one project.
CREATE TABLE providers (
    project         text        NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    name            text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('github-app-installation', 'github-pat')),
    installation_id bigint,
    key_id          text,
    nonce           bytea,
    ciphertext      bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    PRIMARY KEY (project, name),
    CHECK ((kind = 'github-app-installation') = (installation_id IS NOT NULL)),
    CHECK ((kind = 'github-pat') = (key_id IS NOT NULL AND nonce IS NOT NULL AND ciphertext IS NOT NULL))
);
CREATE UNIQUE INDEX providers_by_installation ON providers (installation_id)
    WHERE installation_id IS NOT NULL;
