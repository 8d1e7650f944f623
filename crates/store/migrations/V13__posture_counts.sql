-- A project's posture counts, kept as statuses change, so `plumb status`, GetPosture and
-- `plumb dev`'s posture line read a few rows per project instead of counting every status row.
-- Counting was an index-only scan in theory, but the evaluators rewrite evaluation_status all
-- day, so its visibility map is rarely all-visible and the scan visits the heap: measured with
-- `sweep_scale`, 378 ms p99 at 100,000 repositories x 5 rules (500,000 rows).
--
-- Statement-level triggers with transition tables: one counter write per (profile, rule,
-- status, shard) a statement changes, and none for a statement that leaves every status as it
-- was (a sweep re-confirming verdicts). The evaluator writes an entity's statuses in one
-- statement. Measured with pgbench (8 clients, 5 new statuses per transaction): row-level
-- triggers cost 39% of the write rate, these 14%.
--
-- Sharded by entity (16 rows per project, profile, rule and status) so concurrent evaluations
-- rarely wait on the same counter row; a statement takes its counter rows in key order.

-- On a live database: fail (and let the service start again) rather than queue every reader of
-- evaluation_status behind this migration's locks.
SET LOCAL lock_timeout = '30s';
CREATE TABLE posture_counts (
    project   text NOT NULL,
    profile   text NOT NULL,
    rule_name text NOT NULL,
    status    text NOT NULL,
    shard     smallint NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (project, profile, rule_name, status, shard)
);

CREATE FUNCTION posture_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO posture_counts (project, profile, rule_name, status, shard, n)
        SELECT project, profile, rule_name, status, (hashtext(entity_id) & 15)::smallint, count(*)
        FROM new_rows GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (project, profile, rule_name, status, shard)
        DO UPDATE SET n = posture_counts.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO posture_counts (project, profile, rule_name, status, shard, n)
        SELECT project, profile, rule_name, status, (hashtext(entity_id) & 15)::smallint, -count(*)
        FROM old_rows GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (project, profile, rule_name, status, shard)
        DO UPDATE SET n = posture_counts.n + EXCLUDED.n;
    ELSE
        INSERT INTO posture_counts (project, profile, rule_name, status, shard, n)
        SELECT project, profile, rule_name, status, shard, sum(d) FROM (
            SELECT project, profile, rule_name, status, (hashtext(entity_id) & 15)::smallint AS shard, 1 AS d
            FROM new_rows
            UNION ALL
            SELECT project, profile, rule_name, status, (hashtext(entity_id) & 15)::smallint, -1
            FROM old_rows) c
        GROUP BY 1, 2, 3, 4, 5 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (project, profile, rule_name, status, shard)
        DO UPDATE SET n = posture_counts.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER posture_count_insert AFTER INSERT ON evaluation_status
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION posture_count();
CREATE TRIGGER posture_count_delete AFTER DELETE ON evaluation_status
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION posture_count();
CREATE TRIGGER posture_count_update AFTER UPDATE ON evaluation_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION posture_count();

-- TRUNCATE fires no row or statement-level DML trigger: the counts go with the rows.
CREATE FUNCTION posture_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM posture_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER posture_count_truncate AFTER TRUNCATE ON evaluation_status
    FOR EACH STATEMENT EXECUTE FUNCTION posture_count_truncate();

-- The statuses already there (the trigger's lock on evaluation_status holds writers back until
-- this migration commits, so none is counted twice or missed).
INSERT INTO posture_counts (project, profile, rule_name, status, shard, n)
SELECT project, profile, rule_name, status, (hashtext(entity_id) & 15)::smallint, count(*)
FROM evaluation_status
GROUP BY 1, 2, 3, 4, 5;

-- Only the counts read it; every status write paid for it.
DROP INDEX evaluation_status_posture;
