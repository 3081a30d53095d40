--
-- remove: each removal function against the Atlas emulator (seed:
-- test/emulator/seed.json).  A removal returns true; doing it again raises
-- 404 with Atlas's errorCode, or returns false with missing_ok => true.
-- A missing project, organization or team raises even with missing_ok.
--
\! test/emuctl reset >/dev/null

--
-- project: DELETE /api/atlas/v2/groups/{groupId}/users/{userId}
--
-- carol (ACTIVE) from acme-prod
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005');
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005')$$);
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005', missing_ok => true);
-- carol is still in acme-dev
\set st `test/emuctl state 65f0d0000000000000000005`
SELECT :'st'::jsonb -> 'projects' AS carol_projects;

-- invited@example.com is PENDING: the current resource version removes it
\set st `test/emuctl state 65f0d0000000000000000006`
SELECT :'st'::jsonb ->> 'status' AS invited_status, :'st'::jsonb -> 'projects' AS invited_projects;
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000006');
\set st `test/emuctl state 65f0d0000000000000000006`
SELECT :'st'::jsonb -> 'projects' AS invited_projects;

-- what was sent
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'path' AS path, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Accept' AS accept, r -> 'headers' ->> 'User-Agent' AS user_agent,
	   r -> 'headers' ->> 'Authorization' AS auth_scheme, r ->> 'body' AS body
FROM jsonb_array_elements(:'req'::jsonb) r;

-- a user who is in the organization but not in the project
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000002')$$);
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000002', true);

-- a missing project is not a missing user: it raises even with missing_ok
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b00000000000000000ff', '65f0d0000000000000000001', missing_ok => true)$$);

--
-- team: POST /api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser {"id": ...}
--
-- bob from app-team
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'path' AS path, r ->> 'route' AS route,
	   r ->> 'status' AS status, r ->> 'version' AS version
FROM jsonb_array_elements(:'req'::jsonb) r;
SELECT r -> 'headers' ->> 'Accept' AS accept, r -> 'headers' ->> 'Content-Type' AS content_type,
	   r -> 'headers' ->> 'User-Agent' AS user_agent, r ->> 'body' AS body
FROM jsonb_array_elements(:'req'::jsonb) r;
\set st `test/emuctl state 65f0d0000000000000000004`
SELECT :'st'::jsonb -> 'teamIds' AS bob_teams, :'st'::jsonb -> 'orgs' AS bob_orgs;
-- again: Atlas says the user is not in the team (RESOURCE_NOT_FOUND naming the user)
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004')$$);
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004', missing_ok => true);
-- john from dba-team
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000002');

--
-- organization: DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}
-- also removes the user from every project and team of the organization
--
\set st `test/emuctl state 65f0d0000000000000000001`
SELECT :'st'::jsonb -> 'orgs' AS jane_orgs, :'st'::jsonb -> 'projects' AS jane_projects,
	   :'st'::jsonb -> 'teamIds' AS jane_teams;
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001');
\set st `test/emuctl state 65f0d0000000000000000001`
SELECT :'st'::jsonb -> 'orgs' AS jane_orgs, :'st'::jsonb -> 'projects' AS jane_projects,
	   :'st'::jsonb -> 'teamIds' AS jane_teams;
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001')$$);
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001', missing_ok => true);
-- the project and team removals now find jane gone as well
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000001', true);
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000001', true);
-- a PENDING org member
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000006');
-- outsider@example.com was never in the organization
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000009')$$);
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000009', true);
-- a missing organization raises even with missing_ok
SELECT regress_try($$SELECT atlas_remove_org_user('65f0a00000000000000000ff', '65f0d0000000000000000002', true)$$);

-- jane's organization removal left alice and the seed's owner
-- (owner@example.com, in every team) in dba-team; without the owner, alice
-- is its last member
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d000000000000000000c');
-- Atlas refuses to remove the last member with 400, which missing_ok does
-- not hide
\set st `test/emuctl state`
SELECT t ->> 'name' AS team, t -> 'userIds' AS members
FROM jsonb_array_elements(:'st'::jsonb -> 'teams') t ORDER BY 1;
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000003', true)$$);
-- a missing team raises even with missing_ok
SELECT regress_try($$SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c00000000000000000ff', '65f0d0000000000000000003', true)$$);

--
-- legacy v1.0: DELETE /api/atlas/v1.0/groups/{groupId}/users/{userId}
--
-- erin from acme-staging
SELECT atlas_remove_project_user_v1('65f0b0000000000000000002', '65f0d0000000000000000008');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'path' AS path, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Accept' AS accept, r -> 'headers' ->> 'Authorization' AS auth_scheme
FROM jsonb_array_elements(:'req'::jsonb) r;
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b0000000000000000002', '65f0d0000000000000000008')$$);
SELECT atlas_remove_project_user_v1('65f0b0000000000000000002', '65f0d0000000000000000008', true);
SELECT regress_try($$SELECT atlas_remove_project_user_v1('65f0b00000000000000000ff', '65f0d0000000000000000008', true)$$);

--
-- a pinned atlas_users.api_version
--
\! test/emuctl reset >/dev/null
SET atlas_users.api_version = '2023-01-01';
-- one WARNING per session that pending users cannot be removed, and one per
-- endpoint that answers with Deprecation and Sunset headers
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000005');
SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000005');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Accept' AS accept, r ->> 'version' AS version
FROM jsonb_array_elements(:'req'::jsonb) r;
-- the pending user cannot be removed with this version: Atlas does not see it
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000003', '65f0d0000000000000000006')$$);
\set st `test/emuctl state 65f0d0000000000000000006`
SELECT :'st'::jsonb ->> 'status' AS invited_status, :'st'::jsonb -> 'projects' AS invited_projects;
-- teams use the deprecated DELETE endpoint, which warns once too
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000002');
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000004');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'path' AS path, r ->> 'route' AS route,
	   r ->> 'status' AS status, r -> 'headers' ->> 'Accept' AS accept, r ->> 'body' AS body
FROM jsonb_array_elements(:'req'::jsonb) r;
-- organizations
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007');
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000007', true);
-- any date before 2025-02-19 selects the deprecated team endpoint
SET atlas_users.api_version = '2024-06-30';
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002', '65f0d0000000000000000001');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Accept' AS accept, r ->> 'version' AS version
FROM jsonb_array_elements(:'req'::jsonb) r;
-- a later date keeps the current endpoint
SET atlas_users.api_version = '2030-01-01';
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000001', '65f0d0000000000000000003');
\set req `test/emuctl requests 1`
SELECT r ->> 'method' AS method, r ->> 'route' AS route, r ->> 'status' AS status,
	   r -> 'headers' ->> 'Accept' AS accept, r -> 'headers' ->> 'Content-Type' AS content_type,
	   r ->> 'version' AS version
FROM jsonb_array_elements(:'req'::jsonb) r;

-- a new session warns again
\c
SET atlas_users.api_version = '2023-01-01';
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000004');

-- a date before the operation's first version: 406, SQLSTATE 0A000
SET atlas_users.api_version = '2022-12-31';
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000008')$$);
-- a version past its sunset: 410, SQLSTATE 0A000
\! test/emuctl config '{"today": "2027-07-02"}' >/dev/null
SET atlas_users.api_version = '2023-01-01';
SELECT regress_try($$SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000008')$$);
RESET atlas_users.api_version;
SELECT atlas_remove_project_user('65f0b0000000000000000002', '65f0d0000000000000000008');
\! test/emuctl reset >/dev/null

-- values SET refuses
SELECT regress_try($$SET atlas_users.api_version = 'latest'$$);
SELECT regress_try($$SET atlas_users.api_version = '2023-1-1'$$);
SELECT regress_try($$SET atlas_users.api_version = '20230101'$$);
SELECT regress_try($$SET atlas_users.api_version = '2023-01-01 '$$);
SELECT regress_try($$SET atlas_users.api_version = '2023-02-29'$$);
SELECT regress_try($$SET atlas_users.api_version = '2023-13-01'$$);
SELECT regress_try($$SET atlas_users.api_version = '2023-00-10'$$);
SELECT regress_try($$SET atlas_users.api_version = '1999-12-31'$$);
SELECT regress_try($$SET atlas_users.api_version = 'v1.0'$$);
-- a leap day is a date
SET atlas_users.api_version = '2024-02-29';
SHOW atlas_users.api_version;
RESET atlas_users.api_version;
SHOW atlas_users.api_version;
