-- test/demo.sql: a short offboarding, run by test/demo against the emulator.
\set VERBOSITY default
\pset footer off
CREATE EXTENSION atlas_users;

\echo
\echo '== Remove john@example.com from the project acme-prod'
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000002') AS removed;

\echo
\echo '== Again: Atlas says he is gone; missing_ok => true turns that into false'
SELECT atlas_remove_project_user('65f0b0000000000000000001', '65f0d0000000000000000002',
                                 missing_ok => true) AS removed;

\echo
\echo '== Remove the invited (PENDING) user invited@example.com from the team app-team'
SELECT atlas_remove_team_user('65f0a0000000000000000001', '65f0c0000000000000000002',
                              '65f0d0000000000000000006') AS removed;

\echo
\echo '== Offboard carol@example.com by e-mail: where she has access, the plan, then the removal'
SELECT scope, id, name, roles, org_membership_status
FROM atlas_user_memberships('65f0a0000000000000000001', 'carol@example.com');
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'carol@example.com', dry_run => true);
SELECT * FROM atlas_offboard_user('65f0a0000000000000000001', 'carol@example.com');

\echo
\echo '== An error carries what Atlas answered: a project that does not exist'
SELECT atlas_remove_project_user('65f0b00000000000000000ff', '65f0d0000000000000000002');

\echo
\echo '== A malformed id is refused before any request'
SELECT atlas_remove_org_user('65f0a0000000000000000001', '../65F0D0000000000000000001');

\echo
\echo '== Remove jane@example.com from the organization (Atlas drops her projects and teams too)'
SELECT atlas_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000001') AS removed;

\echo
\echo '== Queue a removal to run after commit; the background worker sends it'
SELECT atlas_enqueue_remove_org_user('65f0a0000000000000000001', '65f0d0000000000000000004') AS queue_id;
SELECT pg_sleep(1);
SELECT id, operation, user_id, status, attempts, http_status FROM atlas_removal_queue;

\echo
\echo '== The audit trail (the failed call survived its rolled-back transaction)'
SELECT atlas_audit_flush() AS flushed;
SELECT id, requested_by, operation, coalesce(group_id, team_id, org_id) AS scope_id, user_id,
       http_status, outcome, error_code, attempts
FROM atlas_removal_audit ORDER BY id;
