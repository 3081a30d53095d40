--
-- privileges: what a role that is not a superuser can and cannot do.
--
-- It cannot read the credential settings (SHOW, current_setting(),
-- pg_settings), nor set any atlas_users.* setting, nor execute a removal
-- function until granted EXECUTE, nor read or change audit rows, not even
-- the rows of its own calls.  This must hold in every session, also in a
-- new one in which nothing has loaded the atlas_users library yet.
--
\! test/emuctl reset >/dev/null
CREATE ROLE regress_atlas_member LOGIN;
CREATE ROLE regress_atlas_reader LOGIN IN ROLE pg_read_all_settings;
-- as if postgresql.conf held an inline private key, for this role's sessions
ALTER ROLE regress_atlas_reader SET atlas_users.private_key = 'regress-inline-private-key';

-- The checks, as functions that run with the privileges of their caller.
CREATE FUNCTION regress_secret_settings() RETURNS SETOF text
LANGUAGE sql AS $$
	SELECT unnest(ARRAY['atlas_users.public_key', 'atlas_users.private_key',
		'atlas_users.private_key_file', 'atlas_users.client_id',
		'atlas_users.client_secret', 'atlas_users.client_secret_file'])
$$;
-- SHOW and current_setting() of each credential setting
CREATE FUNCTION regress_read_secrets(OUT name text, OUT via text, OUT state text, OUT message text)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT s, v, e.state, e.message
	FROM regress_secret_settings() WITH ORDINALITY AS t(s, n),
		 (VALUES (1, 'SHOW'), (2, 'current_setting')) AS w(k, v),
		 LATERAL regress_error(CASE v WHEN 'SHOW' THEN 'SHOW ' || s
								ELSE format('SELECT current_setting(%L)', s) END) e
	ORDER BY n, k
$$;
-- pg_settings rows that are credential settings or hold a credential
CREATE FUNCTION regress_listed_secrets(OUT name text, OUT setting text)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT name, setting FROM pg_settings
	WHERE name IN (SELECT regress_secret_settings())
	   OR setting IN ('atlas_emu', 'atlasemu', 'mdb_sa_id_65f0e0000000000000000002',
					  'regress-inline-private-key')
$$;
-- SET of every setting that matters
CREATE FUNCTION regress_set_settings(OUT name text, OUT state text, OUT message text)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT v.name, e.state, e.message
	FROM (VALUES (1, 'atlas_users.base_url', 'http://127.0.0.1:1'),
				 (2, 'atlas_users.ca_file', '/etc/ssl/certs/ca-certificates.crt'),
				 (3, 'atlas_users.public_key', 'attacker'),
				 (4, 'atlas_users.private_key', 'attacker'),
				 (5, 'atlas_users.private_key_file', ''),
				 (6, 'atlas_users.client_id', 'attacker'),
				 (7, 'atlas_users.client_secret', 'attacker'),
				 (8, 'atlas_users.client_secret_file', ''),
				 (9, 'atlas_users.auth_method', 'digest'),
				 (10, 'atlas_users.api_version', '2023-01-01'),
				 (11, 'atlas_users.timeout_ms', '100')) AS v(n, name, value),
		 LATERAL regress_error(format('SET %s = %L', v.name, v.value)) e
	ORDER BY v.n
$$;
-- every kind of access to the audit table
CREATE FUNCTION regress_use_audit(OUT what text, OUT state text, OUT message text)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT v.what, e.state, e.message
	FROM (VALUES (1, 'SELECT', 'SELECT count(*) FROM atlas_removal_audit'),
				 (2, 'INSERT', 'INSERT INTO atlas_removal_audit (at, requested_by, executed_as, operation, outcome, duration_ms, attempts) VALUES (now(), current_user, current_user, ''remove_project_user'', ''removed'', 0, 1)'),
				 (3, 'UPDATE', 'UPDATE atlas_removal_audit SET outcome = ''failed'' WHERE requested_by = current_user'),
				 (4, 'DELETE', 'DELETE FROM atlas_removal_audit WHERE requested_by = current_user'),
				 (5, 'TRUNCATE', 'TRUNCATE atlas_removal_audit')) AS v(n, what, cmd),
		 LATERAL regress_error(v.cmd) e
	ORDER BY v.n
$$;

--
-- 1. a new session of a role with no privileges; atlas_users is not loaded
--
\c - regress_atlas_member
SELECT session_user, current_user;
SELECT * FROM regress_read_secrets();
SELECT * FROM regress_listed_secrets();
SELECT * FROM regress_set_settings();
-- no removal function without EXECUTE
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005')$$);
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000005')$$);
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004')$$);
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000001', '65f0d0000000000000000005')$$);
-- no access to the audit table
SELECT * FROM regress_use_audit();
\set n `test/emuctl get requests_total`
SELECT :n AS requests_total;

--
-- 2. after GRANT EXECUTE, the granted functions work, with the server's
-- settings and credentials
--
\c - postgres
GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text),
	atlas_remove_team_user(text, text, text, boolean, text, text) TO regress_atlas_member;
\c - regress_atlas_member
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005');
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005', true);
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004');
\set req `test/emuctl requests 1`
SELECT r ->> 'listener' AS listener, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
-- the others still need a grant
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000005')$$);
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000001', '65f0d0000000000000000005')$$);
-- the library is loaded in this session now: the same checks
SELECT * FROM regress_read_secrets();
SELECT * FROM regress_listed_secrets();
SELECT * FROM regress_set_settings();
-- the settings it may read
SELECT name FROM pg_settings WHERE name LIKE 'atlas\_users.%' ORDER BY 1;
-- not even the audit rows of its own calls
SELECT * FROM regress_use_audit();

\c - postgres
SELECT requested_by, executed_as, operation, team_id, user_id, http_status, outcome
FROM atlas_removal_audit WHERE requested_by = 'regress_atlas_member' ORDER BY id;

--
-- 3. a member of pg_read_all_settings may read the non-secret settings, but
-- an inline secret only masked
--
\c - regress_atlas_reader
SHOW atlas_users.public_key;
SHOW atlas_users.client_id;
SHOW atlas_users.private_key;
SHOW atlas_users.client_secret;
SELECT current_setting('atlas_users.private_key') AS private_key;
SELECT count(*) AS settings_holding_the_inline_key FROM pg_settings
WHERE setting = 'regress-inline-private-key';
SELECT regress_try($$SET atlas_users.private_key = 'attacker'$$);

\c - postgres
DROP FUNCTION regress_secret_settings(), regress_read_secrets(), regress_listed_secrets(),
	regress_set_settings(), regress_use_audit();
DROP OWNED BY regress_atlas_member;
DROP ROLE regress_atlas_member;
DROP ROLE regress_atlas_reader;
