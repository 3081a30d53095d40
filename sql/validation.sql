--
-- validation: every id argument of every removal function is checked
-- against ^[a-f0-9]{24}$ before anything is sent.  NULL or malformed input
-- raises SQLSTATE 22023 naming the parameter and the expected format, and
-- the emulator's counters prove that no request left the backend.
--
\! test/emuctl reset >/dev/null
SELECT count(*) AS audit_rows_before FROM atlas_removal_audit \gset

-- what a caller sees
SELECT atlas_remove_project_user('65F0B0000000000000000001', '65f0d0000000000000000001');
SELECT atlas_remove_org_user('65f0a0000000000000000001', NULL);

-- The bad values.  Each is tried in every id parameter of every function,
-- with valid ids in the other parameters.
CREATE TEMP TABLE bad_id (n int, label text, v text);
INSERT INTO bad_id VALUES
	(1, 'NULL', NULL),
	(2, 'empty string', ''),
	(3, 'uppercase hex', '65F0D0000000000000000001'),
	(4, 'one uppercase letter', '65f0d000000000000000000A'),
	(5, '23 characters', '65f0d000000000000000001'),
	(6, '25 characters', '65f0d00000000000000000011'),
	(7, 'non-hex letter', '65f0d000000000000000000g'),
	(8, '0x prefix', '0x65f0d00000000000000001'),
	(9, '../ (24 chars)', '../65f0d00000000000000001'),
	(10, 'id/../id', '65f0d0000000000000000001/../65f0d0000000000000000002'),
	(11, 'slash inside', '65f0d0000000/00000000001'),
	(12, '%2e%2e%2f (24 chars)', '%2e%2e%2f65f0d00000000000'),
	(13, '%2E%2E%2F (24 chars)', '%2E%2E%2F65f0d00000000000'),
	(14, '%2e%2e alone', '%2e%2e'),
	(15, 'single quote', '65f0d00000000000000000''1'),
	(16, 'double quote', '65f0d00000000000000000"1'),
	(17, 'backslash', '65f0d00000000000000000\1'),
	(18, 'leading space', ' 65f0d0000000000000000001'),
	(19, 'trailing space', '65f0d0000000000000000001 '),
	(20, 'inner space', '65f0d000000 000000000001'),
	(21, 'trailing newline', E'65f0d0000000000000000001\n'),
	(22, 'tab and CR', E'65f0d0000000\t0000000000\r1'),
	(23, 'control character', E'65f0d000000000000000000\x01'),
	(24, 'non-ASCII letter', '65f0d0000000000000000é01'),
	(25, 'fullwidth digits', '６５f0d0000000000000000001'),
	(26, 'query string', '65f0d0000000000000000001?envelope=true'),
	(27, 'fragment', '65f0d0000000000000000001#x'),
	(28, 'longer than 64', repeat('65f0d0000000000000000001', 4));

CREATE TEMP TABLE id_param (n int, func text, param text, call text);
INSERT INTO id_param VALUES
	(1, 'atlas_remove_project_user', 'group_id',
	 $$SELECT atlas_remove_project_user(@, '65f0d0000000000000000001')$$),
	(2, 'atlas_remove_project_user', 'user_id',
	 $$SELECT atlas_remove_project_user('65f0b0000000000000000001', @, true)$$),
	(3, 'atlas_remove_org_user', 'org_id',
	 $$SELECT atlas_remove_org_user(@, '65f0d0000000000000000001')$$),
	(4, 'atlas_remove_org_user', 'user_id',
	 $$SELECT atlas_remove_org_user('65f0a0000000000000000001', @, true)$$),
	(5, 'atlas_remove_team_user', 'org_id',
	 $$SELECT atlas_remove_team_user(@, '65f0c0000000000000000001', '65f0d0000000000000000001')$$),
	(6, 'atlas_remove_team_user', 'team_id',
	 $$SELECT atlas_remove_team_user('65f0a0000000000000000001', @, '65f0d0000000000000000001')$$),
	(7, 'atlas_remove_team_user', 'user_id',
	 $$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', @, true)$$),
	(8, 'atlas_remove_project_user_v1', 'group_id',
	 $$SELECT atlas_remove_project_user_v1(@, '65f0d0000000000000000001')$$),
	(9, 'atlas_remove_project_user_v1', 'user_id',
	 $$SELECT atlas_remove_project_user_v1('65f0b0000000000000000001', @, true)$$);

CREATE TEMP TABLE outcome AS
SELECT p.n AS pn, b.n AS bn, p.func, p.param, b.label, e.*
FROM id_param p CROSS JOIN bad_id b,
	 LATERAL regress_error(replace(p.call, '@', quote_nullable(b.v))) e;

-- every case raised 22023; the message names the parameter and shows the
-- value escaped (control characters as \xNN, at most 64 characters)
SELECT func, param, label, state, message
FROM outcome ORDER BY pn, bn;

-- the detail states the expected format; there is no hint and no context
-- (no request was made)
SELECT state, detail, hint, context, count(*)
FROM outcome GROUP BY 1, 2, 3, 4 ORDER BY 2;

-- missing_ok must not be NULL either
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000001', NULL)$$);
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001', NULL)$$);
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000001', NULL)$$);
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000001', '65f0d0000000000000000001', NULL)$$);

-- with several bad arguments, the first one is named
SELECT regress_try($$SELECT atlas_remove_team_user('x', 'y', 'z')$$);
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', 'y', NULL)$$);

-- validation comes before the credentials are even looked at
BEGIN;
SET LOCAL atlas_users.public_key = '';
SET LOCAL atlas_users.client_id = '';
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000001', 'nobody')$$);
ROLLBACK;

-- nothing was sent: not one request, not even a digest handshake
\set n `test/emuctl get requests_total`
SELECT :n AS requests_total;
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests;
\set n `test/emuctl get tcp_connections`
SELECT :n AS tcp_connections;

-- and nothing was audited
SELECT count(*) - :audit_rows_before AS new_audit_rows FROM atlas_removal_audit;
