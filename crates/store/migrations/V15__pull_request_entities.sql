-- Pull requests are entities under their repository: `parent` names the repository row a
-- pull request was enrolled under. Its project comes from that row, and its names and provider
-- binding are read through it (a pull request row keeps no binding of its own); retiring the
-- repository retires its pull requests.
ALTER TABLE entities ADD COLUMN parent text REFERENCES entities (id);
-- Children by parent: retiring a repository finds its pull requests, and the foreign key's
-- checks (a repository row deleted with its project) find them without a scan.
CREATE INDEX entities_by_parent ON entities (parent) WHERE parent IS NOT NULL;
