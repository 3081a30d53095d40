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

DROP FUNCTION @extschema@.atlas_users_regrant(text, text, aclitem[]);
