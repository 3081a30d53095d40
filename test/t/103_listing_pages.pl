# 103_listing_pages.pl: a listing reads its pages side by side, counted by
# the emulator (times belong to bench/listings.py).
#
# An emulated organization of 20,000 users, 20 ms added per answer:
#   - atlas_org_users reads exactly 40 pages of 500, at most
#     atlas_users.max_concurrency at once (and more than one), and returns
#     each user once;
#   - with max_concurrency 1, one page at a time, the same rows;
#   - a failing page fails the listing with its error.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node('pages', extra_conf => "atlas_users.max_concurrency = 4\n");
my $sc = emu('POST', 'scale', { users => 20000, projects => 2, teams => 2 });
my $org = $sc->{orgId};
my $route = 'GET /api/atlas/v2/orgs/{orgId}/users';

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Read the users with $set; returns "rows|distinct ids", pages, peak in flight.
sub read_users
{
	my ($set) = @_;
	emu_config(latency_ms => 20);
	emu_reset_counters();
	my $r = sql("$set; SELECT count(*) || '|' || count(DISTINCT id) FROM atlas_org_users('$org')");
	my $c = emu_counters();
	emu_config(latency_ms => 0);
	return ($r, emu_route_count($c, $route, 200), $c->{max_concurrent_requests});
}

my ($rows, $pages, $peak) = read_users('SET atlas_users.max_concurrency = 4');
is($rows, '20000|20000', 'side by side: each of the 20,000 users once');
is($pages, 40, 'side by side: exactly 40 pages');
cmp_ok($peak, '<=', 4, 'side by side: at most max_concurrency pages at once');
cmp_ok($peak, '>', 1, 'side by side: more than one page at once');

($rows, $pages, $peak) = read_users('SET atlas_users.max_concurrency = 1');
is("$rows $pages $peak", '20000|20000 40 1', 'max_concurrency 1: the same rows, one page at a time');

# a failing page fails the listing
emu_fault({ kind => 'status', status => 500, count => 1, match => 'pageNum=3' });
my ($rc, $out, $err) = psql_as($node, 'postgres', "SELECT count(*) FROM atlas_org_users('$org')");
like($err, qr/ERROR:\s+\w{5}:.*500/s, 'a page answered 500 fails the listing with its error');
$node->stop;
done_testing();
