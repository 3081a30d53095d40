# 041_rate_limits.pl: rate-limit pacing shared by every process (issue 11),
# against the emulator's token buckets, counted from its counters and its
# request log.
#
# The project_users bucket holds 20 requests and gives back 10 every 2 s,
# so n removals from one project take at least (n - 20) / 10 x 2 s (the
# bucket's floor time).  With shared_preload_libraries:
# - atlas_remove_project_users with 200 ids: every user removed, at most 1
#   answer 429, within 1.15x of the floor (36 s); atlas_rate_limits()
#   shows the bucket it learned.
# - Two sessions, 100 ids each, at once: the same bounds in all.
# - The worker draining 500 queued removals: at most 1 answer 429 per
#   refill period, every row done; atlas_queue_status shows
#   worker_rate_limited_until while the worker waits.
# - A bulk that waits 12 s for a refill says so in a NOTICE progress line.
# - Without RateLimit headers, pacing learns from the 429 body alone.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use POSIX qw(floor);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my ($capacity, $refill, $period) = (20, 10, 2);

emu_reset();
emu_config(
	rate_limits => {
		enabled => JSON::PP::true,
		headers => JSON::PP::true,
		sets => {
			project_users =>
			  { capacity => $capacity, refill_rate => $refill, refill_seconds => $period }
		}
	});
my $node = atlas_node('ratelimits',
	auth_method => 'service_account',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub users { return emu_users(count => $_[0], orgId => $org, groupIds => [$group], prefix => $_[1]); }

# The least time n requests take through the bucket when it starts full.
sub floor_time { return ($_[0] - $capacity) / $refill * $period; }

# Both sides start over: the emulator's buckets full again, the cluster
# knowing nothing of them.
sub fresh_buckets
{
	emu('DELETE', 'rate_limits');
	sql('SELECT atlas_reset_rate_limits()');
	emu_reset_counters();
}

# The bulk statement: "removed|rows|rows answered 204|what the others said".
sub bulk_sql
{
	return "SELECT count(*) FILTER (WHERE removed) || '|' || count(*) || '|'"
	  . " || count(*) FILTER (WHERE http_status = 204) || '|'"
	  . " || coalesce(string_agg(DISTINCT coalesce(http_status::text, '') || ' '"
	  . " || coalesce(error_code, '') || ' ' || regexp_replace(detail, '[0-9]+ s', 'N s'), '; '), '')"
	  . " FROM atlas_remove_project_users('$group', " . id_array($_[0]) . ")";
}

# The counts of a bulk's result ("removed|rows|204"), noting what the
# rows that were not removed said.
sub bulk_counts
{
	my ($label, $out) = @_;
	my ($counts, $why) = $out =~ /^(\d+\|\d+\|\d+)\|(.*)$/ or return $out;
	note "$label: the rows not removed said: $why" if $why ne '';
	return $counts;
}

# The removal requests of the request log (since the last counter reset):
# [time the bucket was asked, status], oldest first.
sub removal_log
{
	return map { [ $_->{time} - $_->{duration_ms} / 1000, $_->{status} ] } emu_route_log($route);
}

# The 429s per refill period of the bucket, which was made full at the
# first request: (the most 429s in one period, the periods, the 429s).
sub per_period_429
{
	my @log = @_;
	my $t0 = $log[0][0];
	my @t429 = map { $_->[0] } grep { $_->[1] eq '429' } @log;
	my %n;
	$n{ floor(($_ - $t0) / $period) }++ for @t429;
	my ($max) = sort { $b <=> $a } values %n;
	return ($max // 0, floor(($log[-1][0] - $t0) / $period) + 1, scalar @t429);
}

# The model the cluster learned of the project_users bucket.
sub learned
{
	return sql("SELECT capacity || '/' || refill || '/' || refill_seconds FROM atlas_rate_limits()"
		  . " WHERE bucket LIKE 'project_users $group%'");
}

# Note what a run of n removals cost, from the counters and the request
# log; returns (counters, the most 429s in one refill period).
sub show
{
	my ($label, $n, $dt) = @_;
	my $c = emu_counters();
	my @log = removal_log();
	my ($max429, $periods, $n429) = per_period_429(@log);
	note sprintf(
		'%s: %d removals in %.2f s, floor %.1f s, ratio %.3f; 429s %d (rate_limited_by_set %d),'
		  . ' at most %d in one of %d refill periods%s; removal 204=%d; max_concurrent_requests %d',
		$label, $n, $dt, floor_time($n), $dt / floor_time($n), emu_route_count($c, $route, '429'),
		$c->{rate_limited_by_set}{project_users} // 0, $max429, $periods,
		$n429 ? ' (at ' . join(' ', map { sprintf '%.2f', $_->[0] - $log[0][0] } grep { $_->[1] eq '429' } @log) . ' s)' : '',
		emu_route_count($c, $route, '204'), $c->{max_concurrent_requests});
	return ($c, $max429);
}

my $bound = 1.15;

# ------------------------------------------------------------------
# 1. one bulk of 200 ids
# ------------------------------------------------------------------
{
	my $ids = users(200, 'rl');
	fresh_buckets();
	my ($out, $err) = ('', '');
	my $t0 = time;
	$node->psql('postgres', bulk_sql($ids), stdout => \$out, stderr => \$err);
	my $dt = time - $t0;
	my ($c) = show('bulk of 200', 200, $dt);
	note "bulk of 200, NOTICEs:\n$err";
	is(bulk_counts('bulk 200', $out), '200|200|200', 'bulk 200: 200 rows, every user removed with 204');
	cmp_ok(emu_route_count($c, $route, '429'), '<=', 1, 'bulk 200: at most 1 answer 429');
	is($c->{rate_limited_by_set}{project_users} // 0, emu_route_count($c, $route, '429'),
		'bulk 200: every 429 was the project_users bucket');
	cmp_ok($dt, '<=', $bound * floor_time(200),
		sprintf('bulk 200: within %.2fx of the floor time (%.1f s)', $bound, floor_time(200)));
	cmp_ok($dt, '>=', floor_time(200) - 0.5,
		'bulk 200: not faster than the bucket allows (the emulator enforced it)');
	is(learned(), "$capacity/$refill/$period",
		'bulk 200: atlas_rate_limits() shows the bucket learned: 20, 10 every 2 s');
	sql('SELECT atlas_audit_flush(10000)');
	is( sql("SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'removed'"
			  . " AND user_id = ANY (" . id_array($ids) . ")"),
		200,
		'bulk 200: 200 audit rows, removed');
}

# ------------------------------------------------------------------
# 2. two sessions, 100 ids each, at once
# ------------------------------------------------------------------
{
	my $ids = users(200, 'rl2');
	my @s = map { psql_session($node) } 1 .. 2;
	my $ctl = psql_session($node);
	fresh_buckets();
	my ($t0, @res) = sessions_at_once($ctl, \@s,
		[ bulk_sql([ @$ids[ 0 .. 99 ] ]), bulk_sql([ @$ids[ 100 .. 199 ] ]) ]);
	my ($dt) = sort { $b <=> $a } map { $_->[2] } @res;
	my ($c) = show('two sessions of 100 at once', 200, $dt);
	note sprintf('two sessions: they ended %.2f s and %.2f s after the release', $res[0][2], $res[1][2]);
	is(bulk_counts('two sessions, first', $res[0][0]) . ' ' . bulk_counts('two sessions, second', $res[1][0]),
		'100|100|100 100|100|100',
		'two sessions: each removed its 100 users with 204');
	cmp_ok(emu_route_count($c, $route, '429'), '<=', 1, 'two sessions: at most 1 answer 429 in all');
	cmp_ok($dt, '<=', $bound * floor_time(200),
		sprintf('two sessions: both end within %.2fx of the floor time (%.1f s)', $bound, floor_time(200)));
	session_close($_) for @s, $ctl;
}

# ------------------------------------------------------------------
# 3. the worker drains 500 queued removals
# ------------------------------------------------------------------
{
	my $ids = users(500, 'rlq');
	fresh_buckets();
	my $t0 = time;
	sql("SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest("
		  . id_array($ids) . ") u");
	my ($done, $waits, $bucket, $max_wait) = (0, 0, '', 0);
	my $deadline = $t0 + 3 * floor_time(500);
	while (time < $deadline)
	{
		my ($d, $until, $b) = split /\|/,
		  sql("SELECT done || '|' || coalesce(extract(epoch FROM worker_rate_limited_until - now())::text, '')"
			  . " || '|' || coalesce(worker_rate_limit_bucket, '') FROM atlas_queue_status");
		$done = $d;
		if ($until ne '' && $until > 0)
		{
			$waits++;
			$bucket = $b;
			$max_wait = $until if $until > $max_wait;
		}
		last if $done >= 500;
		sleep 0.2;
	}
	my $dt = time - $t0;
	my ($c, $max429) = show('the worker, 500 queued', 500, $dt);
	note sprintf('the worker: atlas_queue_status showed a rate-limit wait in %d samples'
		  . ' (longest %.2f s, bucket %s)', $waits, $max_wait, $bucket);
	is($done, 500, 'worker: all 500 queue rows done');
	is( sql("SELECT count(*) FROM atlas_removal_queue WHERE status <> 'done'"
			  . " AND user_id = ANY (" . id_array($ids) . ")"),
		0,
		'worker: no row failed or left behind');
	is(emu_route_count($c, $route, '204'), 500, 'worker: 500 removals answered 204');
	cmp_ok($max429, '<=', 1, 'worker: at most 1 answer 429 per refill period (request log)');
	cmp_ok($waits, '>', 0, 'worker: atlas_queue_status showed worker_rate_limited_until while it waited');
	like($bucket, qr/^project_users \Q$group\E/, 'worker: and worker_rate_limit_bucket named the bucket');
	is( sql("SELECT worker_rate_limited_until IS NULL FROM atlas_queue_status"),
		't', 'worker: no rate-limit wait shown once the queue is drained')
	  or diag sql("SELECT 'worker_rate_limited_until in ' || (worker_rate_limited_until - now())"
		  . " || '; the bucket blocked until ' || coalesce((SELECT (blocked_until - now())::text"
		  . " FROM atlas_rate_limits() WHERE bucket LIKE 'project_users $group%'), 'no block')"
		  . " FROM atlas_queue_status");
}

# ------------------------------------------------------------------
# 4. a wait longer than the progress interval (10 s) shows in a NOTICE
# ------------------------------------------------------------------
{
	# 10 requests, then 10 more every 12 s: the 11th waits past the 10 s line
	emu_config(rate_limits =>
		  { sets => { project_users => { capacity => 10, refill_rate => 10, refill_seconds => 12 } } });
	my $ids = users(20, 'rlw');
	fresh_buckets();
	my ($out, $err) = ('', '');
	my $t0 = time;
	$node->psql('postgres', bulk_sql($ids), stdout => \$out, stderr => \$err);
	my $dt = time - $t0;
	my $c = emu_counters();
	note sprintf("a 12-second wait: 20 removals in %.2f s, 429s %d; NOTICEs:\n%s",
		$dt, emu_route_count($c, $route, '429'), $err);
	is(bulk_counts('a 12-second wait', $out), '20|20|20', 'long wait: every user removed with 204');
	like($err,
		qr/NOTICE:.*\d+ of 20 done; waiting [1-9][\d.]* s for Atlas's rate limit \(project_users \Q$group\E/,
		'long wait: a NOTICE progress line says how long it waits for the rate limit, and which');
	emu_config(rate_limits => { sets =>
			  { project_users => { capacity => $capacity, refill_rate => $refill, refill_seconds => $period } } });
}

# ------------------------------------------------------------------
# 5. no RateLimit headers: pacing learns from the 429 body
# ------------------------------------------------------------------
{
	emu_config(rate_limits => { headers => JSON::PP::false });
	my $ids = users(100, 'rlnh');
	fresh_buckets();
	my ($out, $err) = ('', '');
	my $t0 = time;
	$node->psql('postgres', bulk_sql($ids), stdout => \$out, stderr => \$err);
	my $dt = time - $t0;
	my ($c) = show('no RateLimit headers, bulk of 100', 100, $dt);
	my $n429 = emu_route_count($c, $route, '429');
	is(bulk_counts('no headers', $out), '100|100|100', 'no headers: every user removed with 204');
	is(learned(), "$capacity/$refill/$period", 'no headers: the bucket was learned from the 429 body');
	cmp_ok($n429, '<=', 8,
		'no headers: at most max_concurrency (8) answers 429, those in flight when the first came');
	cmp_ok($dt, '<=', $bound * floor_time(100),
		sprintf('no headers: within %.2fx of the floor time (%.1f s)', $bound, floor_time(100)));
	emu_config(rate_limits => { headers => JSON::PP::true });
}

$node->stop;
done_testing();
