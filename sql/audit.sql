--
-- audit: one atlas_removal_audit row per removal call, with who asked, as
-- whom it ran, what was called, how and with what result; never a
-- credential or a token.
--
-- The test cluster preloads atlas_users, but its worker serves the database
-- postgres, not this one, so rows are written in the calling transaction (a
-- NOTICE says so once per session): a rollback takes
-- them away, and so does the error of a failed call.  Failed calls are
-- always written, whole, to the server log, which this file reads
-- ($PGHOST/postgres.log, where test/lib.sh starts the cluster).
--
\! test/emuctl reset >/dev/null
-- failures are audited as they come: no retries, but where a test says
SET atlas_users.max_retries = 0;
\getenv pghost PGHOST
\set logfile :pghost/postgres.log
SELECT coalesce(max(id), 0) AS audit_start FROM atlas_removal_audit \gset
SELECT (pg_stat_file(:'logfile')).size AS log_start \gset

CREATE ROLE regress_atlas_auditor;
GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text),
	atlas_remove_org_user(text, text, boolean, text, text) TO regress_atlas_auditor;
-- offboarding wrapped in a SECURITY DEFINER function owned by a superuser
CREATE FUNCTION regress_offboard(g text, u text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = public
AS $$ SELECT atlas_remove_project_user(g, u, true) $$;
REVOKE EXECUTE ON FUNCTION regress_offboard(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION regress_offboard(text, text) TO regress_atlas_auditor;

-- removed, then already_absent (digest, current version)
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005');
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005', true);
-- a team, an organization
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004');
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004', true);
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007');
-- the legacy v1.0 API
SELECT atlas_remove_project_user_v1('65f0b0000000000000000002', '65f0d0000000000000000008');
-- the service account
SET atlas_users.auth_method = 'service_account';
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000005');
RESET atlas_users.auth_method;
-- a pinned version
SET atlas_users.api_version = '2023-01-01';
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000002');
RESET atlas_users.api_version;
-- retried after a 429 (attempts = 2)
SET atlas_users.max_retries = 1;
\! test/emuctl fault '{"kind": "status", "status": 429, "retry_after": 0}'
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004');
SELECT atlas_reset_rate_limits() > 0 AS forgotten;
SET atlas_users.max_retries = 0;

-- SET ROLE: requested_by is the session user, executed_as the current role
SET ROLE regress_atlas_auditor;
SELECT session_user, current_user;
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000002');
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000009', true);
RESET ROLE;
-- a SECURITY DEFINER function runs as its owner
SET SESSION AUTHORIZATION regress_atlas_auditor;
SELECT session_user, current_user;
SELECT regress_offboard('65f0b0000000000000000001', '65f0d0000000000000000003');
RESET SESSION AUTHORIZATION;

SELECT requested_by, executed_as, operation, org_id, group_id, team_id, user_id,
	   api_version, auth_method, http_status, outcome, error_code, detail, attempts
FROM atlas_removal_audit
WHERE id > :audit_start
ORDER BY id;

-- every row has a start time and a duration
SELECT count(*) AS rows,
	   count(*) FILTER (WHERE at <= now() AND at > now() - interval '1 hour') AS at_ok,
	   count(*) FILTER (WHERE duration_ms >= 0) AS duration_ok
FROM atlas_removal_audit WHERE id > :audit_start;

-- rows are written in the calling transaction: a rollback removes them
SELECT count(*) AS rows_before FROM atlas_removal_audit \gset
BEGIN;
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004', true);
SELECT count(*) - :rows_before AS new_rows FROM atlas_removal_audit;
ROLLBACK;
SELECT count(*) - :rows_before AS new_rows FROM atlas_removal_audit;

-- failed calls: the error rolls their row back, but each is in the server log
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005')$$);
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a00000000000000000ff', '65f0d0000000000000000003', true)$$);
\! test/emuctl fault '{"kind": "status", "status": 503}'
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000003')$$);
BEGIN;
SET LOCAL atlas_users.base_url = 'http://127.0.0.1:1';
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000003', '65f0d0000000000000000003')$$);
ROLLBACK;
SET ROLE regress_atlas_auditor;
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000009')$$);
RESET ROLE;
-- a call interrupted by statement_timeout while Atlas does not answer
\! test/emuctl fault '{"kind": "hang", "seconds": 30}'
SET statement_timeout = '500ms';
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000003');
RESET statement_timeout;
\! test/emuctl clear-faults
SELECT count(*) - :rows_before AS new_rows FROM atlas_removal_audit;

-- what the server log says of them
CREATE TEMP TABLE log_line AS
SELECT n, line
FROM regexp_split_to_table(
		pg_read_file(:'logfile', :log_start,
					 (pg_stat_file(:'logfile')).size - :log_start), E'\n')
	 WITH ORDINALITY AS l(line, n);
SELECT substring(l.line FROM 'atlas_users audit: ([a-z ]+) operation=') AS why,
	   substring(l.line FROM ' operation=(\S*)') AS operation,
	   substring(l.line FROM ' org_id=(\S*)') AS org_id,
	   substring(l.line FROM ' group_id=(\S*)') AS group_id,
	   substring(l.line FROM ' team_id=(\S*)') AS team_id,
	   substring(l.line FROM ' user_id=(\S*)') AS user_id,
	   substring(l.line FROM ' outcome=(\S*)') AS outcome,
	   substring(l.line FROM ' http_status=(\S*)') AS http_status,
	   substring(l.line FROM ' error_code=(\S*)') AS error_code,
	   substring(l.line FROM ' attempts=(\S*)') AS attempts,
	   substring(l.line FROM ' api_version=(\S*)') AS api_version,
	   substring(l.line FROM ' auth_method=(\S*)') AS auth_method,
	   substring(l.line FROM ' requested_by=(\S*)') AS requested_by,
	   substring(l.line FROM ' executed_as=(\S*)') AS executed_as,
	   regress_norm(substring(d.line FROM ' DETAIL:  (.*)$')) AS detail
FROM log_line l
LEFT JOIN log_line d ON d.n = l.n + 1 AND d.line LIKE '% DETAIL:  %'
WHERE l.line LIKE '%atlas_users audit: %'
ORDER BY l.n;

--
-- no credential and no token in any audit row or in the server log
--
SELECT count(*) AS audit_rows_with_a_credential
FROM atlas_removal_audit a
WHERE a::text ~* '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60|mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f|mdb_sa_id_65f0e0000000000000000002|atlasemu|bearer|authorization'
   OR a::text ~ 'eyJ';
SELECT count(*) AS log_lines_with_a_credential
FROM log_line
WHERE line ~* '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60|mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f|mdb_sa_id_65f0e0000000000000000002|atlasemu|bearer'
   OR line ~ 'eyJ';

--
-- purging for retention keeps atlas_users.audit_min_retention (issue 17):
-- a negative interval, or one shorter than the minimum, is refused and
-- deletes nothing; only a superuser may lower the minimum
--
CREATE TEMP TABLE audit_before AS SELECT count(*) AS n FROM atlas_removal_audit;
SHOW atlas_users.audit_min_retention;
SELECT atlas_purge_audit('-100 years');
SELECT atlas_purge_audit('1 hour');
SELECT atlas_purge_audit('1 mon -40 days');
SELECT (SELECT count(*) FROM atlas_removal_audit) = n AS nothing_deleted FROM audit_before;
SELECT atlas_purge_audit('7 days') AS purged_older_than_the_minimum;
SET ROLE regress_atlas_auditor;
SET atlas_users.audit_min_retention = 0;
RESET ROLE;
SET atlas_users.audit_min_retention = 0;
SELECT atlas_purge_audit('1 hour') AS purged_without_a_minimum;
SELECT atlas_purge_audit('-1 s');
RESET atlas_users.audit_min_retention;
SELECT (SELECT count(*) FROM atlas_removal_audit) = n AS nothing_deleted FROM audit_before;

DROP FUNCTION regress_offboard(text, text);
DROP OWNED BY regress_atlas_auditor;
DROP ROLE regress_atlas_auditor;
