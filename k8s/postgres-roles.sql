-- Plumbline's two Postgres roles. Run once per database, as a superuser, connected to
-- Plumbline's database (managed Postgres without a superuser: as the admin role, which needs
-- CREATEROLE and, for ALTER DEFAULT PRIVILEGES below, membership in plumbline_migrator: after a
-- first run stops there, `GRANT plumbline_migrator TO <admin role>;` and run it again):
--
--   psql -v ON_ERROR_STOP=1 -d 'postgres://ADMIN@db.internal:5432/plumbline' -f k8s/postgres-roles.sql
--
-- then give each role its password, without putting it in a file or the shell history:
--
--   psql -d ... -c '\password plumbline_migrator'      (or ALTER ROLE plumbline_migrator PASSWORD '...')
--   psql -d ... -c '\password plumbline_app'
--
-- and put the two URLs in Secret plumbline-database (k8s/base/secret.example.yaml):
--   migrate-url  postgres://plumbline_migrator:...@HOST:5432/plumbline?sslmode=verify-full  (the migrate Job)
--   url          postgres://plumbline_app:...@HOST:5432/plumbline?sslmode=verify-full       (every service)
--
--   plumbline_migrator  owns the schema's objects: `plumb migrate` creates and alters tables,
--                       indexes, functions and triggers as this role.
--   plumbline_app       what the services run as: reads and writes rows (SELECT, INSERT, UPDATE,
--                       DELETE; sequences for bigserial ids) and nothing else. It cannot create,
--                       alter or drop tables, so it cannot run migrations, and a compromised
--                       service cannot change the schema.
--
-- Idempotent: re-running it is harmless; run one at a time per server (two runs at the same
-- moment, against two databases, can fail with "tuple concurrently updated": run it again). Run it again after migrations were applied by another role (it grants on every table
-- and sequence already there). It refuses roles of these names that exist with more power
-- (SUPERUSER, CREATEDB, ...). It names no database (current_database()) and needs PostgreSQL
-- >= 15.
--
-- Upgrading an install whose tables belong to an older single role (e.g. "plumbline"): hand them
-- to the schema owner before the next migration, e.g. `REASSIGN OWNED BY plumbline TO
-- plumbline_migrator;` in this database (it also hands over the database itself if that role
-- owns it; for objects owned by a superuser use ALTER TABLE/SEQUENCE/FUNCTION ... OWNER TO
-- plumbline_migrator instead), then run this file again. It warns about every table,
-- sequence, view and function in schema public that the migrator does not own.

-- The roles: cluster-wide, so created only if missing (a concurrent run that created one first
-- is fine too). Neither may create databases or roles, bypass row security or replicate.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['plumbline_migrator', 'plumbline_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format(
                    'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT',
                    r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
    -- A role that already existed with more power than this needs is refused, not used.
    FOR r IN
        SELECT rolname FROM pg_catalog.pg_roles
        WHERE rolname IN ('plumbline_migrator', 'plumbline_app')
          AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
    LOOP
        RAISE EXCEPTION 'role % exists with SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS; remove them first (ALTER ROLE % NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS)', r, r;
    END LOOP;
    -- ...and so is one that holds power through membership (pg_write_server_files,
    -- pg_execute_server_program, a cloud's admin role, or the services' role in the schema
    -- owner): what a role is a member of, it can act as.
    FOR r IN
        SELECT m.rolname || ' is a member of ' || g.rolname
        FROM pg_catalog.pg_auth_members am
        JOIN pg_catalog.pg_roles m ON m.oid = am.member
        JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
        WHERE m.rolname IN ('plumbline_migrator', 'plumbline_app')
    LOOP
        RAISE EXCEPTION '%: Plumbline''s roles must not be members of other roles (REVOKE ... FROM ...)', r;
    END LOOP;
    -- The services' role must not own the database (the owner may create schemas in it).
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_database
               WHERE datname = current_database()
                 AND datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'plumbline_app')) THEN
        RAISE EXCEPTION 'plumbline_app owns database %: make another role its owner (ALTER DATABASE ... OWNER TO ...)', current_database();
    END IF;
END
$$;

-- Connecting to this database; the migrator creates in schema public, nobody else does
-- (PostgreSQL 15's default for new databases; revoked here for databases from older clusters).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO plumbline_migrator, plumbline_app', current_database());
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO plumbline_migrator;
GRANT USAGE ON SCHEMA public TO plumbline_app;

-- Rows, not schema: on the tables and sequences already there (e.g. migrated earlier)...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO plumbline_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO plumbline_app;
-- ...and on every one later migrations create as plumbline_migrator.
ALTER DEFAULT PRIVILEGES FOR ROLE plumbline_migrator IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO plumbline_app;
ALTER DEFAULT PRIVILEGES FOR ROLE plumbline_migrator IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO plumbline_app;

-- Objects the migrator cannot alter in a later migration (owned by another role): say so.
DO $$
DECLARE
    o record;
BEGIN
    FOR o IN
        SELECT c.relname AS name, pg_catalog.pg_get_userbyid(c.relowner) AS owner
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'plumbline_migrator')
        UNION ALL
        SELECT p.proname, pg_catalog.pg_get_userbyid(p.proowner)
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND p.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'plumbline_migrator')
    LOOP
        RAISE WARNING 'public.% is owned by %, not plumbline_migrator: later migrations cannot alter it; make plumbline_migrator its owner (ALTER ... OWNER TO plumbline_migrator)',
            o.name, o.owner;
    END LOOP;
END
$$;
