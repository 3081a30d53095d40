# 021_offboard.pl: offboarding a person (atlas_offboard_user) and the
# username queue entry points, counted against the emulator, on a node
# with shared_preload_libraries = 'atlas_users' (durable audit, worker).
#
# - The issue's figure: jane@example.com is in the org, 3 projects and 2
#   teams; a dry run lists 6 rows and costs 0 removal requests; without
#   dry_run the emulator shows her gone everywhere, for one removal request.
# - scope 'projects' with a 500 on one project: that row failed, the other
#   two removed, the org kept; scope 'teams'; a failing org removal leaves
#   the dropped_with_org rows 'not_removed'.  Every item is audited.
# - A cancelled offboarding is audited as far as it got.
# - Enqueueing by username and an HR trigger with 'username=email': a
#   committed change removes the user (the worker resolves the username),
#   a rolled-back one sends nothing; an unknown username ends 'done' with
#   "No Atlas user has the username ...", and so does a user who is not in
#   the project or team; a lookup answered 429 is retried no sooner than
#   its Retry-After.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my @projects = map { seed_id('project', $_) } 0 .. 2;
my @teams = map { seed_id('team', $_) } 0 .. 1;
my $jane = seed_id('user', 'jane@example.com');
my $john = seed_id('user', 'john@example.com');
my $bob = seed_id('user', 'bob@example.com');
my $carol = seed_id('user', 'carol@example.com');
my $dave = seed_id('user', 'dave@example.com');
my $erin = seed_id('user', 'erin@example.com');
my $invited = seed_id('user', 'invited@example.com');

emu_reset();
my $node = atlas_node('offboard',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_attempts = 3\n"
	  . "atlas_users.retry_base_ms = 100\n");
ok( $node->poll_query_until('postgres',
		'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the atlas_users worker is running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# A user in the emulator's state.
sub emu_user { return emu('GET', "state?user=$_[0]"); }

# Non-401 requests to the removal routes since the last counter reset.
sub removals
{
	my $c = emu_counters();
	my $n = $c->{removal_requests};
	for my $route (keys %{ $c->{requests_by_route} })
	{
		next unless $route =~ m{^(DELETE|POST) .*(users/\{userId\}|:removeUser)$};
		$n -= $c->{requests_by_route}{$route}{401} // 0;
	}
	return $n;
}

# The rows of atlas_offboard_user, one "kind|id|action|outcome|status|code" each.
sub offboard
{
	my ($who, $scope, $dry) = @_;
	return sql("SELECT kind || '|' || id || '|' || action || '|' || outcome || '|'"
		  . " || coalesce(http_status::text, '') || '|' || coalesce(error_code, '')"
		  . " FROM atlas_offboard_user('$org', '$who', '$scope', $dry)");
}

# Audit rows of a user since a given audit id: "operation/target/outcome/status" sorted.
sub audit_since
{
	my ($user, $since) = @_;
	return sql("SELECT string_agg(operation || '/' || coalesce(group_id, team_id, org_id) || '/'"
		  . " || outcome || '/' || coalesce(http_status::text, ''), ' ' ORDER BY 1)"
		  . " FROM (SELECT * FROM atlas_removal_audit WHERE user_id = '$user' AND id > $since"
		  . " ORDER BY operation, coalesce(group_id, team_id, org_id)) a");
}

sub last_audit_id { return sql('SELECT coalesce(max(id), 0) FROM atlas_removal_audit'); }

# ------------------------------------------------------------------
# 1. the issue's figure: 6 rows as a dry run, then gone everywhere
# ------------------------------------------------------------------
{
	my $u = emu_user($jane);
	is(scalar(keys %{ $u->{projects} }) . '/' . scalar(@{ $u->{teamIds} }),
		'3/2', 'jane is in 3 projects and 2 teams');

	emu_reset_counters();
	my $a0 = last_audit_id();
	my $plan = offboard('jane@example.com', 'org', 'true');
	my @rows = split /\n/, $plan;
	is(scalar @rows, 9, 'dry run: 9 rows');
	is( join("\n", @rows),
		join("\n",
			"org|$org|remove_org_user|planned||",
			(map { "project|$_|dropped_with_org|planned||" } @projects),
			(map { "team|$_|dropped_with_org|planned||" } @teams),
			(map { "project_via_team|$_|dropped_with_org|planned||" } @projects)),
		'dry run: the org removal, the 5 memberships and the 3 projects her teams reach, which Atlas drops with it, all planned');
	is(removals(), 0, 'dry run: 0 removal requests');
	is(emu_counter('removal_requests'), 0, 'dry run: the emulator counted no removal request at all');
	is(last_audit_id(), $a0, 'dry run: no audit row');
	is(scalar(keys %{ emu_user($jane)->{projects} }), 3, 'dry run: jane is still in her 3 projects');

	my $done = offboard('jane@example.com', 'org', 'false');
	is( $done,
		join("\n",
			"org|$org|remove_org_user|removed|204|",
			(map { "project|$_|dropped_with_org|removed||" } @projects),
			(map { "team|$_|dropped_with_org|removed||" } @teams)),
		'offboard: 6 rows, the org removed with 204 and the 5 memberships with it (a real run reads no project\'s teams)');
	is(removals(), 1, 'offboard: one removal request (the org membership)');
	$u = emu_user($jane);
	is_deeply(
		[ $u->{orgs}, $u->{projects}, $u->{teamIds} ],
		[ {}, {}, [] ],
		'offboard: the emulator shows jane gone everywhere: no org, project or team');
	my $st = emu('GET', 'state');
	is(scalar(grep { grep { $_ eq $jane } @{ $_->{userIds} } } @{ $st->{teams} }),
		0, 'offboard: no team lists jane');
	is(audit_since($jane, $a0), "remove_org_user/$org/removed/204", 'offboard: the removal is audited');
	is(sql("SELECT username FROM atlas_removal_audit WHERE user_id = '$jane' AND id > $a0"),
		'jane@example.com', 'offboard: (its audit row names the user by id and username)');

	# offboarding her again: she is no longer in the organization
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT count(*) FROM atlas_offboard_user('$org', 'jane\@example.com')");
	is($out, '0', 'again: no rows');
	like($err, qr/NOTICE:  organization $org has no user jane\@example.com/, 'again: a NOTICE says so');
}

# ------------------------------------------------------------------
# 2. one failing item never stops the others
# ------------------------------------------------------------------
emu_reset();
{
	# scope 'projects', acme-staging answers 500
	emu_fault({ kind => 'status', status => 500, match => "/groups/$projects[1]/users/$jane", count => -1 });
	emu_reset_counters();
	my $a0 = last_audit_id();
	is( offboard($jane, 'projects', 'false'),
		join("\n",
			"project|$projects[0]|remove_project_user|removed|204|",
			"project|$projects[1]|remove_project_user|failed|500|UNEXPECTED_ERROR",
			"project|$projects[2]|remove_project_user|removed|204|",
			(map { "project_via_team|$_|stays|stays||" } @projects)),
		'projects: the failing project is a failed row, the other two are removed; access through her teams stays');
	is(removals(), 3, 'projects: three removal requests');
	my $u = emu_user($jane);
	is_deeply([ sort keys %{ $u->{projects} } ], [ $projects[1] ], 'projects: only acme-staging is left');
	ok(exists $u->{orgs}{$org}, 'projects: the org membership is kept');
	is(scalar @{ $u->{teamIds} }, 2, 'projects: the team memberships are kept');
	is( audit_since($jane, $a0),
		join(' ',
			"remove_project_user/$projects[0]/removed/204",
			"remove_project_user/$projects[1]/failed/500",
			"remove_project_user/$projects[2]/removed/204"),
		'projects: every item is audited');
	# again: only the failing one is left, and it fails again, with a detail
	is( sql("SELECT outcome || '|' || http_status || '|' || (detail IS NOT NULL)"
			  . " FROM atlas_offboard_user('$org', '$jane', 'projects') WHERE kind = 'project'"),
		'failed|500|true',
		'projects: again, the one left fails again, with a detail');
	emu('DELETE', 'faults');

	# a read that fails stops offboarding before anything is removed
	emu_fault({ kind => 'status', status => 500, match => "GET /api/atlas/v2/orgs/$org/teams/$teams[0]/users", count => -1 });
	emu_reset_counters();
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT count(*) FROM atlas_offboard_user('$org', 'jane\@example.com', 'teams')");
	like($err, qr/ERROR:  Atlas API error 500/, 'a failed read: offboarding raises Atlas\'s answer');
	is(removals(), 0, 'a failed read: no removal request');
	emu('DELETE', 'faults');

	# scope 'teams': one team's removal answers 500
	emu_fault({ kind => 'status', status => 500, match => "POST /api/atlas/v2/orgs/$org/teams/$teams[0]:removeUser", count => -1 });
	emu_reset_counters();
	$a0 = last_audit_id();
	is( offboard('jane@example.com', 'teams', 'false'),
		join("\n",
			"team|$teams[0]|remove_team_user|failed|500|UNEXPECTED_ERROR",
			"team|$teams[1]|remove_team_user|removed|200|"),
		'teams: the failing team is a failed row, the other is removed');
	$u = emu_user($jane);
	is_deeply($u->{teamIds}, [ $teams[0] ], 'teams: only dba-team is left');
	is(scalar keys %{ $u->{projects} }, 1, 'teams: the project membership is kept');
	is( audit_since($jane, $a0),
		"remove_team_user/$teams[0]/failed/500 remove_team_user/$teams[1]/removed/200",
		'teams: every item is audited');
	emu('DELETE', 'faults');

	# scope 'org' when the org removal fails: nothing was dropped
	emu_fault({ kind => 'status', status => 503, match => "/orgs/$org/users/$jane", count => -1 });
	$a0 = last_audit_id();
	is( offboard('jane@example.com', 'org', 'false'),
		join("\n",
			"org|$org|remove_org_user|failed|503|SERVICE_UNAVAILABLE",
			"project|$projects[1]|dropped_with_org|not_removed||",
			"team|$teams[0]|dropped_with_org|not_removed||"),
		'org fails: the org row failed, the memberships it would drop are not_removed');
	ok(exists emu_user($jane)->{orgs}{$org}, 'org fails: jane is still in the org');
	is(audit_since($jane, $a0), "remove_org_user/$org/failed/503", 'org fails: audited');
	emu('DELETE', 'faults');

	# a PENDING user (an open invitation) is offboarded the same way; Atlas
	# takes the invitation with the org membership, and no deprecated
	# invitation endpoint of the organization is read
	my $inv = sql("SELECT id FROM atlas_org_invitations('$org') WHERE username = 'invited\@example.com'");
	emu_reset_counters();
	is( offboard('invited@example.com', 'org', 'false'),
		join("\n",
			"org|$org|remove_org_user|removed|204|",
			"project|$projects[2]|dropped_with_org|removed||",
			"team|$teams[1]|dropped_with_org|removed||"),
		'pending: the invitation is removed with its memberships');
	is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/invites'), 0,
		'pending: the deprecated org invitation listing is not read');
	is_deeply(emu_user($invited)->{orgs}, {}, 'pending: gone from the org');
	is(sql("SELECT count(*) FROM atlas_org_invitations('$org') WHERE id = '$inv'"), 0,
		'pending: the invitation went with the PENDING user');
}

# ------------------------------------------------------------------
# 3. a cancelled offboarding is audited as far as it got
# ------------------------------------------------------------------
{
	my $s = psql_session($node);
	my ($pid) = session_run($s, 'SELECT pg_backend_pid()');
	# carol: acme-prod and acme-dev; acme-dev hangs
	emu_fault({ kind => 'hang', match => "/groups/$projects[2]/users/$carol", count => 1 });
	my $a0 = last_audit_id();
	my $f0 = emu_counter('faults_triggered');
	session_send($s, "SELECT * FROM atlas_offboard_user('$org', 'carol\@example.com', 'projects')");
	ok(wait_counter('faults_triggered', sub { $_[0] > $f0 }, 20) > $f0,
		'cancel: the emulator hangs on acme-dev');
	sleep 0.3;
	my $tc = time;
	sql("SELECT pg_cancel_backend($pid)");
	my $lat = (session_wait($s, 'err', qr/ERROR:\s+57014/, 30) // time) - $tc;
	like($s->{err}, qr/ERROR:\s+57014/, 'cancel: the offboarding ended with 57014');
	note sprintf('cancel: offboarding ended %.3f s after pg_cancel_backend', $lat);
	cmp_ok($lat, '<', 1.0, 'cancel: within 1 s');
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 2 FROM atlas_removal_audit WHERE user_id = '$carol' AND id > $a0"),
		'cancel: 2 durable audit rows after the rollback');
	is( audit_since($carol, $a0),
		"remove_project_user/$projects[0]/removed/204 remove_project_user/$projects[2]/failed/",
		'cancel: acme-prod removed, acme-dev failed (interrupted)');
	like(sql("SELECT detail FROM atlas_removal_audit WHERE user_id = '$carol' AND id > $a0"
			  . " AND outcome = 'failed'"),
		qr/interrupted/, 'cancel: the interrupted item says so');
	emu('DELETE', 'faults');
	session_close($s);
}

# ------------------------------------------------------------------
# 4. enqueueing by username; the HR trigger with 'username=email'
# ------------------------------------------------------------------
# Wait until these queue rows are finished; their "status|detail" lines.
sub wait_rows
{
	my (@ids) = @_;
	my $list = join(',', @ids);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM atlas_removal_queue WHERE id IN ($list)"
		  . " AND status IN ('queued', 'running')")
	  or diag 'queue rows not finished: '
	  . sql("SELECT string_agg(id || ':' || status, ' ') FROM atlas_removal_queue WHERE id IN ($list)");
	return sql("SELECT string_agg(status || '|' || coalesce(http_status::text, '') || '|'"
		  . " || coalesce(detail, ''), E'\\n' ORDER BY id) FROM atlas_removal_queue WHERE id IN ($list)");
}

emu_reset();
{
	emu_reset_counters();
	my $a0 = last_audit_id();
	my $id = sql("SELECT atlas_enqueue_remove_org_user_by_username('$org', 'John\@Example.com')");
	like(wait_rows($id), qr/^done\|204\|/, 'by username: the worker removed john from the org');
	is_deeply(emu_user($john)->{orgs}, {}, 'by username: john is gone from the org');
	is( sql("SELECT operation || '/' || user_id || '/' || username || '/' || outcome"
			  . " FROM atlas_removal_audit WHERE id > $a0 ORDER BY id"),
		"remove_org_user/$john/John\@Example.com/removed",
		'by username: the audit row has the resolved id and the username');
	is(removals(), 1, 'by username: one removal request');

	# project and team, by username
	my $p = sql("SELECT atlas_enqueue_remove_project_user_by_username('$projects[2]', 'carol\@example.com')");
	my $t = sql("SELECT atlas_enqueue_remove_team_user_by_username('$org', '$teams[1]', 'bob\@example.com')");
	like(wait_rows($p, $t), qr/^done\|204\|.*\ndone\|200\|/,
		'by username: project and team removals done');
	ok(!exists emu_user($carol)->{projects}{ $projects[2] }, 'by username: carol is gone from acme-dev');
	ok(exists emu_user($carol)->{projects}{ $projects[0] }, 'by username: and still in acme-prod');
	is_deeply(emu_user($bob)->{teamIds}, [], 'by username: bob is gone from app-team');
	is( sql("SELECT count(*) FROM atlas_removal_audit WHERE id > $a0 AND username IS NOT NULL"),
		3, 'by username: every removal is audited with its username');

	# an unknown username: nothing to remove, done
	emu_reset_counters();
	my $n = sql("SELECT atlas_enqueue_remove_org_user_by_username('$org', 'nobody\@example.com')");
	my $np = sql("SELECT atlas_enqueue_remove_project_user_by_username('$projects[0]', 'dave\@example.com')");
	my $r = wait_rows($n, $np);
	like($r, qr/^done\|\d*\|No Atlas user has the username nobody\@example.com/,
		'unknown username: done, "No Atlas user has the username ..."');
	like($r, qr/\ndone\|\d*\|No Atlas user has the username dave\@example.com/,
		'a user not in the project: done, nothing to remove');
	is(removals(), 0, 'unknown username: no removal request');

	# a user of the org who is not in the team: nothing to remove there
	# either, as for a project (dave is in no team)
	emu_reset_counters();
	my $nt = sql("SELECT atlas_enqueue_remove_team_user_by_username('$org', '$teams[1]', 'dave\@example.com')");
	like(wait_rows($nt), qr/^done\|\d*\|No Atlas user has the username dave\@example.com/,
		'a user not in the team: done, nothing to remove (as for a project)');
	is(removals(), 0, 'a user not in the team: no removal request');

	# a lookup answered 429 with Retry-After is retried, never before Retry-After
	emu_fault(
		{
			kind => 'status',
			status => 429,
			retry_after => 2,
			match => "GET /api/atlas/v2/orgs/$org/users?username=",
			count => 1
		});
	$a0 = last_audit_id();
	my $rl = sql("SELECT atlas_enqueue_remove_org_user_by_username('$org', 'carol\@example.com')");
	like(wait_rows($rl), qr/^done\|204\|/, 'lookup 429: done after a retry');
	is( sql("SELECT string_agg(outcome || '/' || (user_id IS NOT NULL), ' ' ORDER BY id)"
			  . " FROM atlas_removal_audit WHERE id > $a0 AND username = 'carol\@example.com'"),
		'failed/false removed/true',
		'lookup 429: two attempts audited, the failed lookup and the removal');
	my $gap = sql("SELECT extract(epoch FROM max(at) - min(at)) FROM atlas_removal_audit"
		  . " WHERE id > $a0 AND username = 'carol\@example.com'");
	note "lookup 429: second attempt ${gap} s after the first (Retry-After: 2)";
	cmp_ok($gap, '>=', 1.9, 'lookup 429: the retry waited for Retry-After (2 s)');
	emu('DELETE', 'faults');
}

{
	sql(<<"EOT");
CREATE TABLE hr_employees (
	employee_id int PRIMARY KEY,
	email text NOT NULL,
	status text NOT NULL DEFAULT 'active');
INSERT INTO hr_employees VALUES (1, 'erin\@example.com'), (2, 'dave\@example.com'),
	(3, 'nobody\@example.com');
CREATE TRIGGER hr_offboard AFTER UPDATE OF status ON hr_employees
	FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status = 'left')
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'username=email');
EOT
	emu_reset_counters();
	my $q0 = sql('SELECT coalesce(max(id), 0) FROM atlas_removal_queue');

	# rolled back: nothing queued, nothing sent
	sql("BEGIN; UPDATE hr_employees SET status = 'left' WHERE employee_id = 2; ROLLBACK;");
	sleep 1.5;
	is(sql("SELECT count(*) FROM atlas_removal_queue WHERE id > $q0"), 0, 'trigger: a rollback queues nothing');
	is(removals(), 0, 'trigger: a rollback sends no removal');
	is(emu_counter('requests_total'), 0, 'trigger: a rollback sends no request at all');
	ok(exists emu_user($dave)->{orgs}{$org}, 'trigger: dave is still in the org');

	# committed: the worker resolves the e-mail and removes erin
	sql("UPDATE hr_employees SET status = 'left' WHERE employee_id = 1");
	my $id = sql("SELECT id FROM atlas_removal_queue WHERE id > $q0 AND username = 'erin\@example.com'");
	like($id, qr/^\d+$/, 'trigger: the committed update queued a removal by username');
	like(wait_rows($id), qr/^done\|204\|/, 'trigger: the worker removed her');
	is_deeply(emu_user($erin)->{orgs}, {}, 'trigger: erin is gone from the org');
	is_deeply(emu_user($erin)->{projects}, {}, 'trigger: and from her project');
	is(removals(), 1, 'trigger: one removal request');
	is( sql("SELECT user_id || '/' || username FROM atlas_removal_audit"
			  . " WHERE username = 'erin\@example.com' AND outcome = 'removed'"),
		"$erin/erin\@example.com",
		'trigger: audited with the resolved id and the e-mail');

	# committed, unknown e-mail: done, nothing removed
	sql("UPDATE hr_employees SET status = 'left' WHERE employee_id = 3");
	$id = sql("SELECT id FROM atlas_removal_queue WHERE id > $q0 AND username = 'nobody\@example.com'");
	like(wait_rows($id), qr/^done\|\d*\|No Atlas user has the username nobody\@example.com/,
		'trigger: an unknown e-mail ends done with "No Atlas user has the username ..."');
	is(removals(), 1, 'trigger: no further removal request');
}

$node->stop;
done_testing();
