-- A least-privilege PostgreSQL role (auth-svc's; `make run` also makes the chat service's). It logs in and owns schema :schema and everything
-- in it; nothing else: not a superuser, no CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS, no
-- CREATE on the database (so no other schema). Run by the superuser with psql variables
-- `role`, `password` and `schema`. Idempotent: the managed PostgreSQL runs it at every start
-- (postStart hook), `make run` before starting auth-svc. It also hands over to the role what an
-- earlier version created as the superuser.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'role', :'password')
\gexec

SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'role')
\gexec
SELECT format('ALTER SCHEMA %I OWNER TO %I', :'schema', :'role')
\gexec
SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', :'schema')
\gexec

-- Tables (with their indexes and owned sequences), views and free-standing sequences.
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'v' THEN 'VIEW'
                             WHEN 'm' THEN 'MATERIALIZED VIEW'
                             ELSE 'TABLE' END,
              n.nspname, c.relname, :'role')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'schema'
   AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND pg_get_userbyid(c.relowner) <> :'role'
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d
                                          WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
\gexec
