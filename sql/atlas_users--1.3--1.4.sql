/* atlas_users--1.3--1.4.sql: production Atlas (shared tokens, rate-limit pacing),
   credentials as foreign servers, listings and complete offboarding, standbys */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.4'" to load this file. \quit

-- atlas_offboard_user: its result column "scope" no longer shares the name of
-- its input "scope" (the rows' kinds are org, project and team memberships)
DROP FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean);
CREATE FUNCTION @extschema@.atlas_offboard_user(
	org_id text, username_or_id text, scope text DEFAULT 'org', dry_run boolean DEFAULT false)
RETURNS TABLE (kind text, id text, action text, outcome text, http_status integer,
			   error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_offboard_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean) FROM PUBLIC;

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
	'The background worker: its pid, last activity, and audit records it had to log instead of insert';
COMMENT ON FUNCTION @extschema@.atlas_find_user_id(text, text) IS
	'The id of an ACTIVE or PENDING organization user named by e-mail, or NULL';
COMMENT ON FUNCTION @extschema@.atlas_user_memberships(text, text) IS
	'Where a user has access: one row for the organization, each project and each team';
COMMENT ON FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean) IS
	'Remove a person everywhere the scope says, or show the plan with dry_run; one row per membership';
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
COMMENT ON VIEW @extschema@.atlas_queue_status IS
	'Queue rows by status, the oldest queued age, and the background worker';
