--
-- errors: how Atlas answers and transport failures become SQL errors.
--
--   400 -> 22023   401 -> 28000   403 -> 42501   404 -> 42704
--   406, 410 -> 0A000   409 -> 55000   429 -> 53000   3xx, 5xx -> 58000
--   no answer (refused, timeout, TLS, reset) -> 08006
--
-- Each error carries Atlas's errorCode in the message, Atlas's detail (or an
-- excerpt of a body that is not an Atlas error) in the detail, a hint, and
-- a context naming the request's method and path, never a credential.
-- Faults are injected by the emulator (see the docstring of
-- test/emulator/atlas_emulator.py); a fault applies to one request.  Each
-- error shows as it comes: no retries (atlas_users.max_retries = 0), but in
-- the section on retries.
--
\! test/emuctl reset >/dev/null
SET atlas_users.max_retries = 0;
\getenv emu_http ATLAS_EMULATOR_URL
\getenv emu_https ATLAS_EMULATOR_HTTPS_URL

-- every error this file raises is kept, to check them all for credentials
CREATE TEMP TABLE seen (n serial, state text, message text, detail text, hint text, context text);
CREATE FUNCTION pg_temp.err(cmd text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	e record;
BEGIN
	SELECT * INTO e FROM regress_error(cmd);
	INSERT INTO seen (state, message, detail, hint, context)
		VALUES (e.state, e.message, e.detail, e.hint, e.context);
	-- a 429 holds the endpoint back: forget it, so the second run is sent
	PERFORM atlas_reset_rate_limits();
	RETURN QUERY SELECT regress_try(cmd);
END $$;
-- err() runs the statement a second time through regress_try: each fault
-- below is therefore added with "count": 2, and the removal always fails
\set rm 'SELECT atlas_remove_project_user(''65f0b0000000000000000001'', ''65f0d0000000000000000005'')'
\set rm_ok 'SELECT atlas_remove_project_user(''65f0b0000000000000000001'', ''65f0d0000000000000000005'', true)'

-- 400
\! test/emuctl fault '{"kind": "status", "status": 400, "count": 2}'
SELECT pg_temp.err(:'rm');
-- 401: a wrong public key (digest)
SET atlas_users.public_key = 'wrongkey';
SELECT pg_temp.err(:'rm');
RESET atlas_users.public_key;
-- 401: a wrong private key
BEGIN;
SET LOCAL atlas_users.private_key_file = '';
SET LOCAL atlas_users.private_key = 'not-the-private-key';
SELECT pg_temp.err(:'rm');
ROLLBACK;
-- 403
\! test/emuctl fault '{"kind": "status", "status": 403, "count": 2}'
SELECT pg_temp.err(:'rm');
-- 404 that does not name the user: not "already absent", even with missing_ok
\! test/emuctl fault '{"kind": "status", "status": 404, "count": 2}'
SELECT pg_temp.err(:'rm_ok');
-- 404 RESOURCE_NOT_FOUND whose detail speaks of the user: already absent
\! test/emuctl fault '{"kind": "status", "status": 404, "detail": "Cannot find resource user 65f0d0000000000000000005 in group 65f0b0000000000000000001.", "parameters": ["65f0d0000000000000000005"]}'
SELECT regress_try(:'rm_ok');
-- 404 RESOURCE_NOT_FOUND about something else: raises, even when its text
-- holds the user's id (and its parameters do too)
\! test/emuctl fault '{"kind": "status", "status": 404, "detail": "Cannot find resource Online archive with id 65f0d0000000000000000005.", "parameters": ["65f0d0000000000000000005"], "count": 2}'
SELECT pg_temp.err(:'rm_ok');
-- 406
\! test/emuctl fault '{"kind": "status", "status": 406, "error_code": "INVALID_VERSION_DATE", "count": 2}'
SELECT pg_temp.err(:'rm');
-- 409
\! test/emuctl fault '{"kind": "status", "status": 409, "count": 2}'
SELECT pg_temp.err(:'rm');
-- 410
\! test/emuctl fault '{"kind": "status", "status": 410, "error_code": "VERSION_GONE", "count": 2}'
SELECT pg_temp.err(:'rm');
-- 429, with Retry-After: the hint says how long to wait.  A 429 holds the
-- endpoint's requests back for Retry-After (atlas_rate_limits() shows it);
-- these 429s are the emulator's faults, not a real limit, so each test
-- forgets them again with atlas_reset_rate_limits().
\! test/emuctl fault '{"kind": "status", "status": 429, "retry_after": 30, "count": 2}'
SELECT pg_temp.err(:'rm');
SELECT regexp_replace(bucket, ':[0-9]+$', ':NNNNN') AS bucket, capacity, refill, answers_429,
       blocked_until > now() + interval '25 s' AS held_back
FROM atlas_rate_limits() WHERE answers_429 > 0;
SELECT atlas_reset_rate_limits() > 0 AS forgotten;
-- a token-bucket 429 names the bucket's capacity and refill rate
\! test/emuctl fault '{"kind": "status", "status": 429, "error_code": "RATE_LIMITED_TOKEN_BUCKET", "count": 2}'
SELECT pg_temp.err(:'rm');
SELECT regexp_replace(bucket, ':[0-9]+$', ':NNNNN') AS bucket, capacity, refill, refill_seconds, answers_429
FROM atlas_rate_limits() WHERE answers_429 > 0;
SELECT atlas_reset_rate_limits() > 0 AS forgotten;
-- 500, 502, 503, 504
\! test/emuctl fault '{"kind": "status", "status": 500, "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 502, "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 503, "retry_after": 5, "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 504, "count": 2}'
SELECT pg_temp.err(:'rm');
-- a status outside the table
\! test/emuctl fault '{"kind": "status", "status": 418, "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 302, "headers": {"Location": "http://127.0.0.1:1/elsewhere"}, "count": 2}'
-- redirects are not followed
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 307, "headers": {"Location": "/api/atlas/v2/groups/65f0b0000000000000000001/users/65f0d0000000000000000005"}, "count": 2}'
SELECT pg_temp.err(:'rm');
-- carol is still in the project: nothing followed the redirect
\set st `test/emuctl state 65f0d0000000000000000005`
SELECT :'st'::jsonb -> 'projects' ? '65f0b0000000000000000001' AS still_member;
\! test/emuctl clear-faults

-- retries: with atlas_users.max_retries, 429 and 503 are retried after
-- Retry-After; other statuses are not
SET atlas_users.max_retries = 2;
\! test/emuctl reset-counters
\! test/emuctl fault '{"kind": "status", "status": 429, "retry_after": 0}'
\! test/emuctl fault '{"kind": "status", "status": 503, "retry_after": 0}'
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000005')$$);
SELECT atlas_reset_rate_limits() > 0 AS forgotten;
-- the answers it got (digest challenges left out)
\set req `test/emuctl requests 10`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status
FROM jsonb_array_elements(:'req'::jsonb) WITH ORDINALITY AS a(r, n)
WHERE r ->> 'status' <> '401' ORDER BY n;
\! test/emuctl fault '{"kind": "status", "status": 500, "count": 2}'
\! test/emuctl reset-counters
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004')$$);
\set req `test/emuctl requests 10`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status
FROM jsonb_array_elements(:'req'::jsonb) WITH ORDINALITY AS a(r, n)
WHERE r ->> 'status' <> '401' ORDER BY n;
\! test/emuctl clear-faults
SET atlas_users.max_retries = 0;

--
-- answers that are not Atlas error documents: a clean error with the status
-- and a short, cleaned excerpt
--
\! test/emuctl fault '{"kind": "html", "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "empty", "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "malformed_json", "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl fault '{"kind": "invalid_utf8", "count": 2}'
SELECT pg_temp.err(:'rm');
-- a 10 MiB body is not read beyond 1 MiB
\! test/emuctl fault '{"kind": "oversized", "count": 2}'
SELECT pg_temp.err(:'rm');
\! test/emuctl clear-faults

--
-- transport failures: 08006, naming the host and the failure
--
-- connection refused (nothing listens on port 1)
SET atlas_users.base_url = 'http://127.0.0.1:1';
SELECT pg_temp.err(:'rm');
RESET atlas_users.base_url;
-- timeout
SET atlas_users.timeout_ms = 500;
\! test/emuctl fault '{"kind": "hang", "seconds": 30, "count": 2}'
SELECT pg_temp.err(:'rm');
RESET atlas_users.timeout_ms;
\! test/emuctl clear-faults
-- the connection is reset without an answer
\! test/emuctl fault '{"kind": "reset", "count": -1}'
SELECT pg_temp.err(:'rm');
\! test/emuctl clear-faults
-- TLS: the server's certificate does not verify against another CA bundle
SET atlas_users.ca_file = '/etc/ssl/certs/ca-certificates.crt';
SELECT pg_temp.err(:'rm');
-- a CA file that does not exist
SET atlas_users.ca_file = '/nonexistent/atlas_users_regress_ca.pem';
SELECT pg_temp.err(:'rm');
RESET atlas_users.ca_file;
-- and the emulator answers again
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000002');

--
-- atlas_users.base_url: https, or http to a loopback host only
--
SET atlas_users.base_url = :'emu_http';
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000003');
\set req `test/emuctl requests 1`
SELECT r ->> 'listener' AS listener, r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status
FROM jsonb_array_elements(:'req'::jsonb) r;
SET atlas_users.base_url = :'emu_https';
SELECT regress_try($$SET atlas_users.base_url = 'http://example.com'$$);
SELECT regress_try($$SET atlas_users.base_url = 'http://cloud.mongodb.com'$$);
SELECT regress_try($$SET atlas_users.base_url = 'http://127.0.0.1.example.com'$$);
SELECT regress_try($$SET atlas_users.base_url = 'ftp://127.0.0.1/'$$);
SELECT regress_try($$SET atlas_users.base_url = 'https://user:secret@cloud.mongodb.com'$$);
SELECT regress_try($$SET atlas_users.base_url = 'https://cloud.mongodb.com/?x=1'$$);
SELECT regress_try($$SET atlas_users.base_url = 'https://cloud.mongodb.com/#x'$$);
SELECT regress_try($$SET atlas_users.base_url = 'not a url'$$);
SELECT regress_try($$SET atlas_users.base_url = ''$$);
-- still the emulator
SELECT regress_try($$SELECT current_setting('atlas_users.base_url') = $$ || quote_literal(:'emu_https'));

-- Every error above named the request (method and path) in its context, and
-- no part of any error holds a credential of test/emulator/seed.json.
SELECT count(*) AS errors,
	   count(*) FILTER (WHERE context ~ '^Atlas API request (DELETE|POST|GET) /api/') AS with_request_context
FROM seen;
SELECT count(*) AS errors_with_a_credential
FROM seen
WHERE concat_ws(' ', message, detail, hint, context) ~*
	'atlasemu|6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60|mdb_sa_id_65f0e0000000000000000002|mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f|not-the-private-key|wrongkey|authorization|bearer';
SELECT DISTINCT state FROM seen ORDER BY 1;
