/* atlas_users--1.2--1.3.sql: an append-only audit, with a purge for retention */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.3'" to load this file. \quit

CREATE FUNCTION @extschema@.atlas_audit_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'atlas_audit_guard'
LANGUAGE C;

-- Nobody, the owner included, may change or remove audit rows ...
CREATE TRIGGER atlas_removal_audit_append_only
	BEFORE UPDATE OR DELETE ON @extschema@.atlas_removal_audit
	FOR EACH ROW EXECUTE FUNCTION @extschema@.atlas_audit_guard();
CREATE TRIGGER atlas_removal_audit_no_truncate
	BEFORE TRUNCATE ON @extschema@.atlas_removal_audit
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.atlas_audit_guard();

-- ... except through this function, for retention.
CREATE FUNCTION @extschema@.atlas_purge_audit(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_purge_audit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.atlas_purge_audit(interval) IS
	'Delete audit rows older than the given interval; the only way to remove audit rows';

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_audit_guard() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_purge_audit(interval) FROM PUBLIC;

-- Fire even with session_replication_role = replica.
ALTER TABLE @extschema@.atlas_removal_audit ENABLE ALWAYS TRIGGER atlas_removal_audit_append_only;
ALTER TABLE @extschema@.atlas_removal_audit ENABLE ALWAYS TRIGGER atlas_removal_audit_no_truncate;
