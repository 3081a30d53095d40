--
-- auth: digest API keys, the service account (OAuth client credentials),
-- the choice between them, missing or conflicting credentials, key files,
-- and the masking of secrets.
--
-- The cluster sets public_key + private_key_file, client_id +
-- client_secret_file, and auth_method = 'digest'.
--
\! test/emuctl reset >/dev/null
\getenv secrets ATLAS_SECRETS
SET regress.hide = :'secrets';
\set rm 'SELECT atlas_remove_project_user(''65f0b0000000000000000001'', ''65f0d0000000000000000005'', true)'

-- digest
SHOW atlas_users.auth_method;
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005');
\set req `test/emuctl requests 2`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005', true);
\set n `test/emuctl get token_requests`
SELECT :n AS token_requests;

-- the service account: one token for many calls
SET atlas_users.auth_method = 'service_account';
\! test/emuctl reset-counters
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004');
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004', true);
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007');
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000002');
\set n `test/emuctl get token_requests`
SELECT :n AS token_requests;
\set n `test/emuctl get token_grants`
SELECT :n AS token_grants;
\set n `test/emuctl get digest_challenges`
SELECT :n AS digest_challenges;
\set req `test/emuctl requests 5`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Authorization' AS auth_scheme,
	   r -> 'headers' ->> 'Content-Type' AS content_type, r ->> 'body' AS body
FROM jsonb_array_elements(:'req'::jsonb) r;
-- a token Atlas no longer accepts is renewed once, and the call goes through
\! test/emuctl expire-tokens
\! test/emuctl reset-counters
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000005');
\set n `test/emuctl get bearer_rejections`
SELECT :n AS bearer_rejections;
\set n `test/emuctl get token_grants`
SELECT :n AS token_grants;
-- a wrong client secret: the token request fails, 28000, naming the token endpoint
BEGIN;
SET LOCAL atlas_users.client_secret_file = '';
SET LOCAL atlas_users.client_secret = 'mdb_sa_sk_wrong';
SELECT regress_try(:'rm');
ROLLBACK;
-- the token endpoint failing
\! test/emuctl expire-tokens
\! test/emuctl fault '{"kind": "status", "status": 500, "match": "oauth"}'
SELECT regress_try(:'rm');
\! test/emuctl fault '{"kind": "status", "status": 200, "match": "oauth"}'
SELECT regress_try(:'rm');
\! test/emuctl clear-faults
-- the legacy v1.0 API takes digest keys only: refused before any request
\! test/emuctl reset-counters
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000003', '65f0d0000000000000000005', true)$$);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_total;

-- auto: the service account when client_id is set, digest keys otherwise
SET atlas_users.auth_method = 'auto';
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000002');
\set req `test/emuctl requests 1`
SELECT r ->> 'route' AS route, r ->> 'status' AS status, r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
-- the v1.0 function uses the digest keys under auto
SELECT atlas_remove_project_user_v1('65f0b0000000000000000001', '65f0d0000000000000000003');
\set req `test/emuctl requests 1`
SELECT r ->> 'route' AS route, r ->> 'status' AS status, r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
BEGIN;
SET LOCAL atlas_users.client_id = '';
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000003', true);
\set req `test/emuctl requests 1`
SELECT r ->> 'route' AS route, r ->> 'status' AS status, r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
ROLLBACK;
SELECT regress_try($$SET atlas_users.auth_method = 'oauth'$$);
SET atlas_users.auth_method = 'digest';

--
-- no usable credentials: 55000, with a hint naming the settings, and no
-- request
--
\! test/emuctl reset-counters
BEGIN;
SET LOCAL atlas_users.public_key = '';
SELECT regress_try(:'rm');
SET LOCAL atlas_users.client_id = '';
SELECT regress_try(:'rm');
ROLLBACK;
BEGIN;
SET LOCAL atlas_users.private_key_file = '';
SELECT regress_try(:'rm');
ROLLBACK;
BEGIN;
SET LOCAL atlas_users.auth_method = 'service_account';
SET LOCAL atlas_users.client_id = '';
SELECT regress_try(:'rm');
RESET atlas_users.client_id;
SET LOCAL atlas_users.client_secret_file = '';
SELECT regress_try(:'rm');
ROLLBACK;
-- both an inline secret and a key file
BEGIN;
SET LOCAL atlas_users.private_key = '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60';
SELECT regress_try(:'rm');
ROLLBACK;
BEGIN;
SET LOCAL atlas_users.auth_method = 'service_account';
SET LOCAL atlas_users.client_secret = 'mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f';
SELECT regress_try(:'rm');
ROLLBACK;
\set n `test/emuctl get requests_total`
SELECT :n AS requests_total;

-- an inline secret alone works
BEGIN;
SET LOCAL atlas_users.private_key_file = '';
SET LOCAL atlas_users.private_key = '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60';
SELECT regress_try(:'rm');
ROLLBACK;

--
-- key files must belong to the server's OS user, with no group or other
-- permissions ($DIR is $ATLAS_SECRETS)
--
\! install -o postgres -g postgres -m 0644 "$ATLAS_SECRETS/private_key" "$ATLAS_SECRETS/regress_key_0644"
\! install -o postgres -g postgres -m 0640 "$ATLAS_SECRETS/private_key" "$ATLAS_SECRETS/regress_key_0640"
\! install -o postgres -g postgres -m 0604 "$ATLAS_SECRETS/client_secret" "$ATLAS_SECRETS/regress_secret_0604"
\! install -o root -g root -m 0644 "$ATLAS_SECRETS/private_key" "$ATLAS_SECRETS/regress_key_root"
\! install -o postgres -g postgres -m 0400 "$ATLAS_SECRETS/private_key" "$ATLAS_SECRETS/regress_key_0400"
\! ln -sf "$ATLAS_SECRETS/private_key" "$ATLAS_SECRETS/regress_key_link"
\! install -o postgres -g postgres -m 0600 /dev/null "$ATLAS_SECRETS/regress_key_empty"
\set kf :secrets/regress_key_0644
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
\set kf :secrets/regress_key_0640
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
\set kf :secrets/regress_key_root
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
\set kf :secrets/regress_key_link
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
\set kf :secrets/regress_key_empty
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
\set kf :secrets/no_such_file
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
-- mode 0400 is fine
\set kf :secrets/regress_key_0400
SET atlas_users.private_key_file = :'kf';
SELECT regress_try(:'rm');
RESET atlas_users.private_key_file;
-- the same checks for the client secret file
BEGIN;
SET LOCAL atlas_users.auth_method = 'service_account';
\set kf :secrets/regress_secret_0604
SET LOCAL atlas_users.client_secret_file = :'kf';
SELECT regress_try(:'rm');
ROLLBACK;
\! rm -f "$ATLAS_SECRETS"/regress_key_* "$ATLAS_SECRETS"/regress_secret_*

--
-- secrets are shown masked, even to a superuser
--
BEGIN;
SET LOCAL atlas_users.private_key = '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60';
SET LOCAL atlas_users.client_secret = 'mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f';
SHOW atlas_users.private_key;
SHOW atlas_users.client_secret;
SELECT current_setting('atlas_users.private_key') AS private_key,
	   current_setting('atlas_users.client_secret') AS client_secret;
-- and they are left out of pg_settings
SELECT name, setting FROM pg_settings
WHERE name IN ('atlas_users.private_key', 'atlas_users.client_secret');
SELECT count(*) AS secret_values_in_pg_settings FROM pg_settings
WHERE setting IN ('6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60',
				  'mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f');
ROLLBACK;
-- unset secrets show as empty
SHOW atlas_users.private_key;
SHOW atlas_users.client_secret;
-- the key files are named, not read, by the settings
SELECT current_setting('atlas_users.private_key_file') = :'secrets' || '/private_key' AS private_key_file_as_configured;
