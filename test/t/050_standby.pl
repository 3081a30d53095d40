# 050_standby.pl: what changes Atlas is refused where it cannot be
# audited; what only reads Atlas works there.
#
# A primary (preloaded, so its worker runs) and a streaming hot standby
# made from its base backup:
# - on the standby, every function that would remove a user or change the
#   queue (the removals, v1, bulk, offboarding without dry run, every
#   enqueue, atlas_process_queue, atlas_cancel_removal) fails with 25006
#   and a hint to run it on the primary, and the emulator counts 0
#   requests for each; the user is still in Atlas;
# - on the standby, a lookup (atlas_find_user_id), the memberships, an
#   offboarding dry run and the queue status work;
# - on the primary, in a read-only transaction (BEGIN READ ONLY, or
#   default_transaction_read_only), the removal functions, enqueue and
#   atlas_process_queue fail with 25006 and 0 requests, and a lookup works;
# - the same calls through a foreign server and its user mapping
#   (SET atlas_users.server) are refused the same way on the standby, with
#   0 requests, and a lookup through the server works there;
# - no audit or queue row was written by any refused call.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $team = '65f0c0000000000000000001';

emu_reset();
my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], teamIds => [$team],
		prefix => 'standby') };
my $email = emu('GET', "state?user=$u")->{username};

my $primary = atlas_node('primary',
	init => { allows_streaming => 1 },
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");
ok($primary->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the primary runs the atlas_users worker');
# a server without org_id, used when atlas_users.server names it, with the
# test's digest key in the superuser's mapping; made before the backup, so
# the standby has it
digest_server($primary, 'stdby');
my $standby = atlas_standby($primary, 'standby');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# Rows of the audit and the queue, on the primary.
sub rows
{
	return $primary->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM atlas_removal_audit) || \'|\' || (SELECT count(*) FROM atlas_removal_queue)');
}
my $rows_before = rows();

# Run $sql on $node as the superuser: (stdout, stderr, requests counted).
sub attempt
{
	my ($node, $sql) = @_;
	emu_reset_counters();
	my (undef, $out, $err) = psql_as($node, 'postgres', $sql);
	return ($out, $err, emu_counter('requests_total'));
}

# ------------------------------------------------------------------
# 1. on the standby: everything that would change Atlas or the queue
# ------------------------------------------------------------------
my @writes = (
	"SELECT atlas_remove_project_user('$group', '$u')",
	"SELECT atlas_remove_org_user('$org', '$u')",
	"SELECT atlas_remove_team_user('$org', '$team', '$u')",
	"SELECT atlas_remove_project_user_v1('$group', '$u')",
	"SELECT * FROM atlas_remove_project_users('$group', ARRAY['$u'])",
	"SELECT * FROM atlas_remove_org_users('$org', ARRAY['$u'])",
	"SELECT * FROM atlas_remove_team_users('$org', '$team', ARRAY['$u'])",
	"SELECT * FROM atlas_offboard_user('$org', '$email')",
	"SELECT * FROM atlas_offboard_user('$org', '$u', scope => 'projects')",
	"SELECT atlas_enqueue_remove_project_user('$group', '$u')",
	"SELECT atlas_enqueue_remove_org_user('$org', '$u')",
	"SELECT atlas_enqueue_remove_team_user('$org', '$team', '$u')",
	"SELECT atlas_enqueue_remove_org_user_by_username('$org', '$email')",
	'SELECT atlas_process_queue()',
	'SELECT atlas_cancel_removal(1)');
for my $sql (@writes)
{
	my ($out, $err, $requests) = attempt($standby, $sql);
	is(sqlstate_of($err), '25006', "standby: $sql fails with 25006") or diag $err;
	like($err, qr/on a hot standby.*\n(.*\n)*HINT:\s+Run it on the primary/,
		"standby: $sql says to run it on the primary");
	is($requests, 0, "standby: $sql sends 0 requests");
}
# the same through the foreign server: refused before the server is
# even resolved
for my $sql (@writes)
{
	my ($out, $err, $requests) = attempt($standby, "SET atlas_users.server = 'stdby';\n$sql");
	is(sqlstate_of($err), '25006', "standby, through server stdby: $sql fails with 25006") or diag $err;
	is($requests, 0, "standby, through server stdby: $sql sends 0 requests");
}
ok(exists emu('GET', "state?user=$u")->{projects}{$group}, 'standby: the user is still in the project');
ok(exists emu('GET', "state?user=$u")->{orgs}{$org}, 'standby: the user is still in the organization');

# ------------------------------------------------------------------
# 2. on the standby: what only reads Atlas works
# ------------------------------------------------------------------
{
	my ($out, $err, $requests) = attempt($standby, "SELECT atlas_find_user_id('$org', '$email')");
	is($out, $u, 'standby: atlas_find_user_id finds the user') or diag $err;
	cmp_ok($requests, '>=', 1, "standby: the lookup sent $requests request(s)");

	($out, $err, $requests) = attempt($standby,
		"SET atlas_users.server = 'stdby';\nSELECT atlas_find_user_id('$org', '$email')");
	is($out, $u, 'standby: atlas_find_user_id through server stdby finds the user') or diag $err;
	cmp_ok($requests, '>=', 1, "standby: the lookup through server stdby sent $requests request(s)");

	($out, $err) = attempt($standby,
		"SELECT string_agg(scope || ':' || id, ',' ORDER BY scope, id) FROM atlas_user_memberships('$org', '$email')");
	is($out, "org:$org,project:$group,team:$team", 'standby: atlas_user_memberships lists the org, project and team')
	  or diag $err;

	($out, $err) = attempt($standby,
		"SELECT count(*) FILTER (WHERE username = '$email') || '/' || (count(*) > 0) FROM atlas_org_users('$org')");
	is($out, '1/true', 'standby: the listing atlas_org_users works') or diag $err;
	($out, $err) = attempt($standby,
		"SELECT count(*) FROM atlas_project_users('$group') WHERE username = '$email'");
	cmp_ok($out, '>=', 1, 'standby: the listing atlas_project_users works') or diag $err;

	my $c;
	($out, $err) = attempt($standby,
		"SELECT string_agg(kind || ':' || action || ':' || outcome, ',' ORDER BY kind)"
		  . " FROM atlas_offboard_user('$org', '$email', dry_run => true)");
	$c = emu_counters();
	like($out, qr/^org:remove_org_user:planned,project:dropped_with_org:planned,(project_via_team:dropped_with_org:planned,)+team:dropped_with_org:planned$/,
		'standby: an offboarding dry run returns the plan (with the projects the team reaches)') or diag $err;
	is(($c->{removal_requests} // 0), 0, 'standby: the dry run sent no removal request');

	($out, $err) = attempt($standby, 'SELECT queued + running + done + failed + cancelled FROM atlas_queue_status');
	is($err, '', 'standby: atlas_queue_status can be read');
}

# ------------------------------------------------------------------
# 3. on the primary, in a read-only transaction
# ------------------------------------------------------------------
for my $sql (@writes[ 0, 4, 7, 9, 13 ])
{
	for my $ro ("BEGIN READ ONLY;\n$sql;\nCOMMIT;",
		"SET default_transaction_read_only = on;\n$sql;")
	{
		my ($out, $err, $requests) = attempt($primary, $ro);
		(my $how = $ro) =~ s/\n.*//s;
		is(sqlstate_of($err), '25006', "primary, $how: $sql fails with 25006") or diag $err;
		like($err, qr/in a read-only transaction/, "primary, $how: $sql names the read-only transaction");
		is($requests, 0, "primary, $how: $sql sends 0 requests");
	}
}
{
	my ($out, $err) = attempt($primary,
		"BEGIN READ ONLY;\nSELECT atlas_find_user_id('$org', '$email');\nCOMMIT;");
	like($out, qr/^\Q$u\E$/m, 'primary, read-only transaction: a lookup works') or diag $err;
}
ok(exists emu('GET', "state?user=$u")->{projects}{$group}, 'read-only: the user is still in the project');

$primary->wait_for_catchup($standby);
is(rows(), $rows_before, 'no refused call wrote an audit or a queue row');

# the same functions work on the primary in a read-write transaction
{
	my ($out, $err, $requests) = attempt($primary,
		"SET atlas_users.server = 'stdby';\nSELECT atlas_remove_project_user('$group', '$u')");
	is($out, 't', 'primary, read-write: the removal through server stdby works') or diag $err;
	ok(!exists emu('GET', "state?user=$u")->{projects}{$group}, 'primary: the user is gone from the project');
	# the worker writes the audit row it was handed
	ok($primary->poll_query_until('postgres',
			"SELECT server = 'stdby' FROM atlas_removal_audit WHERE user_id = '$u' AND outcome = 'removed'"),
		'primary: its audit row names server stdby');
}

$standby->stop;
$primary->stop;
done_testing();
