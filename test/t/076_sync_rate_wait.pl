# 076_sync_rate_wait.pl: a synchronous call never waits longer than
# atlas_users.rate_limit_max_wait (issue 17).
#
#   - a 429 whose Retry-After (86,400 s) is longer than the setting fails at
#     once with 53000, naming the wait, after exactly 1 request (before:
#     the statement waited the full Retry-After);
#   - a Retry-After within the setting is still waited and retried;
#   - a token endpoint answering 429 with a long Retry-After fails at once,
#     and so does a later call in another session, without a token request;
#   - the queue keeps its way: the row is queued again, its next attempt a
#     day away, with 1 request sent.
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
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';

emu_reset();
my $ids = emu_users(count => 10, orgId => $org, groupIds => [$group], prefix => 'ratewait');
my $node = atlas_node('ratewait',
	auth_method => 'digest',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.rate_limit_max_wait = '30s'\n");
sub sql { return $node->safe_psql('postgres', $_[0]); }
ok($node->poll_query_until('postgres', 'SELECT pid IS NOT NULL FROM atlas_worker_status()'),
	'the worker is running');

# One removal under a fault: (stdout, stderr, seconds, DELETEs answered 429 or 204).
sub faulted
{
	my ($user, $fault, $sql) = @_;
	sql('SELECT atlas_reset_rate_limits()');
	emu_reset_counters();
	emu_fault($fault);
	my $t0 = time;
	my ($rc, $o, $e) = psql_as($node, 'postgres',
		$sql // "SELECT atlas_remove_project_user('$group', '$user')");
	my $dt = time - $t0;
	emu('DELETE', 'faults');
	# the requests Atlas answered (not digest's 401 challenges)
	my $c = emu_counters();
	my $n = emu_route_count($c, $route, 429) + emu_route_count($c, $route, 204);
	return ($o, $e, $dt, $n);
}

# 1. a Retry-After of a day: fails at once, naming the wait
my ($o, $e, $dt, $n) = faulted($ids->[0],
	{ kind => 'status', status => 429, retry_after => 86400, match => $ids->[0], count => 1 });
is(sqlstate_of($e), '53000', 'Retry-After 86400: 53000') or diag $e;
like($e, qr/longer wait than atlas_users\.rate_limit_max_wait/, 'Retry-After 86400: the message says why');
like($e, qr/asks to wait 86400 s \(Retry-After\), longer than atlas_users\.rate_limit_max_wait \(30 s\)/,
	'Retry-After 86400: the detail names the wait and the setting');
is($n, 1, 'Retry-After 86400: exactly 1 request');
cmp_ok($dt, '<', 10, sprintf('Retry-After 86400: failed at once (%.2f s)', $dt));
sql('SELECT atlas_audit_flush()');
is(sql("SELECT outcome || ':' || http_status FROM atlas_removal_audit WHERE user_id = '$ids->[0]'"),
	'failed:429', 'Retry-After 86400: audited as failed 429');

# 2. a Retry-After within the setting is waited, then retried
($o, $e, $dt, $n) = faulted($ids->[1],
	{ kind => 'status', status => 429, retry_after => 1, match => $ids->[1], count => 1 });
is($o, 't', 'Retry-After 1: removed on the retry') or diag $e;
is($n, 2, 'Retry-After 1: 2 requests');
cmp_ok($dt, '>=', 0.9, sprintf('Retry-After 1: waited it (%.2f s)', $dt));

# 3. the setting is the bound: lowered below the Retry-After, the call fails
($o, $e, $dt, $n) = faulted($ids->[2],
	{ kind => 'status', status => 429, retry_after => 2, match => $ids->[2], count => 1 },
	"SET atlas_users.rate_limit_max_wait = '1s'; SELECT atlas_remove_project_user('$group', '$ids->[2]')");
is(sqlstate_of($e), '53000', 'Retry-After 2 over a max wait of 1 s: 53000') or diag $e;
is($n, 1, 'Retry-After 2 over a max wait of 1 s: 1 request');

# 4. the token endpoint: a 429 with a day's Retry-After fails at once
($o, $e, $dt) = faulted($ids->[3],
	{ kind => 'status', status => 429, retry_after => 86400, match => 'oauth', count => 1 },
	"SET atlas_users.auth_method = 'service_account'; SELECT atlas_remove_project_user('$group', '$ids->[3]')");
is(sqlstate_of($e), '53000', 'token 429 Retry-After 86400: 53000') or diag $e;
like($e, qr/asks to wait 86400 s/, 'token 429: the detail names the wait');
cmp_ok($dt, '<', 10, sprintf('token 429: failed at once (%.2f s)', $dt));
is(emu_route_count(emu_counters(), 'POST /api/oauth/token', 429), 1, 'token 429: 1 token request');
# a call in another session meanwhile is handed that failure at once: it
# neither waits out the day nor asks the token endpoint again
emu_reset_counters();
my $t1 = time;
my (undef, undef, $e2) = psql_as($node, 'postgres',
	"SET atlas_users.auth_method = 'service_account'; SELECT atlas_remove_project_user('$group', '$ids->[3]')");
is(sqlstate_of($e2), '53000', 'token 429, a later call: 53000') or diag $e2;
cmp_ok(time - $t1, '<', 10, sprintf('token 429, a later call: failed at once (%.2f s)', time - $t1));
is(emu_counter('token_requests'), 0, 'token 429, a later call: no token request');

# 5. the queue keeps its way: queued again a day later
sql('SELECT atlas_reset_rate_limits()');
emu_reset_counters();
emu_fault({ kind => 'status', status => 429, retry_after => 86400, match => $ids->[4], count => 1 });
my $id = sql("SELECT atlas_enqueue_remove_project_user('$group', '$ids->[4]')");
ok( $node->poll_query_until('postgres',
		"SELECT status = 'queued' AND attempts = 1 AND http_status = 429"
		  . " AND next_attempt_at > now() + interval '23 hours'"
		  . " FROM atlas_removal_queue WHERE id = $id"),
	'queue: after Retry-After 86400 the row is queued again, its next attempt a day away');
is(emu_route_count(emu_counters(), $route, 429), 1, 'queue: 1 request');
is(sql("SELECT atlas_cancel_removal($id)"), 't', 'queue: the row can be cancelled');
emu('DELETE', 'faults');

$node->stop;
done_testing();
