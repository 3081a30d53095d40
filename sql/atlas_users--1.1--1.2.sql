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
