-- Pull requests are entities under their repository: `parent` names the repository row a
-- pull request was enrolled under. Its project and provider binding come from that row, and
-- retiring the repository retires its pull requests.
ALTER TABLE entities ADD COLUMN parent text REFERENCES entities (id);
-- Retiring a repository finds its active pull requests without a scan.
CREATE INDEX entities_active_children ON entities (parent) WHERE parent IS NOT NULL AND retired_at IS NULL;
