--
-- servers: credentials as foreign servers and user mappings.
--
-- The wrapper's validator refuses unknown options, malformed values, a
-- secret given both inline and as a file, and a *_file option set by a
-- role that is not a superuser, at CREATE and at ALTER.  A call on an
-- organization uses the server whose org_id it is; atlas_users.server
-- names one otherwise.  No USAGE is 42501, no user mapping 55000, both
-- before any request.  Mapping options are hidden from other roles.
--
\! test/emuctl reset >/dev/null
\getenv secrets ATLAS_SECRETS
SET regress.hide = :'secrets';

SELECT fdwname, fdwvalidator::regproc AS validator, fdwhandler, fdwoptions
FROM pg_foreign_data_wrapper WHERE fdwname = 'atlas_users';

-- bad options, at CREATE time
CREATE FUNCTION pg_temp.bad(cmd text) RETURNS TABLE (state text, message text, detail text, hint text)
LANGUAGE sql AS $$ SELECT state, message, detail, hint FROM regress_error(cmd) $$;
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (host 'atlas.example.com')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (public_key 'abcdefgh')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'cloud.mongodb.com')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'ftp://cloud.mongodb.com')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'http://cloud.mongodb.com')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'https://user:pw@cloud.mongodb.com')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (org_id 'Acme')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (auth_method 'kerberos')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (api_version '2023-13-01')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (timeout_ms '0')$$);
SELECT * FROM pg_temp.bad($$CREATE SERVER bad FOREIGN DATA WRAPPER atlas_users OPTIONS (connect_timeout_ms '5s')$$);
SELECT * FROM pg_temp.bad($$ALTER FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'https://cloud.mongodb.com')$$);
-- http on loopback is allowed (a local proxy, the emulator)
CREATE SERVER acme FOREIGN DATA WRAPPER atlas_users
	OPTIONS (base_url 'http://127.0.0.1:1', org_id '65f0a0000000000000000001');
-- bad options on a user mapping
SELECT * FROM pg_temp.bad($$CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (base_url 'https://cloud.mongodb.com')$$);
SELECT * FROM pg_temp.bad($$CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (password 'x')$$);
SELECT * FROM pg_temp.bad($$CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (public_key 'k', private_key '')$$);
SELECT * FROM pg_temp.bad($$CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (client_id 'c', client_secret 's3cr3t-s3cr3t', client_secret_file '/nonexistent')$$);
SELECT * FROM pg_temp.bad($$CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (public_key 'k', private_key 'p-p-p-p-p', private_key_file '/nonexistent')$$);
-- the same at ALTER time: the option list as it would become is checked
SELECT * FROM pg_temp.bad($$ALTER SERVER acme OPTIONS (ADD timeout_ms '-1')$$);
SELECT * FROM pg_temp.bad($$ALTER SERVER acme OPTIONS (SET base_url 'http://atlas.example.com')$$);
SELECT * FROM pg_temp.bad($$ALTER SERVER acme OPTIONS (SET org_id '65f0a00000000000000000zz')$$);
CREATE USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (client_id 'c', client_secret 's3cr3t-s3cr3t');
SELECT * FROM pg_temp.bad($$ALTER USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (ADD client_secret_file '/nonexistent')$$);
SELECT * FROM pg_temp.bad($$ALTER USER MAPPING FOR CURRENT_USER SERVER acme OPTIONS (ADD host 'x')$$);
DROP USER MAPPING FOR CURRENT_USER SERVER acme;
-- nothing was created by the refused statements
SELECT srvname, srvoptions FROM pg_foreign_server ORDER BY 1;

-- Two servers for two organizations, with different keys: Acme's digest
-- key in its file, Globex's service account inline.  The emulator accepts
-- each key for its own organization only.
\getenv emu_https_url ATLAS_EMULATOR_HTTPS_URL
\getenv ca ATLAS_TEST_CA
\set pk `cat "$ATLAS_SECRETS/public_key"`
\set pkfile :secrets '/private_key'
ALTER SERVER acme OPTIONS (SET base_url :'emu_https_url', ADD ca_file :'ca', ADD auth_method 'digest');
CREATE SERVER globex FOREIGN DATA WRAPPER atlas_users
	OPTIONS (base_url :'emu_https_url', ca_file :'ca', org_id '65f0a0000000000000000002');
CREATE USER MAPPING FOR PUBLIC SERVER acme
	OPTIONS (public_key :'pk', private_key_file :'pkfile');
CREATE USER MAPPING FOR PUBLIC SERVER globex
	OPTIONS (client_id 'mdb_sa_id_65f0e0000000000000000004',
			 client_secret 'mdb_sa_sk_9c1d7e3a5b0f2c8e6d4a1b9f7e3c5d0a2b8f6e4c');
SELECT max(id) AS audit0 FROM atlas_removal_audit \gset

-- atlas_users.server: the server of calls that name no organization
SHOW atlas_users.server;
\! test/emuctl reset-counters
SET atlas_users.server = 'globex';
SELECT atlas_remove_project_user('65f0b0000000000000000004', '65f0d0000000000000000007');
RESET atlas_users.server;
-- one statement removes dave from both organizations, each request
-- authenticated with its organization's key (counted at the emulator)
SELECT o AS org_id, atlas_remove_org_user(o, '65f0d0000000000000000007') AS removed
FROM (VALUES ('65f0a0000000000000000001'), ('65f0a0000000000000000002')) v(o);
\set c `test/emuctl counters`
SELECT key, value FROM jsonb_each(:'c'::jsonb -> 'requests_by_principal') ORDER BY 1;
SELECT (:'c'::jsonb ->> 'org_scope_rejections')::int AS org_scope_rejections,
	   (:'c'::jsonb ->> 'token_grants')::int AS token_grants;
SELECT operation, org_id, group_id, server, outcome FROM atlas_removal_audit
WHERE id > :audit0 ORDER BY id;
-- a server for another organization is refused for this one
SET atlas_users.server = 'globex';
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000003', '65f0d0000000000000000007', true)$$);
SET atlas_users.server = 'nosuch';
SELECT * FROM regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000004', '65f0d0000000000000000007', true)$$);
RESET atlas_users.server;
-- two servers for one organization: atlas_users.server must pick one
CREATE SERVER acme2 FOREIGN DATA WRAPPER atlas_users OPTIONS (org_id '65f0a0000000000000000001');
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007', true)$$);
DROP SERVER acme2;

-- A role with USAGE on acme only: it removes in Acme, and is refused for
-- Globex with 42501 before any request.
CREATE ROLE regress_atlas_acme LOGIN;
GRANT EXECUTE ON FUNCTION atlas_remove_org_user(text, text, boolean, text, text) TO regress_atlas_acme;
GRANT USAGE ON FOREIGN SERVER acme TO regress_atlas_acme;
SET ROLE regress_atlas_acme;
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007', true);
\! test/emuctl reset-counters
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000002', '65f0d0000000000000000007', true)$$);
RESET ROLE;
\set n `test/emuctl get requests_total`
SELECT :n AS requests;
-- USAGE, but no user mapping of its own or PUBLIC's: 55000, no request
GRANT USAGE ON FOREIGN SERVER globex TO regress_atlas_acme;
DROP USER MAPPING FOR PUBLIC SERVER globex;
SET ROLE regress_atlas_acme;
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000002', '65f0d0000000000000000007', true)$$);
RESET ROLE;
-- a mapping without its secret: 55000, no request
CREATE USER MAPPING FOR regress_atlas_acme SERVER globex OPTIONS (client_id 'mdb_sa_id_65f0e0000000000000000004');
SET ROLE regress_atlas_acme;
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000002', '65f0d0000000000000000007', true)$$);
RESET ROLE;
\set n `test/emuctl get requests_total`
SELECT :n AS requests;
-- the role's own mapping: it may set an inline secret, not a *_file option
SET ROLE regress_atlas_acme;
SELECT * FROM pg_temp.bad($$ALTER USER MAPPING FOR CURRENT_USER SERVER globex OPTIONS (ADD client_secret_file '/etc/passwd')$$);
ALTER USER MAPPING FOR CURRENT_USER SERVER globex
	OPTIONS (ADD client_secret 'mdb_sa_sk_9c1d7e3a5b0f2c8e6d4a1b9f7e3c5d0a2b8f6e4c');
SELECT atlas_remove_org_user('65f0a0000000000000000002', '65f0d0000000000000000007', true);
-- it sees its own mapping's options, never PUBLIC's (the catalog's rule)
SELECT srvname, usename, umoptions IS NOT NULL AS options_shown
FROM pg_user_mappings ORDER BY 1, 2;
SELECT * FROM pg_temp.bad($$SELECT umoptions FROM pg_user_mapping$$);
RESET ROLE;
-- its calls are audited with the server they used and the role
SELECT server, executed_as, outcome FROM atlas_removal_audit
WHERE id > :audit0 AND executed_as = 'regress_atlas_acme' ORDER BY id;

-- A hostile tenant: a role with USAGE on the wrapper makes a server for
-- Acme's organization, with a PUBLIC mapping, for everyone.  Its time limit
-- is held to atlas_users.server_timeout_max_ms.  It is never chosen without
-- being named: Acme's calls still go to acme.
GRANT USAGE ON FOREIGN DATA WRAPPER atlas_users TO regress_atlas_acme;
SET ROLE regress_atlas_acme;
SELECT * FROM pg_temp.bad($$CREATE SERVER evil FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url 'http://127.0.0.1:9', org_id '65f0a0000000000000000001', timeout_ms '3600000')$$);
CREATE SERVER evil FOREIGN DATA WRAPPER atlas_users
	OPTIONS (base_url 'http://127.0.0.1:9', org_id '65f0a0000000000000000001', timeout_ms '60000');
CREATE USER MAPPING FOR PUBLIC SERVER evil OPTIONS (public_key 'evilkey', private_key 'evilsecret');
GRANT USAGE ON FOREIGN SERVER evil TO PUBLIC;
RESET ROLE;
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007', true);
SELECT server FROM atlas_removal_audit ORDER BY id DESC LIMIT 1;
-- trusting its owner makes it a second server for Acme: refused, named
SET atlas_users.trusted_server_owners = 'regress_atlas_acme';
SELECT * FROM regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007', true)$$);
RESET atlas_users.trusted_server_owners;
SELECT * FROM pg_temp.bad($$SET atlas_users.trusted_server_owners = 'a,,b'$$);
SET ROLE regress_atlas_acme;
SELECT * FROM pg_temp.bad($$SET atlas_users.trusted_server_owners = 'regress_atlas_acme'$$);
RESET ROLE;
DROP SERVER evil CASCADE;

-- clean up
DROP OWNED BY regress_atlas_acme;
DROP ROLE regress_atlas_acme;
DROP SERVER acme, globex CASCADE;
