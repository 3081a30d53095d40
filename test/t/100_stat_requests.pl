# 100_stat_requests.pl: the atlas_stat_requests view, counted against the
# emulator's own counters.
#
# - After atlas_stat_reset(): 3 removals answered 204 and 2 answered 404
#   are rows of their own; a listing's reads, a 503 retry, a 429 and the
#   rate-limit wait it causes are counted.
# - Preloaded, the counts are the cluster's: every session sees the
#   others', and the worker's queued removals add to them.
# - No row names a user id or a credential; the view needs its grant.
# - Not preloaded, the counters are each backend's own.
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

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });

my $node = atlas_node('stats',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.retry_base_ms = 50\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

# "calls|retries" of one endpoint and status.
sub row
{
	my ($endpoint, $status) = @_;
	return sql("SELECT coalesce(sum(calls), 0) || '|' || coalesce(sum(retries), 0)"
		  . " FROM atlas_stat_requests WHERE endpoint = '$endpoint' AND http_status = $status");
}

ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker runs');

my $ids = emu_users(count => 8, orgId => $org, groupIds => [$group], prefix => 'stat');
my @absent = ('b0ffffffffffffffffff0001', 'b0ffffffffffffffffff0002');

my $reset = sql('SELECT atlas_stat_reset()');
is(sql('SELECT count(*) FROM atlas_stat_requests'), '0', 'after a reset the view is empty');
like($reset, qr/^\d{4}-\d\d-\d\d /, 'atlas_stat_reset() returns the time of the reset');

# five removals, each in a session of its own
sql("SELECT atlas_remove_project_user('$group', '$_')") for @$ids[ 0 .. 2 ];
sql("SELECT atlas_remove_project_user('$group', '$_', missing_ok => true)") for @absent;
is(row('remove_project_user', 204), '3|0', '3 removals answered 204');
is(row('remove_project_user', 404), '2|0', '2 removals answered 404');
is(sql("SELECT count(*) FROM atlas_stat_requests WHERE stats_reset <> '$reset'"), '0',
	'every row says when the counters were reset');

# a read, and a retry after a 503
sql("SELECT count(*) FROM atlas_org_users('$org')");
my $reads = emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/users', 200);
is(row('list_org_users', 200), "$reads|0", "the listing's $reads reads are counted");
ok(sql("SELECT bytes_received > 0 AND total_time_ms > 0 AND max_time_ms <= total_time_ms"
	  . " AND last_call >= '$reset' FROM atlas_stat_requests WHERE endpoint = 'list_org_users'"),
	'a read counts its bytes, its time and when it ended');
emu_fault({ kind => 'status', status => 503, count => 1, match => "DELETE /groups/$group/users/" });
sql("SELECT atlas_remove_project_user('$group', '$ids->[3]')");
is(row('remove_project_user', 503), '1|0', 'the 503 is a row of its own');
is(row('remove_project_user', 204), '4|1', 'the retry that succeeded is counted as a retry');

# a 429 holds its bucket back: the next removal waits for the pacing, counted
emu_fault({ kind => 'status', status => 429, retry_after => 1, count => 1,
	match => "DELETE /groups/$group/users/" });
sql("SET atlas_users.max_concurrency = 1; SELECT count(*) FROM atlas_remove_project_users('$group', "
	  . id_array([ @$ids[ 6, 7 ] ]) . ")");
is(row('remove_project_user', 429), '1|0', 'the 429 is a row of its own');
ok(sql("SELECT sum(rate_limit_waits) >= 1 AND sum(rate_limit_wait_ms) >= 500 FROM atlas_stat_requests"
	  . " WHERE endpoint = 'remove_project_user' AND http_status = 204"),
	'the removal held back by the rate limit counts its wait and the time');

# the worker's removals add to the same counters
sql("SELECT atlas_enqueue_remove_project_user('$group', '$ids->[4]')");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM atlas_removal_queue WHERE status = 'done'"),
	'the worker removed the queued user');
is(row('remove_project_user', 204), '7|2', "the worker's removal is counted in the cluster's view");

# names only: no user id, no credential
my $all = sql('SELECT string_agg(concat_ws(\' \', server, host, endpoint), \' \') FROM atlas_stat_requests');
my $leaks = grep { index($all, $_) >= 0 } (@$ids, @absent, $org, $group);
is($leaks, 0, 'no row names a user, project or organization id');

# the grant
sql('CREATE ROLE monitor LOGIN');
my ($rc, $out, $err) = psql_as($node, 'monitor', 'SELECT count(*) FROM atlas_stat_requests');
like($err, qr/42501/, 'a role without the grant cannot read the view');
sql('GRANT SELECT ON atlas_stat_requests TO monitor;'
	  . ' GRANT EXECUTE ON FUNCTION atlas_stat_requests_rows() TO monitor');
($rc, $out, $err) = psql_as($node, 'monitor', 'SELECT count(*) > 0 FROM atlas_stat_requests');
is($out, 't', 'with the documented grant it can');
($rc, $out, $err) = psql_as($node, 'monitor', 'SELECT atlas_stat_reset()');
like($err, qr/42501/, 'but it cannot reset the counters');

sql('SELECT atlas_stat_reset()');
is(sql('SELECT count(*) FROM atlas_stat_requests'), '0', 'a reset zeroes them for every session');
$node->stop;

# not preloaded: each backend counts its own
my $local = atlas_node('stats_local');
is( $local->safe_psql('postgres',
		"SELECT atlas_remove_project_user('$group', '$ids->[5]');"
		  . " SELECT calls FROM atlas_stat_requests WHERE http_status = 204"),
	"t\n1", 'not preloaded, a backend sees its own requests');
is($local->safe_psql('postgres', 'SELECT count(*) FROM atlas_stat_requests'),
	'0', '... and not those of another backend');
$local->stop;

done_testing();
