-- The control API pages a project's evaluation history and actions newest first, with optional
-- filters; these indexes serve the unfiltered pages and keep the filtered ones bounded.
CREATE INDEX evaluation_history_by_project ON evaluation_history (project, id DESC);
CREATE INDEX actions_by_project ON actions (project, id DESC);
