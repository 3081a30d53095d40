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

DROP FUNCTION @extschema@.atlas_users_regrant(text, text, aclitem[]);
