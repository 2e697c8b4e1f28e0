-- db-roles.sql: run Keystone as a role that cannot rewrite its audit trail
-- (docs/runbook.md, "Audit role"). Run as a superuser, in Keystone's database,
-- after creating the two roles:
--
--   psql "$SUPERUSER_URL" -v owner=keystone_owner -v app=keystone_app -f scripts/db-roles.sql
--
-- :owner owns every object (it runs `keystone migrate`); :app runs
-- `keystone serve` and the CLI. :app has only SELECT and INSERT on
-- audit_events, and since it does not own the table it cannot drop or disable
-- the triggers that make it append-only. Idempotent: run it again after a
-- restore or whenever in doubt.
\set ON_ERROR_STOP on

SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'owner') \gexec
ALTER SCHEMA public OWNER TO :"owner";

-- Everything Keystone and River created, whoever created it, now belongs to :owner.
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'owner')
FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'owner' \gexec
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'S'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) \gexec
SELECT format('ALTER FUNCTION public.%I(%s) OWNER TO %I', p.proname, pg_get_function_identity_arguments(p.oid), :'owner')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' \gexec
SELECT format('ALTER TYPE public.%I OWNER TO %I', t.typname, :'owner')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') \gexec

-- :app uses what exists, and what later migrations (run as :owner) create.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'app') \gexec
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app";

-- The audit trail: read and append only. The chain head is moved, never removed.
REVOKE ALL ON audit_events FROM :"app";
GRANT SELECT, INSERT ON audit_events TO :"app";
REVOKE ALL ON audit_chain_head FROM :"app";
GRANT SELECT, UPDATE ON audit_chain_head TO :"app";
