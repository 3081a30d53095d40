# 051_failover.pl: a failover in the middle of a drain loses no queued
# removal and no committed audit row, and repeats at most
# atlas_users.max_concurrency requests.
#
# A preloaded primary with a streaming standby in synchronous replication
# (synchronous_standby_names = '*', so every commit the worker makes is on
# the standby before it goes on).  1,000 removals are enqueued; while the
# worker drains them (the emulator answers after 20 ms), the primary is
# stopped with -m immediate.  What the standby has at that moment (all it
# received, replayed) is kept; then it is promoted.  Its worker puts back
# the rows left 'running' and finishes every row:
# - all 1,000 rows end 'done', none lost; the rows 'running' at promotion
#   were retried (attempts 2), every other row ran once (attempts 1);
# - every audit row the standby had is on the new primary unchanged, and
#   every user has a 'removed' or 'already_absent' audit row;
# - repeated requests (removal requests at the emulator minus 1,000, the
#   digest challenges aside) are counted, answered 404 (already absent),
#   and are at most the rows left running, at most max_concurrency (8).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $n = 1000;

emu_reset();
# 1,000 removals from one project are this file's subject, not rate limits
emu_config(rate_limits => { enabled => JSON::PP::false });

my $primary = atlas_node('primary',
	init => { allows_streaming => 1 },
	timeout_ms => 30000,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_concurrency = 8\n"
	  . "atlas_users.retry_base_ms = 100\n");
my $standby = atlas_standby($primary, 'standby', "synchronous_standby_names = ''\n");
$primary->append_conf('postgresql.conf', "synchronous_standby_names = '*'\n");
$primary->reload;
ok($primary->poll_query_until('postgres', "SELECT sync_state = 'sync' FROM pg_stat_replication"),
	'the standby replicates synchronously');
ok($primary->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the primary runs the atlas_users worker');

my $ids = emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'failover');
my $in = "user_id = ANY (ARRAY[" . join(',', map { "'$_'" } @$ids) . "])";

# "done|failed|queued|running" for the queue rows of these users.
sub status_counts
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'done') || '|' || count(*) FILTER (WHERE status = 'failed')"
		  . " || '|' || count(*) FILTER (WHERE status = 'queued') || '|' || count(*) FILTER (WHERE status = 'running')"
		  . " FROM atlas_removal_queue WHERE $in");
}

# ------------------------------------------------------------------
# 1. enqueue, and stop the primary in the middle of the drain
# ------------------------------------------------------------------
emu_reset_counters();
emu_config(latency_ms => 20);
is($primary->safe_psql('postgres',
		"SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest(ARRAY["
		  . join(',', map { "'$_'" } @$ids) . "]) u"),
	$n, "$n removals enqueued on the primary");
ok($primary->poll_query_until('postgres',
		"SELECT count(*) >= 150 FROM atlas_removal_queue WHERE status = 'done' AND $in"),
	'the worker is under way (at least 150 done)');
usleep(100_000);
$primary->stop('immediate');
note 'primary stopped with -m immediate';

# ------------------------------------------------------------------
# 2. the standby at promotion: everything it received, replayed
# ------------------------------------------------------------------
ok($standby->poll_query_until('postgres', 'SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()'),
	'the standby replayed all it received');
my $at_promotion = status_counts($standby);
my (undef, undef, $q0, $r0) = split /\|/, $at_promotion;
note "at promotion, done|failed|queued|running: $at_promotion";
cmp_ok($q0 + $r0, '>', 0, 'at promotion: work was left');
my %attempts0 = split /[|\n]/, $standby->safe_psql('postgres',
	"SELECT id || '|' || status || ':' || attempts FROM atlas_removal_queue WHERE $in ORDER BY id");
is(scalar(keys %attempts0), $n, "at promotion: the standby has all $n queue rows");
my @running0 = grep { $attempts0{$_} =~ /^running:/ } keys %attempts0;
my $audit_sql = "SELECT id || '|' || coalesce(user_id, '') || '|' || outcome || '|'"
  . " || coalesce(http_status::text, '') || '|' || attempts FROM atlas_removal_audit ORDER BY id";
my @audit0 = split /\n/, $standby->safe_psql('postgres', $audit_sql);
note 'at promotion: ' . scalar(@audit0) . ' audit rows';

# ------------------------------------------------------------------
# 3. promote; the new primary's worker finishes
# ------------------------------------------------------------------
my $log_offset = -s $standby->logfile;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');
ok($standby->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the promoted server runs the atlas_users worker');
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM atlas_removal_queue WHERE status IN ('queued', 'running') AND $in"),
	'the new worker drained the queue');
emu_config(latency_ms => 0);

is(status_counts($standby), "$n|0|0|0", "all $n rows 'done': none lost, none failed, none stuck running");
my $requeued = 0;
$requeued = $1
  if slurp_file($standby->logfile, $log_offset) =~ /requeued (\d+) removals left running/;
note "the new worker requeued $requeued rows left running";
is($requeued, scalar(@running0), 'the new worker put back exactly the rows running at promotion');
cmp_ok($requeued, '>=', 1, 'at least one row was left running');
cmp_ok($requeued, '<=', 8, 'at most max_concurrency (8) rows were left running');

my %attempts1 = split /[|\n]/, $standby->safe_psql('postgres',
	"SELECT id || '|' || attempts FROM atlas_removal_queue WHERE $in ORDER BY id");
my @retried = grep { $attempts1{$_} == (split /:/, $attempts0{$_})[1] + 1 } @running0;
is(scalar(@retried), scalar(@running0), 'every row running at promotion was retried (one attempt more)');
my @done_again = grep { $attempts0{$_} =~ /^done:(\d+)$/ && $attempts1{$_} != $1 } keys %attempts0;
is(scalar(@done_again), 0, 'no row done at promotion ran again');
is(scalar(grep { $attempts1{$_} == 2 } keys %attempts1) . '|' . scalar(grep { $attempts1{$_} == 1 } keys %attempts1),
	scalar(@running0) . '|' . ($n - @running0), 'the retried rows took 2 attempts, every other row 1');

# every audit row the standby had at promotion is on the new primary, unchanged
is($standby->safe_psql('postgres', 'SELECT atlas_audit_flush()'), 't', 'audit flushed on the new primary');
my %audit1 = map { $_ => 1 } split /\n/, $standby->safe_psql('postgres', $audit_sql);
my @missing = grep { !$audit1{$_} } @audit0;
is(scalar(@missing), 0, 'every audit row committed before the failover (' . scalar(@audit0)
	  . ' rows) is on the new primary, unchanged') or diag join("\n", @missing[ 0 .. 9 ]);
is($standby->safe_psql('postgres',
		"SELECT count(DISTINCT user_id) FROM atlas_removal_audit WHERE outcome IN ('removed', 'already_absent') AND $in"),
	$n, "every one of the $n users has a 'removed' or 'already_absent' audit row");

# repeated requests: counted, answered 404, bounded
my $c = emu_counters();
my $challenges = emu_route_count($c, $route, '401');
my $requests = emu_route_count($c, $route) - $challenges;
my $repeated = $requests - $n;
my %by = %{ $c->{requests_by_route}{$route} // {} };
note sprintf('removal requests=%d for %d users (besides %d digest challenges): repeated=%d; by status: %s',
	$requests, $n, $challenges, $repeated, join(' ', map { "$_=$by{$_}" } sort keys %by));
is(emu_route_count($c, $route, '204'), $n, "$n answers of 204: each user removed once");
is(emu_route_count($c, $route, '404'), $repeated, "the $repeated repeated requests found the user already absent");
cmp_ok($repeated, '>=', 0, 'no removal was skipped');
cmp_ok($repeated, '<=', scalar(@running0), "repeated requests ($repeated) at most the rows left running");
cmp_ok($repeated, '<=', 8, "repeated requests ($repeated) at most max_concurrency (8)");
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'already_absent' AND $in"),
	$repeated, 'each repeated request has its already_absent audit row');

$standby->stop;
done_testing();
