# 011_queue_counts.pl: what the removal queue costs on the wire, counted
# by the emulator.
#
# - 500 removals enqueued in a rolled-back transaction: 0 requests.
# - 500 committed: exactly 500 successful removal requests, all rows done.
# - Enqueueing an identical pending removal returns the same id; a queued
#   row that is cancelled is never sent.
# - 429 with Retry-After 1 on the first 3 tries: done after 4 attempts,
#   4 audit rows, attempts at least 1 s apart.  A retry that finds the
#   user already gone counts as done; 5xx forever ends 'failed' after
#   atlas_users.max_attempts.
# - max_concurrency 8 with 100 ms latency: between 2 and 8 requests in flight.
# - The worker and two sessions running atlas_process_queue() at once
#   never process one row twice.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';

emu_reset();

my $node = atlas_node('queue',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_concurrency = 8\n"
	  . "atlas_users.max_attempts = 5\n"
	  . "atlas_users.retry_base_ms = 100\n");

ok( $node->poll_query_until('postgres',
		'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the atlas_users worker is running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Enqueue project removals of @$ids in one statement.
sub enqueue_sql
{
	my ($ids) = @_;
	return "SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest("
	  . id_array($ids) . ") u";
}

# Wait until no queue row of these users is queued or running.
sub wait_drained
{
	my ($ids, $timeout) = @_;
	my $t0 = time;
	my $ok = $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM atlas_removal_queue WHERE status IN ('queued', 'running')"
		  . " AND user_id = ANY (" . id_array($ids) . ")");
	return $ok;
}

# Status counts of the queue rows of these users: "done|failed|other".
sub status_counts
{
	my ($ids) = @_;
	return sql("SELECT count(*) FILTER (WHERE status = 'done') || '|' ||"
		  . " count(*) FILTER (WHERE status = 'failed') || '|' ||"
		  . " count(*) FILTER (WHERE status NOT IN ('done', 'failed'))"
		  . " FROM atlas_removal_queue WHERE user_id = ANY (" . id_array($ids) . ")");
}

# Non-401 requests to the removal route in the emulator's request log.
sub removal_log
{
	my $log = emu('GET', 'requests?limit=10000');
	my $reqs = ref $log eq 'HASH' ? $log->{requests} : $log;
	(my $template = $route) =~ s/^DELETE //;
	return grep {
		     $_->{method} eq 'DELETE'
		  && ($_->{route} // '') eq $template
		  && $_->{status} ne '401'
	} @$reqs;
}

sub show
{
	my ($label, $c) = @_;
	note sprintf(
		"%s: removal_requests=%d route_204=%d route_401=%d route_other=%d "
		  . "digest_challenges=%d max_concurrent_requests=%d tcp_connections=%d",
		$label, $c->{removal_requests}, emu_route_count($c, $route, '204'),
		emu_route_count($c, $route, '401'),
		emu_route_count($c, $route) - emu_route_count($c, $route, '204')
		  - emu_route_count($c, $route, '401'),
		$c->{digest_challenges}, $c->{max_concurrent_requests}, $c->{tcp_connections});
}

# ------------------------------------------------------------------
# 1. 500 enqueued in a rolled-back transaction: no request at all
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 500, orgId => $org, groupIds => [$group], prefix => 'rb');
	emu_reset_counters();
	my ($out, $err) = ('', '');
	$node->psql('postgres', "BEGIN;\n" . enqueue_sql($ids) . ";\nROLLBACK;\n",
		stdout => \$out, stderr => \$err, on_error_stop => 1);
	is($out, '500', 'rolled back: 500 removals were enqueued inside the transaction')
	  or diag $err;
	sleep 2;
	is(sql('SELECT atlas_audit_flush()'), 't', 'rolled back: flush returns true');
	is(emu_counter('removal_requests'), 0, 'rolled back: 0 removal requests after 2 s');
	is(emu_counter('requests_total'), 0, 'rolled back: 0 API requests of any kind');
	is(sql('SELECT count(*) FROM atlas_removal_queue WHERE user_id = ANY (' . id_array($ids) . ')'),
		'0', 'rolled back: no queue row left');
	is(sql('SELECT count(*) FROM atlas_removal_audit WHERE user_id = ANY (' . id_array($ids) . ')'),
		'0', 'rolled back: no audit row');
}

# ------------------------------------------------------------------
# 2. 500 committed: exactly 500 successful removal requests
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 500, orgId => $org, groupIds => [$group], prefix => 'commit');
	emu_reset_counters();
	is(sql(enqueue_sql($ids)), '500', 'committed: 500 removals enqueued');
	ok(wait_drained($ids), 'committed: the worker drained the 500 rows');
	is(status_counts($ids), '500|0|0', "committed: all 500 rows ended 'done'");
	is(sql('SELECT count(*) FROM atlas_removal_queue WHERE attempts <> 1 AND user_id = ANY ('
			  . id_array($ids) . ')'),
		'0', 'committed: every row took exactly one attempt');
	my $c = emu_counters();
	show('committed, 500 queued removals', $c);
	is(emu_route_count($c, $route, '204'), 500, 'committed: 500 removal answers of 204');
	is(emu_route_count($c, $route) - emu_route_count($c, $route, '401'),
		500, 'committed: exactly 500 removal requests besides digest challenges');
	is($c->{removal_requests} - emu_route_count($c, $route, '401'),
		500, 'committed: removal_requests minus challenges is 500');
	my @paths = map { $_->{path} } removal_log();
	my %seen;
	$seen{$_}++ for @paths;
	is(scalar(keys %seen), 500, 'committed: 500 distinct user paths in the request log');
	is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'committed: no path requested twice');
	is(sql('SELECT atlas_audit_flush()'), 't', 'committed: flush returns true');
	is(sql("SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'removed' AND user_id = ANY ("
			  . id_array($ids) . ')'),
		'500', "committed: 500 audit rows 'removed'");
	my $left = emu('GET', "state?user=$ids->[-1]");
	ok(!exists $left->{projects}{$group}, 'committed: the last user is gone from the project');
}

# ------------------------------------------------------------------
# 3. identical pending removals share one row; cancelled rows are never sent
# ------------------------------------------------------------------
{
	my ($u1, $u2, $u3) =
	  @{ emu_users(count => 3, orgId => $org, groupIds => [$group], prefix => 'dup') };
	emu_reset_counters();

	# (a) twice in one open transaction, then cancelled before commit
	my $r = sql("BEGIN;\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u1') AS a \\gset\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u1') AS b \\gset\n"
		  . "SELECT :a = :b, atlas_cancel_removal(:a);\n"
		  . "COMMIT;\n");
	is($r, 't|t', 'same transaction: the second enqueue returns the same id; cancel returns true');

	# (b) a committed row kept queued (its first attempt is an hour away)
	my $id = sql("BEGIN;\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u2') AS id \\gset\n"
		  . "UPDATE atlas_removal_queue SET next_attempt_at = now() + interval '1 hour' WHERE id = :id;\n"
		  . "SELECT :id;\n"
		  . "COMMIT;\n");
	is(sql("SELECT atlas_enqueue_remove_project_user('$group', '$u2')"),
		$id, 'committed and queued: enqueueing it again returns the same id');
	is(sql("SELECT count(*) FROM atlas_removal_queue WHERE user_id = '$u2'"),
		'1', 'committed and queued: still one queue row');
	is(sql("SELECT atlas_cancel_removal($id)"), 't', 'committed and queued: cancel returns true');
	my ($out, $err) = ('', '');
	$node->psql('postgres', "SELECT atlas_cancel_removal($id)", stdout => \$out, stderr => \$err);
	is($out, 'f', 'cancelling it again returns false');
	like($err, qr/NOTICE:.*status is cancelled/, 'cancelling it again says why');
	my $rc = $node->psql('postgres', 'SELECT atlas_cancel_removal(999999999)',
		stdout => \$out, stderr => \$err, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:\s+42704/, 'cancelling an unknown id fails with 42704');

	# (c) queued again after a 429 with Retry-After 30, then cancelled
	emu_fault({ kind => 'status', status => 429, retry_after => 30, count => 1,
		match => "/users/$u3" });
	my $id3 = sql("SELECT atlas_enqueue_remove_project_user('$group', '$u3')");
	ok( $node->poll_query_until('postgres',
			"SELECT status = 'queued' AND attempts = 1 AND http_status = 429"
			  . " AND next_attempt_at > now() + interval '20 seconds'"
			  . " FROM atlas_removal_queue WHERE id = $id3"),
		'after 429 Retry-After 30: the row is queued again, its next attempt >= 20 s away');
	is(sql("SELECT atlas_enqueue_remove_project_user('$group', '$u3')"),
		$id3, 'after 429: enqueueing it again returns the same id');
	is(sql("SELECT atlas_cancel_removal($id3)"), 't', 'after 429: cancel returns true');

	sleep 2;
	is(sql("SELECT string_agg(status, ',' ORDER BY id) FROM atlas_removal_queue"
			  . " WHERE user_id IN ('$u1', '$u2', '$u3')"),
		'cancelled,cancelled,cancelled', 'all three rows are cancelled');
	my @sent = map { $_->{path} } removal_log();
	is(scalar(grep { /$u1|$u2/ } @sent), 0, 'the two rows cancelled while queued were never sent');
	is(scalar(grep { /$u3/ } @sent), 1, 'the row cancelled after its 429 was sent once, no more');
	emu('DELETE', 'faults');

	# once done, the same removal makes a new row
	my ($u4) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'again') };
	my $first = sql("SELECT atlas_enqueue_remove_project_user('$group', '$u4')");
	ok(wait_drained([$u4]), 'a fresh removal is done');
	my $second = sql("SELECT atlas_enqueue_remove_project_user('$group', '$u4')");
	isnt($second, $first, 'enqueueing a removal that is already done makes a new row');
	ok(wait_drained([$u4]), 'the second row finished too');
	is(sql("SELECT status || '|' || http_status FROM atlas_removal_queue WHERE id = $second"),
		'done|404', 'the second row (user already gone) is done, with the 404 kept on the row');
}

# ------------------------------------------------------------------
# 3b. enqueue validates at enqueue time; org and team removals
# ------------------------------------------------------------------
{
	my $team = '65f0c0000000000000000001';
	my ($uo, $ut) = @{ emu_users(count => 2, orgId => $org, groupIds => [$group],
		teamIds => [$team], prefix => 'ops') };
	emu_reset_counters();
	my $before = sql('SELECT count(*) FROM atlas_removal_queue');
	for my $case (
		[ "atlas_enqueue_remove_project_user('$group', 'B00000000000000000000001')", 'user_id' ],
		[ "atlas_enqueue_remove_project_user(NULL, '$uo')", 'group_id' ],
		[ "atlas_enqueue_remove_org_user('$org', NULL)", 'user_id' ],
		[ "atlas_enqueue_remove_team_user('$org', 'xyz', '$ut')", 'team_id' ])
	{
		my ($out, $err) = ('', '');
		$node->psql('postgres', "SELECT $case->[0]", stdout => \$out, stderr => \$err,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		like($err, qr/ERROR:\s+22023:.*$case->[1]/, "validation: $case->[0] fails with 22023 naming $case->[1]");
	}
	is(sql('SELECT count(*) FROM atlas_removal_queue'), $before, 'validation: no row queued');

	my $ido = sql("SELECT atlas_enqueue_remove_org_user('$org', '$uo')");
	my $idt = sql("SELECT atlas_enqueue_remove_team_user('$org', '$team', '$ut')");
	ok(wait_drained([ $uo, $ut ]), 'org and team removals: drained');
	is(sql("SELECT string_agg(operation || '|' || status || '|' || http_status, ',' ORDER BY id)"
			  . " FROM atlas_removal_queue WHERE id IN ($ido, $idt)"),
		'remove_org_user|done|204,remove_team_user|done|200',
		'org and team removals: both done');
	my $so = emu('GET', "state?user=$uo");
	ok(!exists $so->{orgs}{$org}, 'org removal: the user is gone from the org');
	my $st = emu('GET', "state?user=$ut");
	ok(!grep({ $_ eq $team } @{ $st->{teamIds} // [] }), 'team removal: the user is gone from the team');
	ok(exists $st->{orgs}{$org}, 'team removal: the user is still in the org');
	is(emu_counter('removal_requests') - emu_counter('digest_challenges'), 2,
		'org and team removals: 2 removal requests besides digest challenges');
}

# ------------------------------------------------------------------
# 4. 429 with Retry-After 1 on the first 3 tries
# ------------------------------------------------------------------
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'rl') };
	emu_reset_counters();
	emu_fault({ kind => 'status', status => 429, retry_after => 1, count => 3,
		match => "/users/$u" });
	my $id = sql("SELECT atlas_enqueue_remove_project_user('$group', '$u')");
	ok(wait_drained([$u]), '429 x3: the row finished');
	is(sql("SELECT status || '|' || attempts || '|' || http_status FROM atlas_removal_queue WHERE id = $id"),
		'done|4|204', "429 x3: the row is 'done' after 4 attempts, last answer 204");
	is(sql('SELECT atlas_audit_flush()'), 't', '429 x3: flush returns true');
	is(sql("SELECT string_agg(outcome || ':' || http_status || ':' || coalesce(error_code, ''), ','"
			  . " ORDER BY at) FROM atlas_removal_audit WHERE user_id = '$u'"),
		'failed:429:RATE_LIMITED,failed:429:RATE_LIMITED,failed:429:RATE_LIMITED,removed:204:',
		'429 x3: 4 audit rows, three 429s then removed');
	my @gaps = split /\n/, sql(
		"SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) FROM atlas_removal_audit"
		  . " WHERE user_id = '$u' ORDER BY at OFFSET 1");
	note '429 x3: gaps between attempts (audit at): ' . join(', ', map { sprintf '%.3f s', $_ } @gaps);
	is(scalar @gaps, 3, '429 x3: 3 gaps');
	is(scalar(grep { $_ >= 1.0 } @gaps), 3, '429 x3: every gap (audit at) is >= 1 s (Retry-After)');

	my @t = map { $_->{time} } grep { $_->{path} =~ /$u/ } removal_log();
	my @egaps = map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
	note '429 x3: gaps between attempts (emulator log): '
	  . join(', ', map { sprintf '%.3f s', $_ } @egaps);
	is(scalar @t, 4, '429 x3: 4 non-challenge requests for the user in the emulator log');
	# the log's times are rounded to the millisecond
	is(scalar(grep { $_ >= 0.999 } @egaps), 3, '429 x3: every gap (emulator log) is >= 1 s');
	is(emu('GET', 'faults')->{faults}[0]{hits} // 3, 3, '429 x3: the fault was hit 3 times');
	emu('DELETE', 'faults');
}

# ------------------------------------------------------------------
# 5. a retry that finds the user gone is done; 5xx forever ends failed
# ------------------------------------------------------------------
{
	my ($ua, $uf) = @{ emu_users(count => 2, orgId => $org, groupIds => [$group], prefix => 'rt') };
	emu_reset_counters();
	# the first try removes the user, then answers 503
	emu_fault({ kind => 'status', status => 503, count => 1, process => JSON::PP::true,
		match => "/users/$ua" });
	# every try answers 500
	emu_fault({ kind => 'status', status => 500, count => -1, match => "/users/$uf" });
	my $ida = sql("SELECT atlas_enqueue_remove_project_user('$group', '$ua')");
	my $idf = sql("SELECT atlas_enqueue_remove_project_user('$group', '$uf')");
	ok(wait_drained([ $ua, $uf ]), 'retries: both rows finished');
	is(sql("SELECT status || '|' || attempts FROM atlas_removal_queue WHERE id = $ida"),
		'done|2', "retries: the user already gone on the retry counts as done (2 attempts)");
	is(sql("SELECT status || '|' || attempts || '|' || http_status FROM atlas_removal_queue WHERE id = $idf"),
		'failed|5|500', "retries: 500 forever ends 'failed' after max_attempts = 5");
	is(sql('SELECT atlas_audit_flush()'), 't', 'retries: flush returns true');
	is(sql("SELECT string_agg(outcome || ':' || http_status, ',' ORDER BY at)"
			  . " FROM atlas_removal_audit WHERE user_id = '$ua'"),
		'failed:503,already_absent:404', 'retries: audit rows 503 then already_absent');
	is(sql("SELECT count(*) FILTER (WHERE outcome = 'failed' AND http_status = 500) || '|' || count(*)"
			  . " FROM atlas_removal_audit WHERE user_id = '$uf'"),
		'5|5', 'retries: 5 audit rows of 500 for the row that failed');
	my $c = emu_counters();
	show('retries', $c);
	emu('DELETE', 'faults');
}

# ------------------------------------------------------------------
# 6. concurrency: at most max_concurrency (8) requests in flight
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 64, orgId => $org, groupIds => [$group], prefix => 'conc');
	emu_reset_counters();
	emu_config(latency_ms => 100);
	is(sql(enqueue_sql($ids)), '64', 'concurrency: 64 removals enqueued');
	ok(wait_drained($ids), 'concurrency: drained');
	emu_config(latency_ms => 0);
	is(status_counts($ids), '64|0|0', "concurrency: all 64 rows 'done'");
	my $c = emu_counters();
	show('concurrency, 64 removals, latency 100 ms, max_concurrency 8', $c);
	cmp_ok($c->{max_concurrent_requests}, '>', 1, 'concurrency: more than one request in flight');
	cmp_ok($c->{max_concurrent_requests}, '<=', 8, 'concurrency: never more than 8 in flight');
	is(emu_route_count($c, $route, '204'), 64, 'concurrency: 64 answers of 204');
}

# ------------------------------------------------------------------
# 7. the worker and two atlas_process_queue() sessions never share a row
# ------------------------------------------------------------------
{
	my $n = 300;
	my $ids = emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'race');
	emu_reset_counters();
	emu_config(latency_ms => 20);

	my $script = "SELECT atlas_process_queue(50);\n" x 12;
	my @sessions;
	# the sessions start right after the enqueue commits, while the worker runs
	is(sql(enqueue_sql($ids)), $n, "race: $n removals enqueued");
	for my $i (1 .. 2)
	{
		my ($in, $out, $err) = ($script, '', '');
		my $h = IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
			'<', \$in, '>', \$out, '2>', \$err);
		push @sessions, { h => $h, out => \$out, err => \$err };
	}
	my $by_sessions = 0;
	for my $s (@sessions)
	{
		$s->{h}->finish;
		is($s->{h}->result(0), 0, 'race: a psql session of atlas_process_queue(50) ran without error')
		  or diag ${ $s->{err} };
		$by_sessions += $_ for split /\n/, ${ $s->{out} };
	}
	ok(wait_drained($ids), 'race: drained');
	emu_config(latency_ms => 0);
	note "race: the two sessions processed $by_sessions rows, the worker "
	  . ($n - $by_sessions);
	is(status_counts($ids), "$n|0|0", "race: all $n rows 'done'");
	is(sql('SELECT count(*) FROM atlas_removal_queue WHERE attempts <> 1 AND user_id = ANY ('
			  . id_array($ids) . ')'),
		'0', 'race: every row was claimed exactly once (attempts = 1)');
	my $c = emu_counters();
	show("race, $n removals, worker + 2 sessions", $c);
	is(emu_route_count($c, $route, '204'), $n, "race: exactly $n answers of 204");
	is(emu_route_count($c, $route) - emu_route_count($c, $route, '401'),
		$n, "race: exactly $n removal requests besides digest challenges");
	my %seen;
	$seen{ $_->{path} }++ for removal_log();
	is(scalar(keys %seen), $n, "race: $n distinct user paths in the request log");
	is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'race: no user path requested twice');
	is(sql('SELECT atlas_audit_flush()'), 't', 'race: flush returns true');
	is(sql("SELECT count(*) FROM atlas_removal_audit WHERE user_id = ANY (" . id_array($ids) . ')'),
		$n, "race: exactly $n audit rows");
}

$node->stop;
done_testing();
