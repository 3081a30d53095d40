/* atlas_users--1.4--1.5.sql: poison rows and hostile tenants, safe
   automation (removal budget, held rows, approvals, evidence) */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.5'" to load this file. \quit

-- Objects whose result columns or parameters change are dropped and created
-- again; the privileges granted on them are kept.  This helper, dropped at
-- the end, re-grants an ACL saved before the drop (PUBLIC included).
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

-- ------------------------------------------------------------------
-- Issue 17: queue rows run as their enqueuer
-- ------------------------------------------------------------------
-- A queued row names its server and its enqueuing role by OID (the names
-- stay, for people): a server or role renamed, and another created under
-- the old name, never runs the row.  Pending rows enqueued before this
-- update take the OIDs their names have now.  The audit names the server
-- by OID too.
ALTER TABLE @extschema@.atlas_removal_queue
	ADD COLUMN server_oid oid,
	ADD COLUMN enqueued_as_oid oid;
ALTER TABLE @extschema@.atlas_removal_audit
	ADD COLUMN server_oid oid;
UPDATE @extschema@.atlas_removal_queue q
	SET server_oid = (SELECT s.oid FROM pg_catalog.pg_foreign_server s WHERE s.srvname = q.server),
		enqueued_as_oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = q.enqueued_as)
	WHERE q.status IN ('queued', 'running');

-- Identical removals are the same operation, ids, server and enqueuing
-- role: another role's enqueue, or one through another server, is a row
-- of its own.
DROP INDEX @extschema@.atlas_removal_queue_pending_idx;
DROP INDEX @extschema@.atlas_removal_queue_pending_username_idx;
CREATE UNIQUE INDEX atlas_removal_queue_pending_idx ON @extschema@.atlas_removal_queue
	(operation, coalesce(org_id, ''), coalesce(group_id, ''), coalesce(team_id, ''), user_id,
	 coalesce(server_oid, 0::oid), coalesce(enqueued_as_oid, 0::oid))
	WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX atlas_removal_queue_pending_username_idx ON @extschema@.atlas_removal_queue
	(operation, coalesce(org_id, ''), coalesce(group_id, ''), coalesce(team_id, ''), lower(username),
	 coalesce(server_oid, 0::oid), coalesce(enqueued_as_oid, 0::oid))
	WHERE status IN ('queued', 'running') AND user_id IS NULL;

-- ---------------------------------------------------------------------------
-- Issue 19: safe automation.  The removal budget holds queued rows past it
-- ('held'); two-person approval ('awaiting_approval'); evidence (who
-- requested and approved, why, which ticket) in the queue and the audit;
-- reason and ticket parameters on every removal and enqueue function; the
-- offboarding report.
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.atlas_removal_queue
	ADD COLUMN requested_by text,
	ADD COLUMN approved_by text,
	ADD COLUMN approved_at timestamptz,
	ADD COLUMN reason text,
	ADD COLUMN ticket text;
UPDATE @extschema@.atlas_removal_queue SET requested_by = enqueued_by WHERE requested_by IS NULL;
ALTER TABLE @extschema@.atlas_removal_queue DROP CONSTRAINT atlas_removal_queue_status_check;
ALTER TABLE @extschema@.atlas_removal_queue ADD CONSTRAINT atlas_removal_queue_status_check
	CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'held', 'awaiting_approval'));
CREATE INDEX atlas_removal_queue_held_idx ON @extschema@.atlas_removal_queue (org_id)
	WHERE status IN ('held', 'awaiting_approval');
ALTER TABLE @extschema@.atlas_removal_audit
	ADD COLUMN approved_by text,
	ADD COLUMN reason text,
	ADD COLUMN ticket text,
	ADD COLUMN forced boolean NOT NULL DEFAULT false;
-- a held row cancelled with atlas_cancel_held() has an audit row too
ALTER TABLE @extschema@.atlas_removal_audit DROP CONSTRAINT atlas_removal_audit_outcome_check;
ALTER TABLE @extschema@.atlas_removal_audit ADD CONSTRAINT atlas_removal_audit_outcome_check
	CHECK (outcome IN ('removed', 'already_absent', 'failed', 'cancelled'));

-- Drop a function and create it again with new parameters, keeping its ACL.
CREATE FUNCTION @extschema@.atlas_users_redefine(old text, params text, result text,
												  csym text, cmt text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	acl aclitem[];
	newsig text;
BEGIN
	SELECT proacl INTO acl FROM pg_catalog.pg_proc WHERE oid = old::regprocedure;
	EXECUTE format('DROP FUNCTION %s', old);
	EXECUTE format('CREATE FUNCTION @extschema@.%s(%s) RETURNS %s AS %L, %L LANGUAGE C VOLATILE PARALLEL UNSAFE',
				   csym, params, result, 'MODULE_PATHNAME', csym);
	SELECT p.oid::regprocedure::text INTO newsig FROM pg_catalog.pg_proc p
	 WHERE p.proname = csym AND p.pronamespace = '@extschema@'::regnamespace;
	PERFORM @extschema@.atlas_users_regrant('FUNCTION', newsig, acl);
	EXECUTE format('COMMENT ON FUNCTION %s IS %L', newsig, cmt);
END
$$;

SELECT @extschema@.atlas_users_redefine(o, p, r, c, m) FROM (VALUES
	('@extschema@.atlas_remove_project_user(text, text, boolean)',
	 'group_id text, user_id text, missing_ok boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'boolean', 'atlas_remove_project_user',
	 'Remove a user from an Atlas project; true when removed, false when already absent with missing_ok'),
	('@extschema@.atlas_remove_org_user(text, text, boolean)',
	 'org_id text, user_id text, missing_ok boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'boolean', 'atlas_remove_org_user',
	 'Remove a user from an Atlas organization, and so from its projects and teams'),
	('@extschema@.atlas_remove_team_user(text, text, text, boolean)',
	 'org_id text, team_id text, user_id text, missing_ok boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'boolean', 'atlas_remove_team_user',
	 'Remove a user from an Atlas team'),
	('@extschema@.atlas_remove_project_user_v1(text, text, boolean)',
	 'group_id text, user_id text, missing_ok boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'boolean', 'atlas_remove_project_user_v1',
	 'Remove a user from an Atlas project with the legacy v1.0 API (digest API keys only)'),
	('@extschema@.atlas_remove_project_users(text, text[], boolean)',
	 'group_id text, user_ids text[], missing_ok boolean DEFAULT true, force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)',
	 'atlas_remove_project_users',
	 'Remove many users from a project concurrently; refused past the removal budget unless force'),
	('@extschema@.atlas_remove_org_users(text, text[], boolean)',
	 'org_id text, user_ids text[], missing_ok boolean DEFAULT true, force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)',
	 'atlas_remove_org_users',
	 'Remove many users from an organization concurrently; refused past the removal budget unless force'),
	('@extschema@.atlas_remove_team_users(text, text, text[], boolean)',
	 'org_id text, team_id text, user_ids text[], missing_ok boolean DEFAULT true, force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)',
	 'atlas_remove_team_users',
	 'Remove many users from a team concurrently; refused past the removal budget unless force'),
	('@extschema@.atlas_enqueue_remove_project_user(text, text)',
	 'group_id text, user_id text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_project_user',
	 'Queue the removal of a user from a project, run after this transaction commits; returns the queue id'),
	('@extschema@.atlas_enqueue_remove_org_user(text, text)',
	 'org_id text, user_id text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_org_user',
	 'Queue the removal of a user from an organization, run after this transaction commits; returns the queue id'),
	('@extschema@.atlas_enqueue_remove_team_user(text, text, text)',
	 'org_id text, team_id text, user_id text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_team_user',
	 'Queue the removal of a user from a team, run after this transaction commits; returns the queue id'),
	('@extschema@.atlas_enqueue_remove_project_user_by_username(text, text)',
	 'group_id text, username text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_project_user_by_username',
	 'Queue the removal of a user named by e-mail from a project; the e-mail is resolved when it runs'),
	('@extschema@.atlas_enqueue_remove_org_user_by_username(text, text)',
	 'org_id text, username text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_org_user_by_username',
	 'Queue the removal of a user named by e-mail from an organization; the e-mail is resolved when it runs'),
	('@extschema@.atlas_enqueue_remove_team_user_by_username(text, text, text)',
	 'org_id text, team_id text, username text, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'bigint', 'atlas_enqueue_remove_team_user_by_username',
	 'Queue the removal of a user named by e-mail from a team; the e-mail is resolved when it runs'),
	('@extschema@.atlas_offboard_user(text, text, text, boolean)',
	 'org_id text, username_or_id text, scope text DEFAULT ''org'', dry_run boolean DEFAULT false, force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'TABLE (organization text, kind text, id text, action text, outcome text, http_status integer, error_code text, detail text)',
	 'atlas_offboard_user',
	 'Remove a person everywhere the scope says (every organization with org_id NULL), invitations included, or show the plan with dry_run; refused past the removal budget unless force'),
	('@extschema@.atlas_reconcile_org(text, text[], boolean, integer, boolean)',
	 'org_id text, keep_usernames text[], dry_run boolean DEFAULT true, max_removals integer DEFAULT 10, force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL',
	 'TABLE (kind text, id text, username text, status text, action text, outcome text, http_status integer, error_code text, detail text)',
	 'atlas_reconcile_org',
	 'Remove everyone from an organization but keep_usernames, refused past max_removals, half the organization or the removal budget unless force')
) AS f(o, p, r, c, m);

DROP FUNCTION @extschema@.atlas_users_redefine(text, text, text, text, text);

-- Held rows: release (sent, with approved_by the releasing role) or cancel.
CREATE FUNCTION @extschema@.atlas_release_held(org_id text, max_rows integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'atlas_release_held'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_cancel_held(org_id text)
RETURNS integer
AS 'MODULE_PATHNAME', 'atlas_cancel_held'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION @extschema@.atlas_approve_removal(queue_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_approve_removal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_release_held(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_cancel_held(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_approve_removal(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.atlas_release_held(text, integer) IS
	'Send removals the removal budget held for an organization (up to max_rows); they are audited with approved_by';
COMMENT ON FUNCTION @extschema@.atlas_cancel_held(text) IS
	'Cancel every removal the removal budget held for an organization; returns how many';
COMMENT ON FUNCTION @extschema@.atlas_approve_removal(bigint) IS
	'Approve a queued removal awaiting approval; its requester cannot approve it (42501)';

-- atlas_queue_status counts held rows and rows awaiting approval too.
DO $$
DECLARE
	view_acl aclitem[] := (SELECT relacl FROM pg_catalog.pg_class
						   WHERE oid = '@extschema@.atlas_queue_status'::regclass);
BEGIN
	DROP VIEW @extschema@.atlas_queue_status;
	CREATE VIEW @extschema@.atlas_queue_status AS
	SELECT c.queued, c.running, c.done, c.failed, c.cancelled, c.oldest_queued_age,
		   w.pid AS worker_pid,
		   w.last_activity AS worker_last_activity,
		   w.rate_limited_until AS worker_rate_limited_until,
		   w.rate_limit_bucket AS worker_rate_limit_bucket,
		   c.held, c.awaiting_approval
	FROM (SELECT count(*) FILTER (WHERE q.status = 'queued') AS queued,
				 count(*) FILTER (WHERE q.status = 'running') AS running,
				 count(*) FILTER (WHERE q.status = 'done') AS done,
				 count(*) FILTER (WHERE q.status = 'failed') AS failed,
				 count(*) FILTER (WHERE q.status = 'cancelled') AS cancelled,
				 pg_catalog.now() - min(q.enqueued_at) FILTER (WHERE q.status = 'queued') AS oldest_queued_age,
				 count(*) FILTER (WHERE q.status = 'held') AS held,
				 count(*) FILTER (WHERE q.status = 'awaiting_approval') AS awaiting_approval
		  FROM @extschema@.atlas_removal_queue q) c,
		 @extschema@.atlas_worker_status() w;
	PERFORM @extschema@.atlas_users_regrant('TABLE', '@extschema@.atlas_queue_status', view_acl);
END
$$;
COMMENT ON VIEW @extschema@.atlas_queue_status IS
	'Queue rows by status (held by the removal budget and awaiting approval too), the oldest queued age, and the background worker';

-- The auditor's report: a row per person and organization.  It runs as its
-- caller (no SECURITY DEFINER function in the extension): the caller needs
-- SELECT on the audit and the queue.
CREATE FUNCTION @extschema@.atlas_offboarding_report(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (org_id text, group_id text, user_id text, username text,
			   requested_at timestamptz, requested_by text, approved_by text,
			   reason text, ticket text, removed_at timestamptz, outcome text,
			   time_taken interval, past_target boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	WITH ev AS (
		SELECT coalesce(a.org_id, q.org_id) AS org_id,
			   CASE WHEN coalesce(a.org_id, q.org_id) IS NULL THEN coalesce(a.group_id, q.group_id) END AS group_id,
			   coalesce(a.user_id, q.user_id) AS user_id,
			   coalesce(a.username, q.username) AS username,
			   coalesce(q.enqueued_at, a.at) AS requested_at,
			   coalesce(q.requested_by, q.enqueued_by, a.requested_by) AS requested_by,
			   coalesce(a.approved_by, q.approved_by) AS approved_by,
			   coalesce(a.reason, q.reason) AS reason,
			   coalesce(a.ticket, q.ticket) AS ticket,
			   CASE WHEN a.outcome IN ('removed', 'already_absent')
					THEN a.at + a.duration_ms * interval '1 millisecond' END AS removed_at,
			   CASE WHEN a.outcome IN ('removed', 'already_absent') THEN 'removed'
					WHEN a.outcome = 'failed' AND q.status IN ('queued', 'running') THEN 'pending'
					WHEN a.outcome = 'failed' THEN 'failed'
					WHEN q.status = 'cancelled' THEN 'cancelled'
					ELSE 'pending' END AS outcome
		  FROM @extschema@.atlas_removal_audit a
		  FULL JOIN @extschema@.atlas_removal_queue q ON q.id = a.queue_id
		 WHERE coalesce(a.operation, q.operation) IN
				('remove_project_user', 'remove_org_user', 'remove_team_user', 'remove_project_user_v1')
		   AND coalesce(q.enqueued_at, a.at) >= since AND coalesce(q.enqueued_at, a.at) < until),
	per AS (
		SELECT ev.org_id, ev.group_id,
			   max(ev.user_id) AS user_id, max(ev.username) AS username,
			   min(ev.requested_at) AS requested_at,
			   (array_agg(ev.requested_by ORDER BY ev.requested_at))[1] AS requested_by,
			   string_agg(DISTINCT ev.approved_by, ', ') AS approved_by,
			   string_agg(DISTINCT ev.reason, '; ') AS reason,
			   string_agg(DISTINCT ev.ticket, ', ') AS ticket,
			   max(ev.removed_at) AS removed_at,
			   CASE WHEN bool_or(ev.outcome = 'removed') THEN 'removed'
					WHEN bool_or(ev.outcome = 'pending') THEN 'pending'
					WHEN bool_or(ev.outcome = 'failed') THEN 'failed'
					ELSE 'cancelled' END AS outcome
		  FROM ev
		 GROUP BY ev.org_id, ev.group_id, lower(coalesce(ev.user_id, ev.username)))
	SELECT per.org_id, per.group_id, per.user_id, per.username, per.requested_at, per.requested_by,
		   per.approved_by, per.reason, per.ticket, per.removed_at, per.outcome,
		   per.removed_at - per.requested_at,
		   coalesce(per.removed_at, least(until, now())) - per.requested_at
			 > coalesce(current_setting('atlas_users.offboarding_target', true), '1d')::interval
	  FROM per
	 ORDER BY per.requested_at, per.org_id, per.user_id
$$;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_offboarding_report(timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.atlas_offboarding_report(timestamptz, timestamptz) IS
	'Evidence for auditors: per person and organization, when removal was requested, by whom, approved by whom, why, and when access was gone; past_target past atlas_users.offboarding_target';
-- ---------------------------------------------------------------------
-- Issue 20: Atlas's calendar and identity providers.  The role mappings
-- of an organization's ACTIVE identity provider.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@.atlas_org_role_mappings(org_id text)
RETURNS TABLE (id text, external_group_name text, roles text[], org_ids text[],
			   project_ids text[], raw jsonb)
AS 'MODULE_PATHNAME', 'atlas_org_role_mappings'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_org_role_mappings(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.atlas_org_role_mappings(text) IS
	'The role mappings (IdP group to Atlas roles) of an organization''s ACTIVE identity provider';

-- atlas_rate_limits() says where each bucket's figures came from
DO $$
DECLARE
	acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
					  WHERE oid = '@extschema@.atlas_rate_limits()'::regprocedure);
BEGIN
	DROP FUNCTION @extschema@.atlas_rate_limits();
	CREATE FUNCTION @extschema@.atlas_rate_limits()
	RETURNS TABLE (bucket text, capacity integer, refill integer, refill_seconds double precision,
				   tokens double precision, in_flight integer, blocked_until timestamptz,
				   answers_429 bigint, last_used timestamptz, source text)
	AS 'MODULE_PATHNAME', 'atlas_rate_limits'
	LANGUAGE C VOLATILE PARALLEL SAFE;
	PERFORM @extschema@.atlas_users_regrant('FUNCTION', '@extschema@.atlas_rate_limits()', acl);
END
$$;
COMMENT ON FUNCTION @extschema@.atlas_rate_limits() IS
	'What atlas_users learned of each Atlas rate-limit bucket it paces requests by, and from where';
COMMENT ON FUNCTION @extschema@.atlas_reset_rate_limits() IS
	'Forget what atlas_users learned of Atlas rate limits (after a 429 that was not Atlas''s, say), and what listRateLimits said of each host';

-- ----------------------------------------------------------------------
-- Issue 22: request statistics (atlas_stat_requests, atlas_stat_reset)
-- ----------------------------------------------------------------------
CREATE FUNCTION @extschema@.atlas_stat_requests_rows()
RETURNS TABLE(server text, host text, endpoint text, http_status integer,
	calls bigint, total_time_ms double precision, max_time_ms double precision,
	retries bigint, rate_limit_waits bigint, rate_limit_wait_ms double precision,
	bytes_received bigint, last_call timestamptz, stats_reset timestamptz)
AS 'MODULE_PATHNAME', 'atlas_stat_requests_rows'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW @extschema@.atlas_stat_requests AS
SELECT * FROM @extschema@.atlas_stat_requests_rows();

CREATE FUNCTION @extschema@.atlas_stat_reset()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'atlas_stat_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.atlas_stat_requests_rows() IS
	'The request counters behind the atlas_stat_requests view';
COMMENT ON VIEW @extschema@.atlas_stat_requests IS
	'Atlas requests by server, host, endpoint and HTTP status (0: no answer): calls, time, retries, rate-limit waits, bytes';
COMMENT ON FUNCTION @extschema@.atlas_stat_reset() IS
	'Zero the counters of atlas_stat_requests; returns the time of the reset (its stats_reset column)';

REVOKE ALL ON @extschema@.atlas_stat_requests FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_stat_requests_rows() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_stat_reset() FROM PUBLIC;

-- ----------------------------------------------------------------------
-- Issue 22: atlas_health(), one row for monitoring
-- ----------------------------------------------------------------------
CREATE FUNCTION @extschema@.atlas_token_states()
RETURNS TABLE(server text, state text, valid_until timestamptz, failed_at timestamptz)
AS 'MODULE_PATHNAME', 'atlas_token_states'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.atlas_token_states() IS
	'Per server: its token state (valid, none, digest, unavailable), until when its token is valid and when its last token request failed; never the token';

-- Counts the queue's rows as the queue's owner, so that a monitoring role
-- needs EXECUTE only: it shows counts and times, never a user id or a
-- credential.
CREATE FUNCTION @extschema@.atlas_health()
RETURNS TABLE(queued bigint, running bigint, held bigint, awaiting_approval bigint,
	failed_24h bigint, oldest_queued_age interval,
	worker_running boolean, worker_last_activity timestamptz,
	last_success timestamptz, last_failure timestamptz,
	tokens jsonb, last_429 timestamptz)
AS 'MODULE_PATHNAME', 'atlas_health'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.atlas_health() IS
	'One row for monitoring: queue rows by status, failures in the last 24 h, the worker, token states per server, the last 429';

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_token_states() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_health() FROM PUBLIC;

-- ----------------------------------------------------------------------
-- Issue 22: names in offboarding plans.  atlas_offboard_user shows each
-- organization's, project's and team's name beside its id.
-- ----------------------------------------------------------------------
DO $$
DECLARE
	acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
					  WHERE oid = '@extschema@.atlas_offboard_user(text, text, text, boolean, boolean, text, text)'::regprocedure);
BEGIN
	DROP FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean, boolean, text, text);
	CREATE FUNCTION @extschema@.atlas_offboard_user(org_id text, username_or_id text,
			scope text DEFAULT 'org', dry_run boolean DEFAULT false,
			force boolean DEFAULT false, reason text DEFAULT NULL, ticket text DEFAULT NULL)
	RETURNS TABLE (organization text, kind text, id text, name text, action text, outcome text,
				   http_status integer, error_code text, detail text)
	AS 'MODULE_PATHNAME', 'atlas_offboard_user'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
	PERFORM @extschema@.atlas_users_regrant('FUNCTION',
		'@extschema@.atlas_offboard_user(text, text, text, boolean, boolean, text, text)', acl);
END
$$;
COMMENT ON FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean, boolean, text, text) IS
	'Remove a person everywhere the scope says (every organization with org_id NULL), invitations included, or show the plan with dry_run; refused past the removal budget unless force';

DROP FUNCTION @extschema@.atlas_users_regrant(text, text, aclitem[]);
