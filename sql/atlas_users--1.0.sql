/* atlas_users--1.0.sql: objects of version 1.0 */

\echo Use "CREATE EXTENSION atlas_users" to load this file. \quit

-- One row per removal call.  Rows are inserted by the extension's C code
-- as the table's owner; nobody else is granted any privilege on it.
CREATE TABLE @extschema@.atlas_removal_audit (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at				timestamptz NOT NULL,
	requested_by	text NOT NULL,
	executed_as		text NOT NULL,
	operation		text NOT NULL,
	org_id			text,
	group_id		text,
	team_id			text,
	user_id			text,
	api_version		text,
	auth_method		text,
	http_status		integer,
	outcome			text NOT NULL
		CHECK (outcome IN ('removed', 'already_absent', 'failed')),
	error_code		text,
	detail			text,
	duration_ms		double precision NOT NULL,
	attempts		integer NOT NULL
);

CREATE INDEX atlas_removal_audit_at_idx ON @extschema@.atlas_removal_audit (at);
CREATE INDEX atlas_removal_audit_user_idx ON @extschema@.atlas_removal_audit (user_id);

COMMENT ON TABLE @extschema@.atlas_removal_audit IS
	'One row per Atlas user removal attempt made by atlas_users';

REVOKE ALL ON @extschema@.atlas_removal_audit FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.atlas_removal_audit', '');

CREATE FUNCTION @extschema@.atlas_remove_project_user(
	group_id text, user_id text, missing_ok boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_remove_project_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_org_user(
	org_id text, user_id text, missing_ok boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_remove_org_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_team_user(
	org_id text, team_id text, user_id text, missing_ok boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_remove_team_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_remove_project_user_v1(
	group_id text, user_id text, missing_ok boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_remove_project_user_v1'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.atlas_remove_project_user(text, text, boolean) IS
	'Remove a user from an Atlas project (DELETE /api/atlas/v2/groups/{groupId}/users/{userId})';
COMMENT ON FUNCTION @extschema@.atlas_remove_org_user(text, text, boolean) IS
	'Remove a user from an Atlas organization, and so from its projects and teams';
COMMENT ON FUNCTION @extschema@.atlas_remove_team_user(text, text, text, boolean) IS
	'Remove a user from an Atlas team (POST /api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser)';
COMMENT ON FUNCTION @extschema@.atlas_remove_project_user_v1(text, text, boolean) IS
	'Remove a user from an Atlas project with the legacy v1.0 API (digest keys only)';

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_project_user(text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_org_user(text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_team_user(text, text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_remove_project_user_v1(text, text, boolean) FROM PUBLIC;
