--
-- listings: the set-returning functions that list what Atlas holds, the
-- bounds on every listing, complete offboarding plans (invitations,
-- access through teams and org roles, last owners) and
-- atlas_reconcile_org with its blast-radius guard, against the Atlas
-- emulator (test/emulator/seed.json: organization Acme ...a1 with projects
-- ...b1-b3 and teams ...c1-c2).
--
-- Scale, hostile servers, several organizations, federation and real
-- offboarding runs are in test/t/060_listings_scale.pl and
-- test/t/061_offboard_complete.pl.
-- This file installs the extension if needed; its error helper,
-- regress_caught, comes from setup.sql.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS atlas_users;
RESET client_min_messages;
\set x `test/emuctl reset`

--
-- the organizations the credentials see, with the server they came from
-- (NULL: the atlas_users.* settings)
--
SELECT id, name, is_deleted, server, raw ->> 'id' = id AS raw_has_it FROM atlas_orgs();

--
-- atlas_org_users: ACTIVE and PENDING by default, typed columns
--
SELECT username, status, first_name, org_roles, team_ids, project_ids, created, last_auth
FROM atlas_org_users('65f0a0000000000000000001') ORDER BY username;
SELECT username, status, invitation_expires IS NOT NULL AS has_expiry
FROM atlas_org_users('65f0a0000000000000000001', ARRAY['INVITATION_EXPIRED', 'pending'])
ORDER BY username;
SELECT pg_typeof(created), pg_typeof(org_roles), pg_typeof(raw)
FROM atlas_org_users('65f0a0000000000000000001') LIMIT 1;
-- every page is read: 3 entries a page, 9 users, 3 pages
SET atlas_users.page_size = 3;
\set x `test/emuctl reset-counters`
SELECT count(*) FROM atlas_org_users('65f0a0000000000000000001');
\set n `test/emuctl get 'requests_by_route.GET /api/atlas/v2/orgs/{orgId}/users.200'`
SELECT :n AS pages_read;
-- a bound on pages: a clear error past atlas_users.max_pages
SET atlas_users.max_pages = 2;
SELECT * FROM regress_caught($$SELECT count(*) FROM atlas_org_users('65f0a0000000000000000001')$$);
RESET atlas_users.max_pages;
RESET atlas_users.page_size;
SELECT * FROM regress_caught($$SET atlas_users.max_pages = 0$$);
SELECT * FROM regress_caught($$SET atlas_users.listing_timeout = '10ms'$$);

--
-- projects, teams, team members, invitations
--
SELECT id, name, created, cluster_count FROM atlas_org_projects('65f0a0000000000000000001') ORDER BY id;
SELECT id, name FROM atlas_org_teams('65f0a0000000000000000001') ORDER BY id;
SELECT username, status FROM atlas_team_users('65f0a0000000000000000001', '65f0c0000000000000000001')
ORDER BY username;
SELECT username, org_roles, team_ids, project_ids, inviter_username, created < expires AS expires_later
FROM atlas_org_invitations('65f0a0000000000000000001') ORDER BY username;
SELECT username, roles, inviter_username FROM atlas_project_invitations('65f0b0000000000000000003')
ORDER BY username;

--
-- who reaches a project, and how: a direct role, a team, an org role
--
SELECT username, via, roles, team_id FROM atlas_project_users('65f0b0000000000000000001')
ORDER BY via, username, team_id;
SELECT via, count(*) FROM atlas_project_users('65f0b0000000000000000001', through_teams => false)
GROUP BY via ORDER BY via;
SELECT via, count(*) FROM atlas_project_users('65f0b0000000000000000001', false, false)
GROUP BY via ORDER BY via;

--
-- bad input: 22023 naming the parameter, and no request
--
\set x `test/emuctl reset-counters`
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users(NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a000000000000000001')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a0000000000000000001', ARRAY['ACTIVE', 'GONE'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a0000000000000000001', ARRAY['ACTIVE', NULL])$$);
-- each status once: a repeated one is refused before any request (issue 17)
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a0000000000000000001', ARRAY['ACTIVE', 'PENDING', 'active'])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a0000000000000000001', array_fill('ACTIVE'::text, ARRAY[100000]))$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_org_users('65f0a0000000000000000001', '{}')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_team_users('65f0a0000000000000000001', 'team')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_project_invitations('')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_project_users('65f0b0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', '{}')$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com', NULL])$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com'], max_removals => -1)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com'], dry_run => NULL)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('acme', ARRAY['jane@example.com'])$$);
\set n `test/emuctl get requests_total`
SELECT :n AS requests_after_bad_input;

--
-- complete offboarding plans (dry runs)
--
-- a PENDING user (an open org invitation): the org removal deletes the invitation
SELECT kind, id, action, outcome FROM atlas_offboard_user('65f0a0000000000000000001', 'invited@example.com', dry_run => true);
-- an Organization Owner who is also the only Project Owner of a project:
-- that project's row and the org row are blocked, with the reason
SELECT kind, id, action, outcome, detail
FROM atlas_offboard_user('65f0a0000000000000000001', 'owner@example.com', dry_run => true)
WHERE outcome = 'blocked' OR kind = 'org_role';
-- scope 'projects': access through an org role stays, and says why
SELECT kind, id, action, outcome FROM atlas_offboard_user('65f0a0000000000000000001', 'erin@example.com', 'projects', true);
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests_of_dry_runs;
-- the removal functions: Atlas's refusal of a last owner, with a hint that
-- does not depend on its (undocumented) error code
SELECT * FROM regress_caught($$SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d000000000000000000c')$$);
SELECT count(*) FROM atlas_project_users('65f0b0000000000000000002', false, false)
WHERE username = 'owner@example.com';

--
-- reconciliation
--
-- everyone but carol and erin kept: a plan of 2, nothing removed
SELECT kind, username, status, action, outcome
FROM atlas_reconcile_org('65f0a0000000000000000001',
	ARRAY['JANE@example.com', 'john@example.com', 'alice@example.com', 'bob@example.com',
		  'dave@example.com', 'invited@example.com', 'owner@example.com',
		  'legacy.invite@example.com'])
ORDER BY username;
-- an HR query that returned one person: the dry run warns, the real run is
-- refused and removes nobody
SELECT count(*) FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com']);
\set x `test/emuctl reset-counters`
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com'], dry_run => false)$$);
SELECT * FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com', 'john@example.com', 'alice@example.com', 'bob@example.com', 'invited@example.com', 'owner@example.com'], dry_run => false, max_removals => 2)$$);
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests_of_refused_runs;
-- no owner kept: with force, the owners are still never removed
SELECT username, outcome FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com'], force => true)
WHERE outcome <> 'planned' ORDER BY username;
-- the removal budget shared by every path (atlas_users.guard_*), here one
-- person an hour: the same run is refused with 55000 before any removal
-- request; raised, the run goes ahead
SET atlas_users.guard_max_removals = 1;
\set x `test/emuctl reset-counters`
SELECT state, message, hint FROM regress_caught($$SELECT * FROM atlas_reconcile_org('65f0a0000000000000000001', ARRAY['jane@example.com', 'john@example.com', 'alice@example.com', 'bob@example.com', 'dave@example.com', 'invited@example.com', 'owner@example.com', 'legacy.invite@example.com'], dry_run => false, max_removals => 2)$$);
\set n `test/emuctl get removal_requests`
SELECT :n AS removal_requests_past_the_budget;
SET atlas_users.guard_max_removals = 1000;
SET atlas_users.guard_max_share = 100;
-- a real run within the guard: carol and erin go, and are audited
SELECT kind, username, action, outcome, http_status
FROM atlas_reconcile_org('65f0a0000000000000000001',
	ARRAY['jane@example.com', 'john@example.com', 'alice@example.com', 'bob@example.com',
		  'dave@example.com', 'invited@example.com', 'owner@example.com',
		  'legacy.invite@example.com'],
	dry_run => false, max_removals => 2)
ORDER BY username;
SELECT username FROM atlas_org_users('65f0a0000000000000000001')
WHERE username IN ('carol@example.com', 'erin@example.com');
SELECT * FROM (SELECT operation, username, outcome, http_status FROM atlas_removal_audit
			   WHERE operation = 'remove_org_user' ORDER BY id DESC LIMIT 2) a
ORDER BY username;
