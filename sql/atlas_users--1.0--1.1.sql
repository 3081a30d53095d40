/* atlas_users--1.0--1.1.sql: the removal queue, its worker and the durable audit */

\echo Use "ALTER EXTENSION atlas_users UPDATE TO '1.1'" to load this file. \quit

-- Removals to run after the enqueuing transaction commits.
CREATE TABLE @extschema@.atlas_removal_queue (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	enqueued_at		timestamptz NOT NULL DEFAULT now(),
	enqueued_by		text NOT NULL,
	operation		text NOT NULL
		CHECK (operation IN ('remove_project_user', 'remove_org_user', 'remove_team_user')),
	org_id			text,
	group_id		text,
	team_id			text,
	user_id			text NOT NULL,
	status			text NOT NULL DEFAULT 'queued'
		CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz NOT NULL DEFAULT now(),
	http_status		integer,
	error_code		text,
	detail			text,
	finished_at		timestamptz,
	claimed_by		integer,
	claimed_at		timestamptz
);

-- At most one pending row per removal: enqueueing it again returns that row.
CREATE UNIQUE INDEX atlas_removal_queue_pending_idx ON @extschema@.atlas_removal_queue
	(operation, coalesce(org_id, ''), coalesce(group_id, ''), coalesce(team_id, ''), user_id)
	WHERE status IN ('queued', 'running');
CREATE INDEX atlas_removal_queue_due_idx ON @extschema@.atlas_removal_queue (next_attempt_at)
	WHERE status = 'queued';
CREATE INDEX atlas_removal_queue_finished_idx ON @extschema@.atlas_removal_queue (finished_at)
	WHERE finished_at IS NOT NULL;

COMMENT ON TABLE @extschema@.atlas_removal_queue IS
	'Atlas user removals queued by atlas_enqueue_* and atlas_offboard_trigger, run after commit';

REVOKE ALL ON @extschema@.atlas_removal_queue FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.atlas_removal_queue', '');

CREATE FUNCTION @extschema@.atlas_enqueue_remove_project_user(group_id text, user_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_project_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_enqueue_remove_org_user(org_id text, user_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_org_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_enqueue_remove_team_user(org_id text, team_id text, user_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'atlas_enqueue_remove_team_user'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_cancel_removal(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_cancel_removal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_process_queue(max_items integer DEFAULT 100)
RETURNS integer
AS 'MODULE_PATHNAME', 'atlas_process_queue'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_offboard_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'atlas_offboard_trigger'
LANGUAGE C;

CREATE FUNCTION @extschema@.atlas_audit_flush(timeout_ms integer DEFAULT 5000)
RETURNS boolean
AS 'MODULE_PATHNAME', 'atlas_audit_flush'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.atlas_worker_status(
	OUT pid integer, OUT last_activity timestamptz, OUT audit_records_logged bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'atlas_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.atlas_queue_status AS
SELECT c.queued, c.running, c.done, c.failed, c.cancelled, c.oldest_queued_age,
	   w.pid AS worker_pid,
	   w.last_activity AS worker_last_activity
FROM (SELECT count(*) FILTER (WHERE q.status = 'queued') AS queued,
			 count(*) FILTER (WHERE q.status = 'running') AS running,
			 count(*) FILTER (WHERE q.status = 'done') AS done,
			 count(*) FILTER (WHERE q.status = 'failed') AS failed,
			 count(*) FILTER (WHERE q.status = 'cancelled') AS cancelled,
			 pg_catalog.now() - min(q.enqueued_at) FILTER (WHERE q.status = 'queued') AS oldest_queued_age
	  FROM @extschema@.atlas_removal_queue q) c,
	 @extschema@.atlas_worker_status() w;

COMMENT ON VIEW @extschema@.atlas_queue_status IS
	'Queue rows by status, the oldest queued age, and the background worker';

REVOKE ALL ON @extschema@.atlas_queue_status FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_project_user(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_org_user(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_enqueue_remove_team_user(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_cancel_removal(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_process_queue(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_offboard_trigger() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_audit_flush(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.atlas_worker_status() FROM PUBLIC;
