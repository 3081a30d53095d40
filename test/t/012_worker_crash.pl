# 012_worker_crash.pl: the queue loses nothing when its worker dies.
#
# - SIGKILL of the worker in the middle of 1,000 queued removals: the
#   postmaster restarts everything (crash recovery); the restarted worker
#   requeues the rows left 'running' and drains the rest.  Every row ends
#   'done' (none failed, none stuck running).  The test reports how many
#   requests were repeated (removal is idempotent: at-least-once).
# - SIGTERM (pg_terminate_backend) while a batch waits on a hung request:
#   the worker exits within 2 s, not at the request timeout, and after
#   its restart every row still ends 'done'.
# - SIGHUP in the middle of a batch: the same worker carries on, and a
#   reloaded atlas_users.max_concurrency applies to the next batches.
# - DROP DATABASE ... WITH (FORCE) of the worker's database while it
#   waits on a hung request: the drop succeeds at once; the worker then
#   backs off between connection attempts, and serves the database again
#   once it is re-created.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';

emu_reset();
# 1,260 removals from one project within a minute are more than the
# emulator's token bucket for project users allows (1,200 a minute, as
# Atlas); this file tests crashes and restarts, not rate-limit pacing.
emu_config(rate_limits => { enabled => JSON::PP::false });

my $node = atlas_node('crash',
	timeout_ms => 30000,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_concurrency = 8\n"
	  . "atlas_users.retry_base_ms = 100\n"
	  # the test framework turns this off; a killed worker must restart everything
	  . "restart_after_crash = on\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub enqueue_sql
{
	my ($ids) = @_;
	return "SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest("
	  . id_array($ids) . ") u";
}

# "done|failed|queued|running" for the queue rows of these users.
sub status_counts
{
	my ($ids) = @_;
	return sql("SELECT count(*) FILTER (WHERE status = 'done') || '|' ||"
		  . " count(*) FILTER (WHERE status = 'failed') || '|' ||"
		  . " count(*) FILTER (WHERE status = 'queued') || '|' ||"
		  . " count(*) FILTER (WHERE status = 'running')"
		  . " FROM atlas_removal_queue WHERE user_id = ANY (" . id_array($ids) . ")");
}

sub wait_drained
{
	my ($ids) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM atlas_removal_queue WHERE status IN ('queued', 'running')"
		  . " AND user_id = ANY (" . id_array($ids) . ")");
}

sub worker_pid
{
	return sql('SELECT worker_pid FROM atlas_queue_status');
}

ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the atlas_users worker is running');

# ------------------------------------------------------------------
# 1. SIGKILL in the middle of 1,000 queued removals
# ------------------------------------------------------------------
{
	my $n = 1000;
	my $ids = emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'kill');
	emu_reset_counters();
	emu_config(latency_ms => 20);

	is(sql(enqueue_sql($ids)), $n, "SIGKILL: $n removals enqueued");
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) >= 100 FROM atlas_removal_queue WHERE status = 'done'"
			  . " AND user_id = ANY (" . id_array($ids) . ")"),
		'SIGKILL: the worker is under way (at least 100 done)');
	usleep(300_000);
	my $pid = worker_pid();
	my $before = status_counts($ids);
	my $log_offset = -s $node->logfile;
	ok(kill('KILL', $pid), "SIGKILL: killed the worker (pid $pid)");
	note "SIGKILL: done|failed|queued|running just before the kill: $before";
	my (undef, undef, $q, $r) = split /\|/, $before;
	cmp_ok($q + $r, '>', 0, 'SIGKILL: the worker was killed with work left');

	ok($node->wait_for_log(qr/terminating any other active server processes|all server processes terminated/,
			$log_offset),
		'SIGKILL: the postmaster noticed and reinitialised (crash recovery)');
	ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
		'SIGKILL: the node is back and a worker is running again');
	isnt(worker_pid(), $pid, 'SIGKILL: it is a new worker');
	ok(wait_drained($ids), 'SIGKILL: the restarted worker drained the queue');
	emu_config(latency_ms => 0);

	is(status_counts($ids), "$n|0|0|0",
		"SIGKILL: all $n rows 'done', none failed, none queued or stuck running");

	# rows are recorded as they finish: only those in flight at the kill run
	# again, at most atlas_users.max_concurrency (8)
	my $requeued = 0;
	$requeued = $1
	  if slurp_file($node->logfile, $log_offset) =~ /requeued (\d+) removals left running/;
	note "SIGKILL: the restarted worker requeued $requeued rows left running";
	cmp_ok($requeued, '>=', 1, 'SIGKILL: the restarted worker requeued the rows left running');
	cmp_ok($requeued, '<=', 8, 'SIGKILL: at most max_concurrency (8) rows were left running');

	my $c = emu_counters();
	my $all = emu_route_count($c, $route);
	my $challenges = emu_route_count($c, $route, '401');
	my $ok204 = emu_route_count($c, $route, '204');
	my $not_found = emu_route_count($c, $route, '404');
	my $requests = $all - $challenges;
	my %by = %{ $c->{requests_by_route}{$route} // {} };
	note sprintf(
		'SIGKILL: removal requests=%d (besides %d digest challenges): 204=%d 404=%d; '
		  . 'repeated requests=%d; by status: %s',
		$requests, $challenges, $ok204, $not_found, $requests - $n,
		join(' ', map { "$_=$by{$_}" } sort keys %by));
	cmp_ok($requests, '>=', $n, "SIGKILL: at least $n removal requests in all");
	note 'SIGKILL: rows that took more than one attempt: '
	  . sql("SELECT count(*) FROM atlas_removal_queue WHERE user_id = ANY (" . id_array($ids) . ")"
		  . " AND attempts > 1");

	is(sql('SELECT atlas_audit_flush()'), 't', 'SIGKILL: flush returns true');
	is(sql("SELECT count(DISTINCT user_id) FROM atlas_removal_audit WHERE outcome IN ('removed', 'already_absent')"
			  . " AND user_id = ANY (" . id_array($ids) . ")"),
		$n, "SIGKILL: every one of the $n users has a 'removed' or 'already_absent' audit row");
	note 'SIGKILL: audit outcomes: '
	  . join(', ', split /\n/, sql("SELECT outcome || '=' || count(*) FROM atlas_removal_audit"
			  . " WHERE user_id = ANY (" . id_array($ids) . ") GROUP BY outcome ORDER BY outcome"));
	my $st = emu('GET', "state?user=$ids->[0]");
	ok(!exists $st->{projects}{$group}, 'SIGKILL: the first user is gone from the project');
	$st = emu('GET', "state?user=$ids->[-1]");
	ok(!exists $st->{projects}{$group}, 'SIGKILL: the last user is gone from the project');
}

# ------------------------------------------------------------------
# 2. SIGTERM while a batch waits on a hung request
# ------------------------------------------------------------------
{
	my $n = 200;
	my $ids = emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'term');
	emu_reset_counters();
	# one request of the batch hangs (up to 600 s; the call timeout is 30 s)
	my $victim = $ids->[5];
	emu_fault({ kind => 'hang', seconds => 600, count => 1, match => "/users/$victim" });
	my $pid = worker_pid();
	my $log_offset = -s $node->logfile;

	is(sql(enqueue_sql($ids)), $n, "SIGTERM: $n removals enqueued");
	ok( $node->poll_query_until('postgres',
			"SELECT status = 'running' FROM atlas_removal_queue WHERE user_id = '$victim'"
			  . " AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1"),
		'SIGTERM: the hung removal is running');
	# wait until the emulator holds the request
	my $held = 0;
	for (1 .. 100)
	{
		my $f = emu('GET', 'faults');
		my $rules = ref $f eq 'HASH' ? $f->{faults} : $f;
		if (($rules->[0]{hits} // 0) >= 1) { $held = 1; last; }
		usleep(100_000);
	}
	ok($held, 'SIGTERM: the emulator holds the hung request: the worker is in the middle of a batch');
	usleep(200_000);
	is(worker_pid(), $pid, 'SIGTERM: still the same worker');

	my $t0 = time;
	is(sql("SELECT pg_terminate_backend($pid)"), 't', 'SIGTERM: pg_terminate_backend(worker_pid)');
	my $gone = 0;
	while (time - $t0 < 10)
	{
		if (sql("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0'
			&& !kill(0, $pid))
		{
			$gone = 1;
			last;
		}
		usleep(20_000);
	}
	my $took = time - $t0;
	note sprintf('SIGTERM: the worker exited %.3f s after pg_terminate_backend', $took);
	ok($gone, 'SIGTERM: the worker exited');
	cmp_ok($took, '<', 2, 'SIGTERM: within 2 s (the hung request would have taken 30 s)');
	ok(!$node->log_contains(qr/terminating any other active server processes/, $log_offset),
		'SIGTERM: no crash restart of the other processes');

	ok($node->poll_query_until('postgres',
			"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM atlas_queue_status"),
		'SIGTERM: the postmaster started a new worker');
	emu('DELETE', 'faults');
	ok(wait_drained($ids), 'SIGTERM: the new worker drained the queue');
	is(status_counts($ids), "$n|0|0|0", "SIGTERM: all $n rows 'done'");
	is(sql("SELECT status || '|' || attempts FROM atlas_removal_queue WHERE user_id = '$victim'"),
		'done|2', 'SIGTERM: the hung removal was done on its second attempt');
	my $c = emu_counters();
	my $requests = emu_route_count($c, $route) - emu_route_count($c, $route, '401');
	my %by = %{ $c->{requests_by_route}{$route} // {} };
	note sprintf('SIGTERM: removal requests=%d for %d rows (repeated %d); by status: %s',
		$requests, $n, $requests - $n, join(' ', map { "$_=$by{$_}" } sort keys %by));
	cmp_ok($requests, '>=', $n, "SIGTERM: at least $n removal requests");
	is(emu_route_count($c, $route, '204'), $n, "SIGTERM: $n answers of 204 (the hung request never removed its user)");
}

# ------------------------------------------------------------------
# 3. SIGHUP in the middle of a batch: the worker stays, the new setting
#    applies to the following batches
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 40, orgId => $org, groupIds => [$group], prefix => 'hup');
	my $victim = $ids->[3];
	emu('DELETE', 'faults');
	emu_fault({ kind => 'status', status => 204, latency_ms => 1500, count => 1,
		match => "/users/$victim" });
	emu_reset_counters();
	my $pid = worker_pid();
	is(sql(enqueue_sql([$victim])), 1, 'SIGHUP: a slow removal enqueued');
	ok( $node->poll_query_until('postgres',
			"SELECT status = 'running' FROM atlas_removal_queue WHERE user_id = '$victim'"),
		'SIGHUP: it is running');
	sql('ALTER SYSTEM SET atlas_users.max_concurrency = 2');
	sql('SELECT pg_reload_conf()');
	ok(wait_drained([$victim]), 'SIGHUP: the batch under way finished');
	is(worker_pid(), $pid, 'SIGHUP: the same worker (a reload does not end it)');
	is(sql("SELECT status FROM atlas_removal_queue WHERE user_id = '$victim'"),
		'done', 'SIGHUP: the slow removal is done');

	emu('DELETE', 'faults');
	emu_config(latency_ms => 50);
	emu_reset_counters();
	my @rest = grep { $_ ne $victim } @$ids;
	is(sql(enqueue_sql(\@rest)), scalar @rest, 'SIGHUP: ' . scalar(@rest) . ' more enqueued');
	ok(wait_drained(\@rest), 'SIGHUP: drained');
	emu_config(latency_ms => 0);
	my $c = emu_counters();
	note "SIGHUP: max_concurrent_requests after max_concurrency = 2: $c->{max_concurrent_requests}";
	cmp_ok($c->{max_concurrent_requests}, '<=', 2,
		'SIGHUP: the reloaded max_concurrency (2) applies to the next batches');
	is(worker_pid(), $pid, 'SIGHUP: still the same worker');
	sql('ALTER SYSTEM RESET atlas_users.max_concurrency');
	sql('SELECT pg_reload_conf()');
}

$node->stop;

# ------------------------------------------------------------------
# 4. DROP DATABASE ... WITH (FORCE) of the worker's database in the
#    middle of a batch
# ------------------------------------------------------------------
{
	# the worker waits for database offboard (its starts fail, with a growing pause, until it exists)
	my $dnode = atlas_node('dropdb',
		extra_conf => "shared_preload_libraries = 'atlas_users'\n"
		  . "atlas_users.database = 'offboard'\n");

	# Create database offboard with the extension; true once the worker serves it.
	my $create_offboard = sub {
		$dnode->safe_psql('postgres', 'CREATE DATABASE offboard');
		$dnode->safe_psql('offboard', 'CREATE EXTENSION atlas_users');
		return $dnode->poll_query_until('offboard',
			"SELECT worker_pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_activity"
			  . " WHERE pid = worker_pid AND datname = 'offboard') FROM atlas_queue_status");
	};
	ok($create_offboard->(), 'DROP DATABASE: the worker serves database offboard');

	my $ids = emu_users(count => 20, orgId => $org, groupIds => [$group], prefix => 'drop');
	my $victim = $ids->[2];
	emu('DELETE', 'faults');
	emu_fault({ kind => 'hang', seconds => 600, count => 1, match => "/users/$victim" });
	$dnode->safe_psql('offboard',
		"SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest("
		  . "ARRAY[" . join(',', map { "'$_'" } @$ids) . "]) u");
	my $held = 0;
	for (1 .. 100)
	{
		my $f = emu('GET', 'faults');
		my $rules = ref $f eq 'HASH' ? $f->{faults} : $f;
		if (($rules->[0]{hits} // 0) >= 1) { $held = 1; last; }
		usleep(100_000);
	}
	ok($held, 'DROP DATABASE: the worker is in the middle of a batch (request held)');
	my $log_offset = -s $dnode->logfile;
	my $t0 = time;
	my ($out, $err) = ('', '');
	my $rc = $dnode->psql('postgres', 'DROP DATABASE offboard WITH (FORCE)',
		stdout => \$out, stderr => \$err);
	my $took = time - $t0;
	note sprintf('DROP DATABASE: took %.3f s', $took);
	is($rc, 0, 'DROP DATABASE offboard WITH (FORCE) succeeds while the worker waits on Atlas')
	  or diag $err;
	cmp_ok($took, '<', 3, 'DROP DATABASE: within 3 s (the hung request would take 600 s)');
	# the restarted worker finds no database; it backs off (1 s, 2 s, 4 s,
	# ...) instead of failing every second
	sleep 12;
	my $log = slurp_file($dnode->logfile, $log_offset);
	my $fatal = () = $log =~ /FATAL:.*database "offboard" does not exist/g;
	my $pauses = () = $log =~
	  /atlas_users worker could not connect to database "offboard" on its last \d+ starts?; next attempt in \d+ s/g;
	note "DROP DATABASE: in the 12 s after the drop, the log has $fatal 'database \"offboard\" does not exist'"
	  . " lines and $pauses backoff lines";
	cmp_ok($fatal, '>=', 1, 'after the drop: the restarted worker tries the database again');
	cmp_ok($fatal, '<=', 5,
		'after the drop: at most 5 connection attempts in 12 s (restarts every second would make 11 or 12)');
	cmp_ok($pauses, '>=', 2, 'after the drop: the worker logs each pause and the next attempt');
	like($log, qr/HINT:\s+Create the database and run CREATE EXTENSION atlas_users in it/,
		'after the drop: the pause says how to fix it');

	# the database comes back: the worker serves it from its next attempt
	my $t1 = time;
	ok($create_offboard->(), 'DROP DATABASE: the worker serves the re-created database');
	note sprintf('DROP DATABASE: the worker served the re-created database %.1f s after it was created',
		time - $t1);
	emu('DELETE', 'faults');
	$dnode->stop;
}

done_testing();
