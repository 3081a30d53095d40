--
-- lookup: resolving a username, listing memberships, offboarding plans,
-- the bulk functions' input checks and the username queue entry points
-- (atlas_users 1.2), against the Atlas emulator (test/emulator/seed.json).
--
-- Only reads and dry runs reach Atlas here: real removals, bulk figures
-- and the worker are in test/t/020_bulk.pl and test/t/021_offboard.pl.
-- Requests are counted by the emulator (test/emuctl); 401 digest
-- challenges depend on connection reuse, so only answers that are not
-- 401 are counted where requests are expected.
--
-- This file installs the extension if needed; its error helper,
-- regress_caught, comes from setup.sql.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS atlas_users;
RESET client_min_messages;
\set x `test/emuctl reset`

-- lookup_requests(json): the emulator's request log without 401 challenges
CREATE FUNCTION lookup_requests(log text)
RETURNS TABLE (method text, path text, status text, version text)
LANGUAGE sql AS $$
	SELECT r ->> 'method', r ->> 'path', r ->> 'status', r ->> 'version'
	FROM jsonb_array_elements(log::jsonb) WITH ORDINALITY AS a(r, n)
	WHERE r ->> 'status' <> '401'
	ORDER BY n
$$;

--
-- atlas_find_user_id(org_id, username):
-- GET /api/atlas/v2/orgs/{orgId}/users?username=... (2025-02-19)
--
-- an ACTIVE user
SELECT atlas_find_user_id('65f0a0000000000000000001', 'jane@example.com') AS jane;
\set req `test/emuctl requests 1`
SELECT * FROM lookup_requests(:'req');
-- a PENDING user (an open invitation)
SELECT atlas_find_user_id('65f0a0000000000000000001', 'invited@example.com') AS invited;
-- the match ignores case
SELECT atlas_find_user_id('65f0a0000000000000000001', 'JANE@Example.COM') AS jane_upper;
-- none: NULL, not an error
SELECT atlas_find_user_id('65f0a0000000000000000001', 'nobody@example.com') IS NULL AS nobody_is_null;
-- an expired invitation is neither ACTIVE nor PENDING
SELECT atlas_find_user_id('65f0a0000000000000000001', 'expired@example.com') IS NULL AS expired_is_null;
-- a user of Atlas who is not in this organization
SELECT atlas_find_user_id('65f0a0000000000000000001', 'outsider@example.com') IS NULL AS outsider_is_null;
-- a missing organization raises
SELECT * FROM regress_caught($$SELECT atlas_find_user_id('65f0a00000000000000000ff', 'jane@example.com')$$);

-- the username is URL-encoded by libcurl: '+' must not reach Atlas as a
-- space, '&' and '=' must not start another parameter
\set x `test/emuctl reset-counters`
SELECT atlas_find_user_id('65f0a0000000000000000001', 'a+b@example.com') IS NULL AS plus_is_null;
\set req `test/emuctl requests 1`
SELECT * FROM lookup_requests(:'req');
SELECT atlas_find_user_id('65f0a0000000000000000001', 'x&itemsPerPage=1=y%41@example.com') IS NULL AS amp_is_null;
\set req `test/emuctl requests 1`
SELECT * FROM lookup_requests(:'req');
SELECT atlas_find_user_id('65f0a0000000000000000001', 'josé@example.com') IS NULL AS utf8_is_null;
\set req `test/emuctl requests 1`
SELECT * FROM lookup_requests(:'req');

-- the e-mail shape is checked before any request: 22023, nothing sent
\set x `test/emuctl reset-counters`
SELECT u AS username, e.*
FROM unnest(ARRAY['jane', 'jane@localhost', 'ja ne@example.com', '@example.com',
				  'a@b@example.com', 'jane@example..com', 'jane@example.com.',
				  'jane@.example.com', 'jane/x@example.com', '', 'a@b']) WITH ORDINALITY AS t(u, n),
	 LATERAL regress_caught(format('SELECT atlas_find_user_id(%L, %L)', '65f0a0000000000000000001', u)) e
ORDER BY n;
-- too long (more than 254 bytes)
SELECT state, detail FROM regress_caught($$SELECT atlas_find_user_id('65f0a0000000000000000001', repeat('a', 250) || '@example.com')$$);
SELECT * FROM regress_caught($$SELECT atlas_find_user_id('65f0a0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT atlas_find_user_id('65F0A0000000000000000001', 'jane@example.com')$$);
SELECT * FROM regress_caught($$SELECT atlas_find_user_id(NULL, 'jane@example.com')$$);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_bad_usernames;

--
-- atlas_user_memberships(org_id, username_or_id): the org, each project
-- (with its name and roles) and each team (with its name)
--
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', 'jane@example.com');
-- by id: the same rows
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', '65f0d0000000000000000001');
-- by username, in another case
SELECT count(*) AS jane_rows FROM atlas_user_memberships('65f0a0000000000000000001', 'Jane@Example.com');
-- a PENDING user: orgMembershipStatus says so on every row
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', 'invited@example.com');
-- in the organization only
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', 'dave@example.com');
-- nobody: a NOTICE and no rows, by username and by id
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', 'nobody@example.com');
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', '65f0d00000000000000000ff');
-- a user of Atlas outside the organization, and an expired invitation
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', '65f0d0000000000000000009');
SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', '65f0d000000000000000000a');
-- neither an id nor an e-mail address; NULL
\set x `test/emuctl reset-counters`
SELECT * FROM regress_caught($$SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', 'jane')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', '65F0D0000000000000000001')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_user_memberships('65f0a0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_user_memberships('acme', 'jane@example.com')$$);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_bad_arguments;

-- pagination: one item per page, and the team names are all still found
SET atlas_users.page_size = 1;
\set x `test/emuctl reset-counters`
SELECT scope, id, name FROM atlas_user_memberships('65f0a0000000000000000001', 'jane@example.com');
\set req `test/emuctl requests 50`
SELECT method, path, status, version FROM lookup_requests(:'req')
WHERE path LIKE '%/teams%' OR path LIKE '%/users?%'
ORDER BY path;
\set n `test/emuctl get 'requests_by_route.GET /api/atlas/v2/orgs/{orgId}/teams.200'`
SELECT :n AS team_pages;
-- the lookup by username at one item per page
SELECT atlas_find_user_id('65f0a0000000000000000001', 'bob@example.com') AS bob;
\set req `test/emuctl requests 1`
SELECT * FROM lookup_requests(:'req');
RESET atlas_users.page_size;

--
-- atlas_offboard_user(org_id, username_or_id, scope, dry_run)
--
-- dry run of scope 'org': the org removal and what Atlas drops with it (her
-- project and team memberships, and the projects her teams reach), 9 rows,
-- and no removal request
\set x `test/emuctl reset-counters`
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', dry_run => true);
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests;
-- scope 'projects' keeps the org, and says the access through her teams
-- stays; scope 'teams' only the teams
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', 'projects', true);
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', '65f0d0000000000000000001', 'teams', true);
-- a user in the org only: nothing to do with projects or teams
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'dave@example.com', 'projects', true);
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'dave@example.com', 'teams', true);
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests;
-- Jane is still everywhere
\set st `test/emuctl state 65f0d0000000000000000001`
SELECT :'st'::jsonb -> 'orgs' AS orgs, :'st'::jsonb -> 'projects' AS projects,
	   :'st'::jsonb -> 'teamIds' AS team_ids;
-- unknown user: a NOTICE and no rows (with or without dry_run)
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'nobody@example.com', dry_run => true);
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'nobody@example.com');
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', '65f0d00000000000000000ff', 'teams');
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests;
-- invalid scope, NULL scope or dry_run, bad user: 22023 before any request
\set x `test/emuctl reset-counters`
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', 'project')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', 'ORG', true)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane@example.com', 'org', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'jane', 'org', true)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_offboard_user('65f0a000000000000000001', 'jane@example.com', 'org', true)$$);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_bad_arguments;

--
-- bulk removal: the input is checked as a whole before any request
--
\set x `test/emuctl reset-counters`
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001',
	ARRAY['65f0d0000000000000000002', NULL, '65f0d0000000000000000005'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001',
	ARRAY['65f0d0000000000000000002', '65f0d0000000000000000005', 'jane@example.com'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001',
	ARRAY[['65f0d0000000000000000002'], ['65f0d0000000000000000005']])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001',
	ARRAY['65f0d0000000000000000002'], NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_project_users('acme-prod',
	ARRAY['65f0d0000000000000000002'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_org_users('65f0a0000000000000000001',
	ARRAY['65F0D0000000000000000002'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_org_users(NULL, ARRAY['65f0d0000000000000000002'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_team_users('65f0a0000000000000000001',
	'65f0c0000000000000000001', ARRAY[NULL]::text[])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_remove_team_users('65f0a0000000000000000001',
	'dba-team', ARRAY['65f0d0000000000000000002'])$$);
-- an empty array: no rows, no request
SELECT * FROM atlas_remove_project_users('65f0b0000000000000000001', '{}');
SELECT * FROM atlas_remove_org_users('65f0a0000000000000000001', ARRAY[]::text[], false);
SELECT * FROM atlas_remove_team_users('65f0a0000000000000000001', '65f0c0000000000000000001', '{}');
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_bulk_checks;
-- nobody was removed
\set st `test/emuctl state 65f0d0000000000000000002`
SELECT :'st'::jsonb -> 'projects' AS john_projects;

--
-- enqueueing by username: validated like the rest, resolved only when
-- the row runs (no request now); the same pending removal, whatever the
-- case of the username, is the same row
--
\set x `test/emuctl reset-counters`
BEGIN;
SELECT atlas_enqueue_remove_org_user_by_username('65f0a0000000000000000001', 'Jane@Example.com') AS org_row \gset
SELECT atlas_enqueue_remove_org_user_by_username('65f0a0000000000000000001', 'jane@example.com') = :org_row AS same_row,
	   atlas_enqueue_remove_org_user_by_username('65f0a0000000000000000001', 'JANE@EXAMPLE.COM') = :org_row AS same_row_upper;
-- another operation, and the same removal by id, are other rows
SELECT atlas_enqueue_remove_project_user_by_username('65f0b0000000000000000001', 'jane@example.com') AS project_row \gset
SELECT atlas_enqueue_remove_team_user_by_username('65f0a0000000000000000001', '65f0c0000000000000000001', 'jane@example.com') AS team_row \gset
SELECT atlas_enqueue_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001') AS id_row \gset
SELECT count(DISTINCT id) AS distinct_rows
FROM unnest(ARRAY[:org_row, :project_row, :team_row, :id_row]::bigint[]) AS id;
SELECT id = :org_row AS org_row, id = :project_row AS project_row, id = :team_row AS team_row,
	   id = :id_row AS id_row, operation, org_id, group_id, team_id, user_id, username, status, attempts
FROM atlas_removal_queue
WHERE id IN (:org_row, :project_row, :team_row, :id_row)
ORDER BY id;
-- the bad ones: 22023, nothing queued
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_org_user_by_username('65f0a0000000000000000001', 'jane')$$);
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_org_user_by_username('65f0a0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_project_user_by_username('65f0b0000000000000000001', 'jane@example')$$);
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_project_user_by_username('acme-prod', 'jane@example.com')$$);
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_team_user_by_username('65f0a0000000000000000001', '65f0c0000000000000000001', 'jane example.com')$$);
SELECT * FROM regress_caught($$SELECT atlas_enqueue_remove_team_user_by_username('65f0a0000000000000000001', NULL, 'jane@example.com')$$);
SELECT count(*) AS queued_by_this_transaction FROM atlas_removal_queue WHERE xmin = pg_current_xact_id()::xid;
ROLLBACK;
-- a rollback leaves nothing behind
SELECT count(*) AS rows_left FROM atlas_removal_queue
WHERE id IN (:org_row, :project_row, :team_row, :id_row);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_enqueueing;

--
-- atlas_offboard_trigger() with 'username=column': an HR table that knows
-- people by e-mail
--
CREATE TABLE lookup_hr (id int PRIMARY KEY, email text, atlas_user_id text,
						active boolean NOT NULL DEFAULT true);
INSERT INTO lookup_hr VALUES
	(1, 'jane@example.com', NULL),
	(2, 'not-an-email', NULL),
	(3, NULL, NULL),
	(4, 'JANE@EXAMPLE.COM', NULL),
	(5, 'john@example.com', '65f0d0000000000000000002');
CREATE TRIGGER lookup_hr_offboard AFTER UPDATE OF active ON lookup_hr
	FOR EACH ROW WHEN (OLD.active AND NOT NEW.active)
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=65f0a0000000000000000001', 'username=email');
BEGIN;
UPDATE lookup_hr SET active = false WHERE id = 1;
-- the same person again, in capitals: the same pending row
UPDATE lookup_hr SET active = false WHERE id = 4;
-- no e-mail: skipped
UPDATE lookup_hr SET active = false WHERE id = 3;
SELECT operation, org_id, group_id, team_id, user_id, username, status
FROM atlas_removal_queue WHERE xmin = pg_current_xact_id()::xid ORDER BY id;
-- not an e-mail address: 22023, and the update fails
SAVEPOINT s;
UPDATE lookup_hr SET active = false WHERE id = 2;
ROLLBACK TO SAVEPOINT s;
ROLLBACK;
-- a second trigger with a user id column and an e-mail column: it queues
-- by id (the first one still queues the org removal by username)
CREATE TRIGGER lookup_hr_offboard_project AFTER UPDATE OF active ON lookup_hr
	FOR EACH ROW WHEN (OLD.active AND NOT NEW.active)
	EXECUTE FUNCTION atlas_offboard_trigger('project', 'group_id:=65f0b0000000000000000001',
											'user_id=atlas_user_id', 'username=email');
BEGIN;
UPDATE lookup_hr SET active = false WHERE id = 5;
SELECT operation, org_id, group_id, team_id, user_id, username, status
FROM atlas_removal_queue WHERE xmin = pg_current_xact_id()::xid ORDER BY operation;
ROLLBACK;
DROP TRIGGER lookup_hr_offboard_project ON lookup_hr;
-- a literal username, and mistakes in the arguments
CREATE TRIGGER lookup_hr_offboard_literal AFTER UPDATE OF active ON lookup_hr
	FOR EACH ROW WHEN (OLD.active AND NOT NEW.active)
	EXECUTE FUNCTION atlas_offboard_trigger('team', 'org_id:=65f0a0000000000000000001',
											'team_id:=65f0c0000000000000000002', 'username:=Bob@Example.com');
BEGIN;
UPDATE lookup_hr SET active = false WHERE id = 3;
SELECT operation, org_id, group_id, team_id, user_id, username, status
FROM atlas_removal_queue WHERE xmin = pg_current_xact_id()::xid ORDER BY id;
ROLLBACK;
DROP TRIGGER lookup_hr_offboard_literal ON lookup_hr;
DROP TRIGGER lookup_hr_offboard ON lookup_hr;
CREATE TRIGGER lookup_hr_bad AFTER UPDATE ON lookup_hr FOR EACH ROW
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=65f0a0000000000000000001', 'username:=bob');
SELECT * FROM regress_caught($$UPDATE lookup_hr SET active = false WHERE id = 1$$);
DROP TRIGGER lookup_hr_bad ON lookup_hr;
CREATE TRIGGER lookup_hr_bad AFTER UPDATE ON lookup_hr FOR EACH ROW
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=65f0a0000000000000000001', 'username=mail');
SELECT * FROM regress_caught($$UPDATE lookup_hr SET active = false WHERE id = 1$$);
DROP TRIGGER lookup_hr_bad ON lookup_hr;
CREATE TRIGGER lookup_hr_bad AFTER UPDATE ON lookup_hr FOR EACH ROW
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=65f0a0000000000000000001', 'user_name=email');
SELECT state, message FROM regress_caught($$UPDATE lookup_hr SET active = false WHERE id = 1$$);
DROP TRIGGER lookup_hr_bad ON lookup_hr;
SELECT count(*) AS hr_inactive FROM lookup_hr WHERE NOT active;
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_triggers;

DROP TABLE lookup_hr;
DROP FUNCTION lookup_requests(text);
