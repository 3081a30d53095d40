# 020_bulk.pl: bulk removal (atlas_remove_project_users and friends),
# counted and timed against the emulator.
#
# - The issue's figure: with 100 ms injected latency, 200 ids at
#   max_concurrency 20 end in under 2 s (the latency bound is
#   200 x 0.1 s / 20 = 1 s), never more than 20 requests in flight; one at
#   a time would take 200 x 0.1 s = 20 s (measured on 20 ids at
#   max_concurrency 1 and extrapolated).
# - The issue's figure: 5 of 200 ids answered 404 and 3 answered 500 give
#   exactly 8 error rows and 192 removed, in the same statement.
# - Every item is audited, one audit row per id.
# - A query cancel ends a long bulk call within 1 s with 57014; the same
#   session works afterwards.
# - Long runs report progress with a NOTICE every 10 s; short runs do not.
# - atlas_remove_org_users and atlas_remove_team_users remove too; a
#   missing project is a failed row per id, not an error.
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
my $group = '65f0b0000000000000000001';
my $team = '65f0c0000000000000000001';    # dba-team: 3 seed users stay in it
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';

emu_reset();
my $node = atlas_node('bulk');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Run a statement with psql; returns (seconds, stdout, stderr).
sub timed_psql
{
	my ($q) = @_;
	my ($out, $err);
	my $t0 = time;
	my $rc = $node->psql('postgres', $q, stdout => \$out, stderr => \$err);
	my $dt = time - $t0;
	die "psql failed ($rc): $err" if $rc != 0;
	return ($dt, $out, $err);
}

# A user's memberships in the emulator's state.
sub emu_user { return emu('GET', "state?user=$_[0]"); }

# Audit rows of these users, as "outcome:n" sorted.
sub audit_outcomes
{
	my ($ids, $extra) = @_;
	return sql("SELECT string_agg(outcome || ':' || n, ' ' ORDER BY outcome) FROM ("
		  . " SELECT outcome, count(*) AS n FROM atlas_removal_audit"
		  . " WHERE user_id = ANY (" . id_array($ids) . ")"
		  . ($extra // '')
		  . " GROUP BY outcome) s");
}

# ------------------------------------------------------------------
# 1. 200 ids, 100 ms latency, max_concurrency 20: under 2 s
# ------------------------------------------------------------------
my $ids = emu_users(count => 200, orgId => $org, groupIds => [$group], prefix => 'fast');
is(scalar @$ids, 200, 'the emulator made 200 users in acme-prod');
emu_config(latency_ms => 100);
emu_reset_counters();
{
	my ($dt, $out, $err) = timed_psql(
		"SET atlas_users.max_concurrency = 20;\n"
		  . "SELECT count(*) FILTER (WHERE removed) || '|' || count(*) || '|'"
		  . " || count(*) FILTER (WHERE error_code IS NOT NULL) || '|'"
		  . " || count(DISTINCT user_id)"
		  . " FROM atlas_remove_project_users('$group', " . id_array($ids) . ")");
	my $c = emu_counters();
	note sprintf('200 ids at max_concurrency 20 with 100 ms latency: %.3f s'
		  . ' (latency bound 200 x 0.1 s / 20 = 1.0 s); max_concurrent_requests %d',
		$dt, $c->{max_concurrent_requests});
	is($out, '200|200|0|200', '200 rows, all removed, no error, one per id');
	cmp_ok($dt, '<', 2.0, 'the bulk removal of 200 ids ends in under 2 s');
	cmp_ok($dt, '>=', 1.0, 'and not faster than the latency bound (1 s): the latency was applied');
	cmp_ok($c->{max_concurrent_requests}, '<=', 20, 'never more than max_concurrency (20) requests in flight');
	cmp_ok($c->{max_concurrent_requests}, '>', 10, 'more than 10 requests in flight at the peak');
	is(emu_route_count($c, $route, '204'), 200, 'exactly 200 successful DELETE requests');
	is($c->{removal_requests} - emu_route_count($c, $route, '401'),
		200, 'no removal request other than the 200 (and digest challenges)');
	unlike($err, qr/of 200 done/, 'a run of about a second reports no progress');
	is(emu_user($ids->[0])->{projects}{$group}, undef, 'the first user is gone from acme-prod');
	is(emu_user($ids->[199])->{projects}{$group}, undef, 'the last user is gone from acme-prod');
	is(audit_outcomes($ids), 'removed:200', 'every item is audited: 200 audit rows, removed');
	is( sql("SELECT count(*) FROM atlas_removal_audit WHERE user_id = ANY ("
			  . id_array($ids) . ") AND group_id = '$group' AND operation = 'remove_project_user'"
			  . " AND http_status = 204"),
		200,
		'the audit rows name the project, the operation and the status');
}

# One at a time, for comparison: 20 ids at max_concurrency 1
{
	my $slow = emu_users(count => 20, orgId => $org, groupIds => [$group], prefix => 'slow');
	emu_reset_counters();
	my ($dt, $out) = timed_psql("SET atlas_users.max_concurrency = 1;\n"
		  . "SELECT count(*) FILTER (WHERE removed)"
		  . " FROM atlas_remove_project_users('$group', " . id_array($slow) . ")");
	my $c = emu_counters();
	note sprintf('20 ids one at a time with 100 ms latency: %.3f s, so 200 ids would take about %.1f s',
		$dt, $dt * 10);
	is($out, '20', 'one at a time: 20 removed');
	is($c->{max_concurrent_requests}, 1, 'one at a time: one request in flight at most');
	cmp_ok($dt, '>=', 2.0, 'one at a time: 20 ids take at least 20 x 0.1 s');
}

# ------------------------------------------------------------------
# 2. 5 answered 404 and 3 answered 500, in the same statement
# ------------------------------------------------------------------
{
	my $fids = emu_users(count => 200, orgId => $org, groupIds => [$group], prefix => 'fault');
	my @n404 = @{$fids}[ 10, 50, 90, 130, 170 ];
	my @n500 = @{$fids}[ 20, 100, 199 ];
	emu('DELETE', 'faults');
	emu_fault(
		(
			map {
				{
					kind => 'status',
					status => 404,
					error_code => 'USER_NOT_FOUND',
					detail => "No user with ID $_ exists.",
					match => "/users/$_",
					count => -1
				}
			} @n404
		),
		(
			map { { kind => 'status', status => 500, match => "/users/$_", count => -1 } }
			  @n500));
	emu_reset_counters();
	my ($dt, $out) = timed_psql(
		"SET atlas_users.max_concurrency = 20;\n"
		  . "SELECT user_id || '|' || removed || '|' || coalesce(http_status::text, '') || '|'"
		  . " || coalesce(error_code, '') || '|' || (detail IS NOT NULL)"
		  . " FROM atlas_remove_project_users('$group', " . id_array($fids) . ")");
	my @rows = map { [ split /\|/ ] } split /\n/, $out;
	my %by = map { $_->[0] => $_ } @rows;
	my @errors = grep { $_->[3] ne '' } @rows;
	my @removed = grep { $_->[1] eq 'true' } @rows;
	note sprintf('200 ids with 5 x 404 and 3 x 500: %.3f s', $dt);
	is(scalar @rows, 200, 'faults: one row per id');
	is(scalar @errors, 8, 'faults: exactly 8 rows with an error code');
	is(scalar @removed, 192, 'faults: 192 removed');
	is(join(',', map { "$by{$_}[1]/$by{$_}[2]/$by{$_}[3]/$by{$_}[4]" } @n404),
		join(',', ('false/404/USER_NOT_FOUND/true') x 5),
		'faults: the 5 are not removed, with http_status 404, USER_NOT_FOUND and a detail');
	is(join(',', map { "$by{$_}[1]/$by{$_}[2]/$by{$_}[3]/$by{$_}[4]" } @n500),
		join(',', ('false/500/UNEXPECTED_ERROR/true') x 3),
		'faults: the 3 are not removed, with http_status 500, UNEXPECTED_ERROR and a detail');
	my %bad = map { $_ => 1 } @n404, @n500;
	is(scalar(grep { !$bad{ $_->[0] } && $_->[1] eq 'true' && $_->[2] eq '204' && $_->[3] eq '' }
			@rows),
		192,
		'faults: every other id is removed with 204 and no error');
	my $c = emu_counters();
	is($c->{faults_triggered}, 8, 'faults: each fault answered once (no retry of a 500)');
	is(emu_route_count($c, $route, '204'), 192, 'faults: 192 successful DELETE requests');
	cmp_ok($dt, '<', 2.0, 'faults: the statement still ends in under 2 s');
	is( audit_outcomes($fids),
		'already_absent:5 failed:3 removed:192',
		'faults: every item is audited (404 with missing_ok: already_absent; 500: failed)');
	is( sql("SELECT count(*) FROM atlas_removal_audit WHERE user_id = ANY ("
			  . id_array([@n500]) . ") AND http_status = 500 AND error_code = 'UNEXPECTED_ERROR'"),
		3,
		'faults: the audit rows of the 3 say 500 UNEXPECTED_ERROR');

	# with missing_ok => false a 404 is a failure, still a row
	my $out2 = sql("SET atlas_users.max_concurrency = 20;\n"
		  . "SELECT string_agg(removed || '/' || http_status || '/' || error_code, ',' ORDER BY user_id)"
		  . " FROM atlas_remove_project_users('$group', " . id_array([ @n404[ 0, 1 ] ]) . ", false)");
	is($out2, 'false/404/USER_NOT_FOUND,false/404/USER_NOT_FOUND', 'faults: missing_ok => false, still rows');
	is( audit_outcomes([ @n404[ 0, 1 ] ], " AND at > now() - interval '1 minute' AND outcome = 'failed'"),
		'failed:2',
		'faults: missing_ok => false audits the 404s as failed');
	emu('DELETE', 'faults');
}

# ------------------------------------------------------------------
# 3. org and team bulk removal
# ------------------------------------------------------------------
emu_config(latency_ms => 0);
{
	my $oids = emu_users(count => 5, orgId => $org, groupIds => [$group], prefix => 'orgbulk');
	my $out = sql("SELECT string_agg(removed || '/' || http_status, ',')"
		  . " FROM atlas_remove_org_users('$org', " . id_array($oids) . ")");
	is($out, join(',', ('true/204') x 5), 'org: 5 removed with 204');
	my $gone = grep { !exists emu_user($_)->{orgs}{$org} && !exists emu_user($_)->{projects}{$group} }
	  @$oids;
	is($gone, 5, 'org: the 5 are gone from the org and its project');
	is(audit_outcomes($oids), 'removed:5', 'org: 5 audit rows');
	# again: already absent, still one row each
	$out = sql("SELECT string_agg(removed || '/' || http_status || '/' || coalesce(error_code, ''), ',')"
		  . " FROM atlas_remove_org_users('$org', " . id_array([ @{$oids}[ 0, 1 ] ]) . ")");
	like($out, qr{^false/404/USER_NOT_IN_ORG,false/404/USER_NOT_IN_ORG$}, 'org: again, a 404 row each');

	my $tids = emu_users(count => 4, orgId => $org, teamIds => [$team], prefix => 'teambulk');
	is(scalar(grep { grep { $_ eq $team } @{ emu_user($_)->{teamIds} } } @$tids),
		4, 'team: 4 users in dba-team');
	$out = sql("SELECT string_agg(removed || '/' || http_status, ',')"
		  . " FROM atlas_remove_team_users('$org', '$team', " . id_array($tids) . ")");
	like($out, qr{^(true/2\d\d,){3}true/2\d\d$}, 'team: 4 removed with a 2xx status');
	is(scalar(grep { !grep { $_ eq $team } @{ emu_user($_)->{teamIds} } } @$tids),
		4, 'team: the 4 are gone from dba-team');
	ok(exists emu_user($tids->[0])->{orgs}{$org}, 'team: they stay in the org');
	is(audit_outcomes($tids), 'removed:4', 'team: 4 audit rows');
	is(sql("SELECT count(*) FROM atlas_removal_audit WHERE team_id = '$team' AND user_id = ANY ("
			  . id_array($tids) . ")"), 4, 'team: the audit rows name the team');

	# a project that does not exist: an API error per item, a row each, no raise
	my $missing = '65f0b00000000000000000ff';
	$out = sql("SELECT string_agg(removed || '/' || http_status || '/' || error_code, ',')"
		  . " FROM atlas_remove_project_users('$missing', " . id_array([ @{$tids}[ 0, 1 ] ]) . ")");
	is($out, 'false/404/GROUP_NOT_FOUND,false/404/GROUP_NOT_FOUND',
		'missing project: a GROUP_NOT_FOUND row per id, nothing raised');
	is(sql("SELECT string_agg(outcome, ',') FROM atlas_removal_audit WHERE group_id = '$missing'"),
		'failed,failed', 'missing project: audited as failed, not as already absent');
}

# ------------------------------------------------------------------
# 4. query cancel ends a long bulk call within 1 s
# ------------------------------------------------------------------
{
	my $cids = emu_users(count => 100, orgId => $org, groupIds => [$group], prefix => 'cancel');
	my $s = psql_session($node);
	my ($pid) = session_run($s, 'SELECT pg_backend_pid()');
	session_run($s, 'SET atlas_users.max_concurrency = 8');
	emu_reset_counters();
	emu_fault({ kind => 'hang', match => "DELETE /api/atlas/v2/groups/$group/users/", count => -1 });
	my $t0 = time;
	my $m = session_send($s,
		"SELECT count(*) FROM atlas_remove_project_users('$group', " . id_array($cids) . ")");
	my $hung = wait_counter('faults_triggered', sub { $_[0] >= 8 }, 20);
	is($hung, 8, 'cancel: 8 requests hang at the emulator (max_concurrency 8)');
	sleep(1.0 - (time - $t0)) if time - $t0 < 1.0;
	ok(!defined session_wait($s, 'err', qr/ERROR/, 0), 'cancel: the bulk call is still running');
	my $tc = time;
	sql("SELECT pg_cancel_backend($pid)");
	my $te = session_wait($s, 'err', qr/ERROR:\s+57014/, 30);
	ok(defined $te, 'cancel: the bulk call ended with SQLSTATE 57014') or diag $s->{err};
	my $lat = defined $te ? $te - $tc : 999;
	note sprintf('cancel: ended %.3f s after pg_cancel_backend returned', $lat);
	cmp_ok($lat, '<', 1.0, 'cancel: the bulk call ended within 1 s of the cancel');
	session_wait($s, 'out', qr/^\Q$m\E$/m, 10);
	unlike($s->{out}, qr/^\d+$/m, 'cancel: the cancelled call returned no result');
	is(wait_counter('in_flight_requests', sub { $_[0] == 0 }, 10),
		0, 'cancel: nothing left in flight at the emulator');
	emu('DELETE', 'faults');

	# the same session works afterwards
	my ($out, $err) = session_run($s, 'SELECT pg_backend_pid()');
	is($out, $pid, 'cancel: the same session answers afterwards');
	($out, $err) = session_run($s,
		"SELECT count(*) FILTER (WHERE removed) FROM atlas_remove_project_users('$group', "
		  . id_array([ @{$cids}[ 0 .. 9 ] ]) . ")");
	is($out, '10', 'cancel: the same session removes 10 users afterwards') or diag $err;
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
}

# ------------------------------------------------------------------
# 5. progress NOTICE every 10 s on long runs
# ------------------------------------------------------------------
{
	my $pids = emu_users(count => 12, orgId => $org, groupIds => [$group], prefix => 'progress');
	emu_config(latency_ms => 1000);
	my $s = psql_session($node);
	session_run($s, 'SET atlas_users.max_concurrency = 1');
	my $t0 = time;
	my $m = session_send($s,
		"SELECT count(*) FILTER (WHERE removed) FROM atlas_remove_project_users('$group', "
		  . id_array($pids) . ")");
	my $tn = session_wait($s, 'err', qr/NOTICE:.*atlas_remove_project_users: \d+ of 12 done/, 30);
	my $te = session_wait($s, 'out', qr/^\Q$m\E$/m, 60);
	my $end = $te // time;
	(my $out = $s->{out}) =~ s/^\Q$m\E\n?//m;
	chomp $out;
	ok(defined $tn, 'progress: a NOTICE reports progress') or diag $s->{err};
	my ($done) = $s->{err} =~ /atlas_remove_project_users: (\d+) of 12 done/;
	my @notices = $s->{err} =~ /(\d+ of 12 done)/g;
	note sprintf('progress: NOTICE "%s" %.2f s into a %.2f s run',
		$notices[0] // '-', ($tn // 0) - $t0, $end - $t0);
	cmp_ok(($tn // 0) - $t0, '>=', 9.9, 'progress: the first NOTICE comes after 10 s');
	cmp_ok(($tn // 999) - $t0, '<', 12.0, 'progress: and not much later');
	ok(defined $done && $done >= 7 && $done < 12, "progress: it counts the finished items ($done of 12)");
	is(scalar @notices, 1, 'progress: one NOTICE in a run of 10 to 20 s');
	is($out, '12', 'progress: all 12 removed');
	emu_config(latency_ms => 0);
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
}

$node->stop;
done_testing();
