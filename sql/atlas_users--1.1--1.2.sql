/* atlas_users--1.1--1.2.sql: username lookup, offboarding and bulk removal */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.2'" to load this file. \quit

CREATE FUNCTION @extschema@.atlas_find_user_id(org_id text, username text)
RETURNS text
AS 'MODULE_PATHNAME', 'atlas_find_user_id'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_user_memberships(org_id text, username_or_id text)
RETURNS TABLE (scope text, id text, name text, roles text[], org_membership_status text)
AS 'MODULE_PATHNAME', 'atlas_user_memberships'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_offboard_user(
	org_id text, username_or_id text, scope text DEFAULT 'org', dry_run boolean DEFAULT false)
RETURNS TABLE (scope text, id text, action text, outcome text, http_status integer,
			   error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_offboard_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_project_users(
	group_id text, user_ids text[], missing_ok boolean DEFAULT true)
RETURNS TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_remove_project_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_org_users(
	org_id text, user_ids text[], missing_ok boolean DEFAULT true)
RETURNS TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_remove_org_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_team_users(
	org_id text, team_id text, user_ids text[], missing_ok boolean DEFAULT true)
RETURNS TABLE (user_id text, removed boolean, http_status integer, error_code text, detail text)
AS 'MODULE_PATHNAME', 'atlas_remove_team_users'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_find_user_id(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_user_memberships(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_offboard_user(text, text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_project_users(text, text[], boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_org_users(text, text[], boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_team_users(text, text, text[], boolean) FROM PUBLIC;

-- Queue rows may name the user by username (e-mail); it is resolved to an
-- id when the row runs, never inside the enqueuing transaction.
ALTER TABLE @extschema@.atlas_removal_queue ADD COLUMN username text;
ALTER TABLE @extschema@.atlas_removal_queue ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE @extschema@.atlas_removal_queue ADD CONSTRAINT atlas_removal_queue_user_check
	CHECK (user_id IS NOT NULL OR username IS NOT NULL);
CREATE UNIQUE INDEX atlas_removal_queue_pending_username_idx ON @extschema@.atlas_removal_queue
	(operation, coalesce(org_id, ''), coalesce(group_id, ''), coalesce(team_id, ''), lower(username))
	WHERE status IN ('queued', 'running') AND user_id IS NULL;

ALTER TABLE @extschema@.atlas_removal_audit ADD COLUMN username text;

CREATE FUNCTION @extschema@.atlas_enqueue_remove_project_user_by_username(group_id text, username text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_project_user_by_username'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_enqueue_remove_org_user_by_username(org_id text, username text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_org_user_by_username'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_enqueue_remove_team_user_by_username(org_id text, team_id text, username text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_team_user_by_username'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_project_user_by_username(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_org_user_by_username(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_team_user_by_username(text, text, text) FROM PUBLIC;
