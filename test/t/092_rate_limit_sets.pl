# 092_rate_limit_sets.pl: pacing by the rate-limit sets Atlas publishes.
#
# - The project users' set has capacity 20, refilled with 20 every second,
#   stated only by listRateLimits (no rate-limit headers): a bulk of 200
#   removals gets at most 1 answer 429 per refill period, and
#   atlas_rate_limits() says the figures came from listRateLimits.
# - Where Atlas does not answer listRateLimits (404), the table's grouping
#   and the headers are the fallback, and atlas_rate_limits() says so.
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
my $period = 1;

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::true, headers => JSON::PP::false,
	sets => { project_users => { capacity => 20, refill_rate => 20, refill_seconds => $period } } });
my $node = atlas_node('rate_limit_sets', rate_limit_sets_ttl => 3600,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub bulk
{
	my ($ids) = @_;
	return sql("SELECT count(*) FILTER (WHERE removed) FROM atlas_remove_project_users('$group', "
		  . id_array($ids) . ")");
}

# ------------------------------------------------------------------
# 1. capacity 20 stated only by listRateLimits
# ------------------------------------------------------------------
my $ids = emu_users(count => 200, orgId => $org, groupIds => [$group], prefix => 'sets');
emu_reset_counters();
is(bulk($ids), 200, 'bulk of 200: every user removed');
my $c = emu_counters();
is(emu_route_count($c, 'GET /api/atlas/v2/rateLimits', '200'), 1, 'listRateLimits read once');
my @log = map { [ $_->{time} - $_->{duration_ms} / 1000, $_->{status} ] } emu_route_log($route);
my %per;
$per{ floor(($_->[0] - $log[0][0]) / $period) }++ for grep { $_->[1] eq '429' } @log;
my ($max) = sort { $b <=> $a } values %per;
cmp_ok($max // 0, '<=', 1, 'at most 1 answer 429 per refill period');
note sprintf('%d removal requests, %d answered 429', scalar @log, scalar grep { $_->[1] eq '429' } @log);
is( sql("SELECT capacity || '/' || refill || '/' || refill_seconds || '/' || source FROM atlas_rate_limits()"
		  . " WHERE bucket LIKE 'project_users_group $group at %'"),
	'20/20/1/listRateLimits', 'atlas_rate_limits(): the listed set, and where its figures came from');

# ------------------------------------------------------------------
# 2. no listRateLimits: the table and the headers
# ------------------------------------------------------------------
emu_config(rate_limits => { listed => JSON::PP::false, headers => JSON::PP::true });
emu('DELETE', 'rate_limits');
sql('SELECT atlas_reset_rate_limits()');
$ids = emu_users(count => 5, orgId => $org, groupIds => [$group], prefix => 'nolist');
is(bulk($ids), 5, 'no listRateLimits (404): the removals still go');
is( sql("SELECT capacity || '/' || source FROM atlas_rate_limits() WHERE bucket LIKE 'project_users $group at %'"),
	'20/headers', 'atlas_rate_limits(): the table\'s set, its capacity from the headers');

$node->stop;
done_testing();
