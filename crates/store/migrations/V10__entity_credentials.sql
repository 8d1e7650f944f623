-- Which of its project's providers an entity is acted on with. NULL: the services' own
-- credential (their flags), which only the operator's project may use (see
-- plumbline_runtime::credentials). A provider that active entities use cannot be deleted (the
-- store refuses, naming how many); the binding of a retired entity is cleared with it.
ALTER TABLE entities ADD COLUMN credential text;
ALTER TABLE entities ADD CONSTRAINT entities_credential_fkey
    FOREIGN KEY (project, credential) REFERENCES providers (project, name)
    ON DELETE SET NULL (credential);
-- Deleting a provider looks for the entities bound to it.
CREATE INDEX entities_by_credential ON entities (project, credential) WHERE credential IS NOT NULL;
