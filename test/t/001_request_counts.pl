# 001_request_counts.pl: what a session costs on the wire, counted by the
# emulator.
#
# 1,000 separate statements in one session must share one TCP/TLS
# connection and (digest) one challenge, or (service account) one token.
# A token that Atlas rejects early is renewed exactly once; one that
# expires by its lifetime is renewed before it is sent; a rate-limited
# token request fails the call with 53000 before any removal request.
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
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $token_route = 'POST /api/oauth/token';
my $n = 1000;

emu_reset();
# 2 x 1,000 removals from one project within a minute are more than the
# emulator's token bucket for project users allows (1,200 a minute, as
# Atlas); this file counts requests per session, not rate-limit pacing.
emu_config(rate_limits => { enabled => JSON::PP::false });

my $node = atlas_node('counts', auth_method => 'digest');

# A psql script of one statement per user, run in ONE session.
sub removal_script
{
	my ($prelude, $ids) = @_;
	return join('',
		$prelude,
		map { "SELECT atlas_remove_project_user('$group', '$_');\n" } @$ids);
}

# Run a script in one psql session; returns (exit code, stdout, stderr).
sub run_session
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		'postgres', $sql,
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 1);
	return ($rc, $out, $err);
}

# The same, failing the test when the statement wrote an ERROR.
sub bq_ok
{
	my ($s, $sql) = @_;
	my ($out, $err) = bg_query($s, $sql);
	diag "statement failed: $sql\n$err" if $err =~ /ERROR/;
	return $err =~ /ERROR/ ? "ERROR: $err" : $out;
}

sub show
{
	my ($label, $c) = @_;
	note sprintf(
		"%s: requests_total=%d removal_requests=%d route_204=%d route_401=%d "
		  . "digest_challenges=%d bearer_rejections=%d token_requests=%d token_grants=%d "
		  . "tcp_connections=%d tls_connections=%d tls_handshakes=%d",
		$label, $c->{requests_total}, $c->{removal_requests},
		emu_route_count($c, $route, '204'), emu_route_count($c, $route, '401'),
		$c->{digest_challenges}, $c->{bearer_rejections},
		$c->{token_requests}, $c->{token_grants},
		$c->{tcp_connections}, $c->{tls_connections}, $c->{tls_handshakes});
}

# ------------------------------------------------------------------
# 1. digest: 1,000 removals, one session
# ------------------------------------------------------------------
{
	my $ids = emu_users(
		count => $n,
		orgId => $org,
		groupIds => [$group],
		prefix => 'digest');
	is(scalar @$ids, $n, "emulator created $n users for the digest run");
	emu_reset_counters();

	my ($rc, $out, $err) = run_session(removal_script('', $ids));
	is($rc, 0, 'digest: the session of 1,000 statements ran without error')
	  or diag $err;
	my @lines = split /\n/, $out;
	is(scalar(@lines), $n, 'digest: 1,000 results');
	is(scalar(grep { $_ eq 't' } @lines), $n, 'digest: every removal returned t');

	my $c = emu_counters();
	show('digest, 1000 removals', $c);
	is(emu_route_count($c, $route, '204'), $n, 'digest: 1,000 removal answers of 204');
	cmp_ok(emu_route_count($c, $route), '<=', $n + 2,
		'digest: at most 1,002 requests to the removal route');
	cmp_ok($c->{removal_requests}, '<=', $n + 2,
		'digest: removal_requests (401s included) at most 1,002');
	cmp_ok($c->{digest_challenges}, '<=', 2, 'digest: at most 2 digest challenges');
	is($c->{tcp_connections}, 1, 'digest: one TCP connection for the session');
	is($c->{tls_connections}, 1, 'digest: one TLS connection for the session');
	is($c->{token_requests}, 0, 'digest: no token requests');

	my $left = emu('GET', "state?user=$ids->[-1]");
	ok(!exists $left->{projects}{$group},
		'digest: the last user of the run is no longer in the project');
}

# ------------------------------------------------------------------
# 2. service account: 1,000 removals, one session, one token
# ------------------------------------------------------------------
{
	my $ids = emu_users(
		count => $n,
		orgId => $org,
		groupIds => [$group],
		prefix => 'sa');
	is(scalar @$ids, $n, "emulator created $n users for the service-account run");
	emu_reset_counters();

	my ($rc, $out, $err) = run_session(
		removal_script("SET atlas_users.auth_method = 'service_account';\n", $ids));
	is($rc, 0, 'service account: the session of 1,000 statements ran without error')
	  or diag $err;
	my @lines = grep { $_ ne '' } split /\n/, $out;
	is(scalar(grep { $_ eq 't' } @lines), $n, 'service account: every removal returned t');

	my $c = emu_counters();
	show('service account, 1000 removals', $c);
	is($c->{token_grants}, 1, 'service account: one token grant for 1,000 removals');
	is($c->{token_requests}, 1, 'service account: one token request');
	is(emu_route_count($c, $route), $n, 'service account: exactly 1,000 removal requests');
	is(emu_route_count($c, $route, '204'), $n, 'service account: 1,000 answers of 204');
	is($c->{bearer_rejections}, 0, 'service account: no bearer rejections');
	is($c->{digest_challenges}, 0, 'service account: no digest challenges');
	is($c->{tcp_connections}, 1,
		'service account: the token request and the removals share one TCP connection');
	is($c->{tls_connections}, 1, 'service account: one TLS connection');
}

# ------------------------------------------------------------------
# 3. token renewal: by lifetime (no 401) and after an early expiry (one 401)
# ------------------------------------------------------------------
{
	my $ids = emu_users(
		count => 4,
		orgId => $org,
		groupIds => [$group],
		prefix => 'renew');
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	bq_ok($s, "SET atlas_users.auth_method = 'service_account'");
	bq_ok($s, 'SET client_min_messages = warning');

	# (a) a 2-second token: the client renews it before it is sent expired
	emu_config(token_ttl_s => 2);
	emu_reset_counters();
	is(bq_ok($s, "SELECT atlas_remove_project_user('$group', '$ids->[0]')"),
		't', 'ttl 2 s: first removal returns t');
	my $c0 = emu_counters();
	is($c0->{token_grants}, 1, 'ttl 2 s: the first removal fetched one token');
	sleep 3;    # past the token's lifetime (server and client side)
	is(bq_ok($s, "SELECT atlas_remove_project_user('$group', '$ids->[1]')"),
		't', 'ttl 2 s: removal after the lifetime returns t');
	my $c1 = emu_counters();
	show('ttl 2 s, two removals 3 s apart', $c1);
	is($c1->{token_grants} - $c0->{token_grants}, 1,
		'ttl 2 s: the expired token was replaced by exactly one new grant');
	is($c1->{bearer_rejections}, 0,
		'ttl 2 s: the client renewed before expiry, no bearer rejection');
	is(emu_route_count($c1, $route), 2, 'ttl 2 s: two removal requests in all');

	# (b) Atlas drops the token early: one 401, one renewal, success
	emu_config(token_ttl_s => 3600);
	is(bq_ok($s, "SELECT atlas_remove_project_user('$group', '$ids->[2]')"),
		't', 'early expiry: removal with a fresh 1-hour token returns t');
	emu('POST', 'expire_tokens');
	emu_reset_counters();
	is(bq_ok($s, "SELECT atlas_remove_project_user('$group', '$ids->[3]')"),
		't', 'early expiry: the call after the token was expired returns t');
	my $c2 = emu_counters();
	show('early expiry (expire_tokens), one removal', $c2);
	is($c2->{token_grants}, 1, 'early expiry: exactly one new token grant');
	is($c2->{token_requests}, 1, 'early expiry: exactly one token request');
	is($c2->{bearer_rejections}, 1, 'early expiry: exactly one bearer rejection');
	is(emu_route_count($c2, $route, '401'), 1, 'early expiry: one 401 on the removal route');
	is(emu_route_count($c2, $route, '204'), 1, 'early expiry: one 204 on the removal route');
	is(emu_route_count($c2, $route), 2, 'early expiry: two removal requests in all');

	$s->quit;
}

# ------------------------------------------------------------------
# 4. the token endpoint answers 429: 53000, no removal request
# ------------------------------------------------------------------
{
	my $ids = emu_users(
		count => 2,
		orgId => $org,
		groupIds => [$group],
		prefix => 'tok429');
	emu('DELETE', 'faults');
	emu_fault(
		{
			kind => 'status',
			status => 429,
			retry_after => 1,
			match => '/api/oauth/token',
			auth => JSON::PP::true,
			count => 1
		});
	emu_reset_counters();

	# a new session, which does not retry: no token cached in the cluster
	my ($rc, $out, $err) = run_session(
		"\\set VERBOSITY verbose\nSET atlas_users.auth_method = 'service_account';\n"
		  . "SET atlas_users.max_retries = 0;\n"
		  . "SELECT atlas_remove_project_user('$group', '$ids->[0]');\n");
	isnt($rc, 0, 'token 429: the call failed');
	is(sqlstate_of($err), '53000', 'token 429: SQLSTATE 53000');
	like($err, qr/token request failed: 429/, 'token 429: the error names the token request');
	note "token 429 error: $err";

	my $c = emu_counters();
	show('token endpoint 429', $c);
	is($c->{faults_triggered}, 1, 'token 429: the fault was applied');
	is($c->{token_requests}, 1, 'token 429: one token request');
	is($c->{token_grants}, 0, 'token 429: no token granted');
	is($c->{removal_requests}, 0, 'token 429: no removal request was sent');
	is(emu_route_count($c, $token_route, '429'), 1, 'token 429: the token route answered 429 once');

	my $st = emu('GET', "state?user=$ids->[0]");
	ok(exists $st->{projects}{$group}, 'token 429: the user is still in the project');

	# the fault is used up: the next session gets a token and removes the user
	($rc, $out, $err) = run_session(
		"SET atlas_users.auth_method = 'service_account';\n"
		  . "SELECT atlas_remove_project_user('$group', '$ids->[0]');\n");
	is($rc, 0, 'token 429: a later session succeeds') or diag $err;
	is($out, 't', 'token 429: the later removal returns t');
}

$node->stop;
done_testing();
