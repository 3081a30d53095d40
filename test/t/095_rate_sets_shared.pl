# 095_rate_sets_shared.pl: listRateLimits read by the worker, and shared.
#
# The project users' set has capacity 20, refilled with 20 every second,
# stated only by listRateLimits (no rate-limit headers).  With the library
# preloaded:
# - the worker draining 60 queued removals reads listRateLimits once (on
#   first use of the host, between its runs) and paces by it: at most 1
#   answer 429 per refill period;
# - two sessions then remove people at the same host: what the worker
#   read serves them (shared memory), 1 listRateLimits request in total;
# - after atlas_users.rate_limit_sets_ttl the worker reads it again: 2.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use POSIX qw(floor);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $sets_route = 'GET /api/atlas/v2/rateLimits';
my $period = 1;

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::true, headers => JSON::PP::false,
	sets => { project_users => { capacity => 20, refill_rate => 20, refill_seconds => $period } } });
my $node = atlas_node('rate_sets_shared', rate_limit_sets_ttl => 3600,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_attempts = 10\n"
	  . "atlas_users.retry_base_ms = 100\n");
ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker is running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Enqueue removals of the ids and wait until the worker has run them all.
sub drain
{
	my ($ids) = @_;
	sql("SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest("
		  . id_array($ids) . ") u");
	return $node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE status = 'done') = " . scalar(@$ids)
		  . " FROM atlas_removal_queue WHERE user_id = ANY (" . id_array($ids) . ")");
}

sub sets_reads { return emu_route_count(emu_counters(), $sets_route, '200'); }

# ------------------------------------------------------------------
# 1. the worker reads listRateLimits once, and paces by it
# ------------------------------------------------------------------
my $ids = emu_users(count => 60, orgId => $org, groupIds => [$group], prefix => 'wsets');
emu_reset_counters();
ok(drain($ids), 'the worker removed all 60 queued users');
is(sets_reads(), 1, 'the worker read listRateLimits once');
my @log = map { [ $_->{time} - $_->{duration_ms} / 1000, $_->{status} ] } emu_route_log($route);
my %per;
$per{ floor(($_->[0] - $log[0][0]) / $period) }++ for grep { $_->[1] eq '429' } @log;
my ($max) = sort { $b <=> $a } values %per;
cmp_ok($max // 0, '<=', 1, 'the worker: at most 1 answer 429 per refill period');
note sprintf('%d removal requests, %d answered 429', scalar @log, scalar grep { $_->[1] eq '429' } @log);

# ------------------------------------------------------------------
# 2. two sessions: what the worker read serves them
# ------------------------------------------------------------------
for my $s (1 .. 2)
{
	my $more = emu_users(count => 5, orgId => $org, groupIds => [$group], prefix => "sess$s");
	is( sql("SELECT count(*) FILTER (WHERE removed) FROM atlas_remove_project_users('$group', "
			  . id_array($more) . ")"),
		5, "session $s: 5 users removed");
}
is(sets_reads(), 1, 'two sessions and the worker: 1 listRateLimits request in total');
is( sql("SELECT source FROM atlas_rate_limits() WHERE bucket LIKE 'project_users_group $group at %'"),
	'listRateLimits', 'a session paces by the set the worker read');

# ------------------------------------------------------------------
# 3. after the TTL the worker reads it again
# ------------------------------------------------------------------
sql('ALTER SYSTEM SET atlas_users.rate_limit_sets_ttl = 1');
sql('SELECT pg_reload_conf()');
sleep 2;
$ids = emu_users(count => 5, orgId => $org, groupIds => [$group], prefix => 'wttl');
ok(drain($ids), 'the worker removed 5 more queued users');
is(sets_reads(), 2, 'past the TTL: the worker read listRateLimits again (2 in total)');

$node->stop;
done_testing();
