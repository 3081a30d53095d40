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

DROP FUNCTION @extschema@.atlas_users_regrant(text, text, aclitem[]);
