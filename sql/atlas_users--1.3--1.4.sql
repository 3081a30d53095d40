/* atlas_users--1.3--1.4.sql: production Atlas (shared tokens, rate-limit pacing),
   credentials as foreign servers, listings and complete offboarding, standbys */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.4'" to load this file. \quit

-- Objects whose result columns change are dropped and created again; the
-- privileges granted on them are kept.  This helper, dropped at the end,
-- re-grants an ACL saved before the drop (PUBLIC included, if it was there).
CREATE FUNCTION @extschema@.atlas_users_regrant(kind text, target text, acl aclitem[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	a record;
BEGIN
	EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', kind, target);
	FOR a IN SELECT * FROM aclexplode(acl) LOOP
		EXECUTE format('GRANT %s ON %s %s TO %s', a.privilege_type, kind, target,
					   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
							ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END);
	END LOOP;
END
$$;

-- atlas_offboard_user: its result column "scope" no longer shares the name of
-- its input "scope" (the rows' kinds: org, project and team memberships,
-- access through teams and org roles, invitations, a federated identity
-- provider), and each row says its organization (org_id NULL visits every one)
DO $$
DECLARE
	acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
					  WHERE oid = '@extschema@.atlas_offboard_user(text, text, text, boolean)'::regprocedure);
BEGIN
	DROP FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean);
	CREATE FUNCTION @extschema@.atlas_offboard_user(
		org_id text, username_or_id text, scope text DEFAULT 'org', dry_run boolean DEFAULT false)
	RETURNS TABLE (organization text, kind text, id text, action text, outcome text,
				   http_status integer, error_code text, detail text)
	AS 'MODULE_PATHNAME', 'atlas_offboard_user'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
	PERFORM @extschema@.atlas_users_regrant('FUNCTION',
		'@extschema@.atlas_offboard_user(text, text, text, boolean)', acl);
END
$$;

-- atlas_worker_status() and atlas_queue_status also say until when a rate
-- limit holds the worker back, and which one
DO $$
DECLARE
	fn_acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
						 WHERE oid = '@extschema@.atlas_worker_status()'::regprocedure);
	view_acl aclitem[] := (SELECT relacl FROM pg_catalog.pg_class
						   WHERE oid = '@extschema@.atlas_queue_status'::regclass);
BEGIN
	DROP VIEW @extschema@.atlas_queue_status;
	DROP FUNCTION @extschema@.atlas_worker_status();
	CREATE FUNCTION @extschema@.atlas_worker_status(
		OUT pid integer, OUT last_activity timestamptz, OUT audit_records_logged bigint,
		OUT rate_limited_until timestamptz, OUT rate_limit_bucket text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'atlas_worker_status'
	LANGUAGE C VOLATILE PARALLEL SAFE;
	CREATE VIEW @extschema@.atlas_queue_status AS
	SELECT c.queued, c.running, c.done, c.failed, c.cancelled, c.oldest_queued_age,
		   w.pid AS worker_pid,
		   w.last_activity AS worker_last_activity,
		   w.rate_limited_until AS worker_rate_limited_until,
		   w.rate_limit_bucket AS worker_rate_limit_bucket
	FROM (SELECT count(*) FILTER (WHERE q.status = 'queued') AS queued,
				 count(*) FILTER (WHERE q.status = 'running') AS running,
				 count(*) FILTER (WHERE q.status = 'done') AS done,
				 count(*) FILTER (WHERE q.status = 'failed') AS failed,
				 count(*) FILTER (WHERE q.status = 'cancelled') AS cancelled,
				 pg_catalog.now() - min(q.enqueued_at) FILTER (WHERE q.status = 'queued') AS oldest_queued_age
		  FROM @extschema@.atlas_removal_queue q) c,
		 @extschema@.atlas_worker_status() w;
	PERFORM @extschema@.atlas_users_regrant('FUNCTION', '@extschema@.atlas_worker_status()', fn_acl);
	PERFORM @extschema@.atlas_users_regrant('TABLE', '@extschema@.atlas_queue_status', view_acl);
END
$$;

-- the rate-limit buckets the extension paces its requests by
CREATE FUNCTION @extschema@.atlas_rate_limits()
RETURNS TABLE (bucket text, capacity integer, refill integer, refill_seconds double precision,
			   tokens double precision, in_flight integer, blocked_until timestamptz,
			   answers_429 bigint, last_used timestamptz)
AS 'MODULE_PATHNAME', 'atlas_rate_limits'
LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.atlas_reset_rate_limits()
RETURNS integer
AS 'MODULE_PATHNAME', 'atlas_reset_rate_limits'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_forget_tokens()
RETURNS integer
AS 'MODULE_PATHNAME', 'atlas_forget_tokens'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_forget_tokens() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_rate_limits() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_reset_rate_limits() FROM PUBLIC;

-- Credentials as foreign servers and user mappings: a server says where
-- Atlas is (and, with org_id, which organization it is for), a user
-- mapping holds a role's key or service account; USAGE on the server
-- grants its use.
CREATE FUNCTION @extschema@.atlas_users_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'atlas_users_fdw_validator'
LANGUAGE C;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_users_fdw_validator(text[], oid) FROM PUBLIC;
CREATE FOREIGN DATA WRAPPER atlas_users VALIDATOR @extschema@.atlas_users_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER atlas_users IS
	'Atlas credentials: servers (base_url, org_id, ...) and user mappings (keys, service accounts)';

-- Listings: what Atlas holds, every page, typed columns and the raw entry
CREATE FUNCTION @extschema@.atlas_orgs()
RETURNS TABLE (id text, name text, is_deleted boolean, server text, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_orgs'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_org_users(org_id text, statuses text[] DEFAULT NULL)
RETURNS TABLE (id text, username text, status text, first_name text, last_name text,
			   org_roles text[], team_ids text[], project_ids text[], created timestamptz,
			   last_auth timestamptz, invitation_created timestamptz,
			   invitation_expires timestamptz, inviter_username text, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_org_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_org_projects(org_id text)
RETURNS TABLE (id text, name text, created timestamptz, cluster_count integer, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_org_projects'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_org_teams(org_id text)
RETURNS TABLE (id text, name text, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_org_teams'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_team_users(org_id text, team_id text)
RETURNS TABLE (id text, username text, status text, first_name text, last_name text, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_team_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_org_invitations(org_id text)
RETURNS TABLE (id text, username text, org_roles text[], team_ids text[], project_ids text[],
			   inviter_username text, created timestamptz, expires timestamptz, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_org_invitations'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_project_invitations(group_id text)
RETURNS TABLE (id text, username text, roles text[], inviter_username text,
			   created timestamptz, expires timestamptz, raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_project_invitations'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_project_users(
	group_id text, through_teams boolean DEFAULT true, through_org_roles boolean DEFAULT true)
RETURNS TABLE (id text, username text, status text, via text, roles text[], team_id text,
			   raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_project_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Reconciliation, with its blast-radius guard
CREATE FUNCTION @extschema@.atlas_reconcile_org(
	org_id text, keep_usernames text[], dry_run boolean DEFAULT true,
	max_removals integer DEFAULT 10, force boolean DEFAULT false)
RETURNS TABLE (kind text, id text, username text, status text, action text, outcome text,
			   http_status integer, error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_reconcile_org'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_orgs() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_org_users(text, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_org_projects(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_org_teams(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_team_users(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_org_invitations(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_project_invitations(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_project_users(text, boolean, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_reconcile_org(text, text[], boolean, integer, boolean) FROM PUBLIC;

-- A queued removal runs with the server and the user mapping of the role
-- that enqueued it; its audit rows name the server and the queue row.
ALTER TABLE @extschema@.atlas_removal_queue
	ADD COLUMN server text,
	ADD COLUMN enqueued_as text;
ALTER TABLE @extschema@.atlas_removal_audit
	ADD COLUMN server text,
	ADD COLUMN queue_id bigint;

-- a comment on every function and view
COMMENT ON FUNCTION @extschema@.atlas_remove_project_user(text, text, boolean) IS
	'Remove a user from an Atlas project; true when removed, false when already absent with missing_ok';
COMMENT ON FUNCTION @extschema@.atlas_remove_org_user(text, text, boolean) IS
	'Remove a user from an Atlas organization, and so from its projects and teams';
COMMENT ON FUNCTION @extschema@.atlas_remove_team_user(text, text, text, boolean) IS
	'Remove a user from an Atlas team';
COMMENT ON FUNCTION @extschema@.atlas_remove_project_user_v1(text, text, boolean) IS
	'Remove a user from an Atlas project with the legacy v1.0 API (digest API keys only)';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_project_user(text, text) IS
	'Queue the removal of a user from a project, run after this transaction commits; returns the queue id';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_org_user(text, text) IS
	'Queue the removal of a user from an organization, run after this transaction commits; returns the queue id';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_team_user(text, text, text) IS
	'Queue the removal of a user from a team, run after this transaction commits; returns the queue id';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_project_user_by_username(text, text) IS
	'Queue the removal of a user named by e-mail from a project; the e-mail is resolved when it runs';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_org_user_by_username(text, text) IS
	'Queue the removal of a user named by e-mail from an organization; the e-mail is resolved when it runs';
COMMENT ON FUNCTION @extschema@.atlas_enqueue_remove_team_user_by_username(text, text, text) IS
	'Queue the removal of a user named by e-mail from a team; the e-mail is resolved when it runs';
COMMENT ON FUNCTION @extschema@.atlas_cancel_removal(bigint) IS
	'Cancel a queued removal that has not started; false (with a NOTICE) when it is no longer queued';
COMMENT ON FUNCTION @extschema@.atlas_process_queue(integer) IS
	'Run up to max_items due queued removals in this session; returns how many it ran';
COMMENT ON FUNCTION @extschema@.atlas_offboard_trigger() IS
	'AFTER ROW trigger for HR tables: queues a removal of the person the row names';
COMMENT ON FUNCTION @extschema@.atlas_audit_flush(integer) IS
	'Wait until every audit record handed to the worker so far is in the table; false on timeout';
COMMENT ON FUNCTION @extschema@.atlas_worker_status() IS
	'The background worker: its pid, last activity, audit records it logged instead of inserting, and a rate limit it waits for';
COMMENT ON FUNCTION @extschema@.atlas_find_user_id(text, text) IS
	'The id of an ACTIVE or PENDING organization user named by e-mail, or NULL';
COMMENT ON FUNCTION @extschema@.atlas_user_memberships(text, text) IS
	'Where a user has access: one row for the organization, each project and each team';
COMMENT ON FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean) IS
	'Remove a person everywhere the scope says (every organization with org_id NULL), invitations included, or show the plan with dry_run';
COMMENT ON FUNCTION @extschema@.atlas_orgs() IS
	'The organizations the credentials of every usable server can see';
COMMENT ON FUNCTION @extschema@.atlas_org_users(text, text[]) IS
	'Every user of an organization (ACTIVE and PENDING unless statuses says otherwise)';
COMMENT ON FUNCTION @extschema@.atlas_org_projects(text) IS
	'Every project of an organization';
COMMENT ON FUNCTION @extschema@.atlas_org_teams(text) IS
	'Every team of an organization';
COMMENT ON FUNCTION @extschema@.atlas_team_users(text, text) IS
	'Every member of a team';
COMMENT ON FUNCTION @extschema@.atlas_org_invitations(text) IS
	'Pending invitations to an organization';
COMMENT ON FUNCTION @extschema@.atlas_project_invitations(text) IS
	'Pending invitations to a project (invisible to the user listings)';
COMMENT ON FUNCTION @extschema@.atlas_project_users(text, boolean, boolean) IS
	'Who reaches a project, one row per way: direct role, team, or organization role';
COMMENT ON FUNCTION @extschema@.atlas_reconcile_org(text, text[], boolean, integer, boolean) IS
	'Remove everyone from an organization but keep_usernames, refused past max_removals or half the organization unless force';
COMMENT ON FUNCTION @extschema@.atlas_remove_project_users(text, text[], boolean) IS
	'Remove many users from a project concurrently; one row per user, API errors as rows';
COMMENT ON FUNCTION @extschema@.atlas_remove_org_users(text, text[], boolean) IS
	'Remove many users from an organization concurrently; one row per user, API errors as rows';
COMMENT ON FUNCTION @extschema@.atlas_remove_team_users(text, text, text[], boolean) IS
	'Remove many users from a team concurrently; one row per user, API errors as rows';
COMMENT ON FUNCTION @extschema@.atlas_audit_guard() IS
	'Trigger that keeps atlas_removal_audit append-only; only atlas_purge_audit() deletes';
COMMENT ON FUNCTION @extschema@.atlas_purge_audit(interval) IS
	'Delete audit rows older than the given interval; the only way to remove audit rows';
COMMENT ON FUNCTION @extschema@.atlas_rate_limits() IS
	'What atlas_users learned of each Atlas rate-limit bucket it paces requests by';
COMMENT ON FUNCTION @extschema@.atlas_reset_rate_limits() IS
	'Forget what atlas_users learned of Atlas rate limits (after a 429 that was not Atlas''s, say)';
COMMENT ON FUNCTION @extschema@.atlas_forget_tokens() IS
	'Drop every cached service-account token; the next call fetches a new one';
COMMENT ON FUNCTION @extschema@.atlas_users_fdw_validator(text[], oid) IS
	'Validator of the options of atlas_users servers and user mappings';
COMMENT ON VIEW @extschema@.atlas_queue_status IS
	'Queue rows by status, the oldest queued age, and the background worker (and a rate limit it waits for)';

-- ---------------------------------------------------------------------------
-- Dump and restore (issue 14): pg_dump keeps the positions of the identity
-- sequences of the audit and the queue.  pg_dump writes the rows of an
-- extension's configuration tables (marked in 1.0 and 1.1), but the state of
-- a sequence only when the sequence is marked as well; unmarked, both
-- started at 1 again in a restored database, and the next audit row or
-- enqueue failed on a duplicate id (or reused the id of a purged row).  A
-- fresh CREATE EXTENSION runs 1.0 and then every update, so it ends marked
-- too.
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('@extschema@.atlas_removal_audit', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('@extschema@.atlas_removal_queue', 'id')::regclass, '');

DROP FUNCTION @extschema@.atlas_users_regrant(text, text, aclitem[]);
