-- Minder data sources (REST functions that Rego policies call), versioned like rule types.
CREATE TABLE data_sources (
    project     text NOT NULL REFERENCES projects (name),
    name        text NOT NULL,
    version     bigint NOT NULL,
    digest      text NOT NULL,
    source_yaml text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);
