# 033_faults.pl: every fault the emulator can inject ends with the
# documented SQLSTATE or queue state, leaves the backend and the worker
# alive, and loses no audit or queue row.
#
# Synchronous calls (one session, a preloaded node): connection refused,
# reset, reset in the middle of a response, a hang (ends at
# atlas_users.timeout_ms), a slow body (succeeds within the timeout, ends
# at it when slower), 429 storms with Retry-After bounded by
# atlas_users.max_retries, 500/502/503/504, malformed JSON, HTML, an empty
# body, invalid UTF-8, a 10 MiB body (capped; the backend's peak RSS does
# not grow by 10 MiB), a token endpoint answering 429 or 500, and a token
# that expires in the middle of a 50-user bulk removal.  After each: the
# same backend pid answers SELECT 1, the worker has the same pid, and each
# removal call has exactly one audit row.
#
# Through the worker: one queue row per fault (and refused, and token
# faults with the worker on a service account); transient faults end
# 'done' after a retry, a 400 and a fault that never stops end 'failed',
# and each row has one audit row per attempt.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $users_route = 'GET /api/atlas/v2/orgs/{orgId}/users';
my $token_route = 'POST /api/oauth/token';
my $MiB = 1024 * 1024;

emu_reset();
my $ids = emu_users(count => 150, orgId => $org, groupIds => [$group], prefix => 'fault');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }

sub username_of { return emu('GET', "state?user=$_[0]")->{username}; }

my $node = atlas_node('faults',
	auth_method => 'digest',
	timeout_ms => 2000,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_retries = 0\n"    # each fault shows as it comes, but where a test retries
	  . "atlas_users.max_attempts = 2\n"
	  . "atlas_users.retry_base_ms = 200\n"
	  . "atlas_users.max_concurrency = 8\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

ok($node->poll_query_until('postgres', 'SELECT pid IS NOT NULL FROM atlas_worker_status()'),
	'the worker is running');
my $worker_pid = sql('SELECT pid FROM atlas_worker_status()');

my $s = $node->background_psql('postgres',
	on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);

# One statement: (stdout, stderr, seconds).
sub sq { return bg_query($s, $_[0]); }

my ($pid) = sq('SELECT pg_backend_pid()');

my $survived = 0;    # faults after which backend and worker were fine
my @faults_seen;

# After each fault: the same backend answers, the worker is the same.
sub alive
{
	my ($label) = @_;
	my ($o, $e) = sq('SELECT pg_backend_pid(), 1');
	my $w = sql('SELECT pid FROM atlas_worker_status()');
	my $ok = ($o eq "$pid|1" && $w eq $worker_pid);
	ok($ok, "$label: the backend ($pid) answers SELECT 1 and the worker ($worker_pid) is the same")
	  or diag "backend: $o $e; worker: $w";
	$survived++ if $ok;
	push @faults_seen, $label;
	emu('DELETE', 'faults');
}

my %audit_expect;    # user id => [outcome, http_status, attempts]

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

# One removal under a fault; returns (stdout, stderr, seconds, counters delta on the route).
sub faulted_removal
{
	my ($u, @rules) = @_;
	emu_fault(@rules) if @rules;
	my $before = emu_counters();
	my ($o, $e, $dt) = sq(remove_sql($u));
	my $after = emu_counters();
	my %d;
	for my $st (keys %{ $after->{requests_by_route}{$route} // {} })
	{
		$d{$st} = emu_route_count($after, $route, $st) - emu_route_count($before, $route, $st);
	}
	$d{total} = $after->{removal_requests} - $before->{removal_requests};
	return ($o, $e, $dt, \%d);
}

# warm up: digest handshake and connection
{
	my $u = fresh_user();
	my ($o, $e) = sq(remove_sql($u));
	is($o, 't', 'warm-up removal') or diag $e;
	$audit_expect{$u} = [ 'removed', 204, 1 ];
}

# ------------------------------------------------------------------
# 1. transport faults
# ------------------------------------------------------------------
{
	# connection refused: a port nobody listens on
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
	  or die "socket: $!";
	my $closed = $sock->sockport;
	close $sock;
	my $u = fresh_user();
	sq("SET atlas_users.base_url = 'https://localhost:$closed'");
	my ($o, $e) = sq(remove_sql($u));
	is(sqlstate_of($e), '08006', 'refused: 08006') or diag $e;
	like($e, qr/could not reach Atlas at localhost:$closed: .*(refused|connect)/i, 'refused: says so, with the host');
	$audit_expect{$u} = [ 'failed', undef, 1 ];
	sq('RESET atlas_users.base_url');
	alive('refused');

	# reset before any answer (every try: libcurl may retry a reused connection once)
	$u = fresh_user();
	my ($d, $dt);
	($o, $e, $dt, $d) = faulted_removal($u, { kind => 'reset', match => $u, count => -1 });
	is(sqlstate_of($e), '08006', 'reset: 08006') or diag $e;
	note "reset: $d->{total} request(s) reached the emulator";
	cmp_ok($d->{total}, '<=', 2, 'reset: at most one transparent reconnect by libcurl');
	$audit_expect{$u} = [ 'failed', undef, 1 ];
	alive('reset');

	# reset in the middle of the answer of a GET (a body to cut)
	my $name = username_of(fresh_user());
	emu_fault({ kind => 'reset_mid_body', match => 'GET /api/atlas/v2/orgs/', count => 1 });
	($o, $e) = sq("SELECT atlas_find_user_id('$org', '$name')");
	is(sqlstate_of($e), '08006', 'reset mid-body (GET, 200 cut in half): 08006 (a transport failure)') or diag $e;
	note "reset mid-body GET: $1" if $e =~ /(ERROR:[^\n]*)/;
	alive('reset_mid_body (GET)');

	# reset in the middle of the answer of a DELETE (Atlas did remove the user)
	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u, { kind => 'reset_mid_body', match => $u, count => 1 });
	my $gone = !exists emu('GET', "state?user=$u")->{projects}{$group};
	ok($gone, 'reset mid-body (DELETE): the emulator did remove the user');
	ok($o eq 't' || sqlstate_of($e) eq '08006',
		'reset mid-body (DELETE): true (the status line arrived) or 08006') or diag "$o $e";
	note 'reset mid-body DELETE: ' . ($o eq 't' ? 'returned true' : "error $1") if $o eq 't' || $e =~ /(ERROR:[^\n]*)/;
	$audit_expect{$u} = $o eq 't' ? [ 'removed', 204, 1 ] : [ 'failed', undef, 1 ];
	alive('reset_mid_body (DELETE)');

	# hang: ends at atlas_users.timeout_ms
	sq('SET atlas_users.timeout_ms = 1000');
	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u, { kind => 'hang', match => $u, count => 1, seconds => 60 });
	is(sqlstate_of($e), '08006', 'hang: 08006') or diag $e;
	like($e, qr/tim(ed|e) ?out/i, 'hang: the message says timed out');
	cmp_ok($dt, '>=', 0.9, sprintf('hang: waited for the 1 s timeout (%.2f s)', $dt));
	cmp_ok($dt, '<', 3, 'hang: ended within 3 s');
	$audit_expect{$u} = [ 'failed', undef, 1 ];
	alive('hang');

	# slow body: 2 ms per byte succeeds within 5 s; 20 ms per byte ends at 1 s
	sq('SET atlas_users.timeout_ms = 5000');
	my $v = fresh_user();
	$name = username_of($v);
	emu_fault({ kind => 'slow_body', match => 'GET /api/atlas/v2/orgs/', count => 1, interval_ms => 2 });
	($o, $e, $dt) = sq("SELECT atlas_find_user_id('$org', '$name')");
	is($o, $v, sprintf('slow body (2 ms a byte, %.2f s) within timeout_ms: succeeds', $dt)) or diag $e;
	cmp_ok($dt, '>', 0.3, 'slow body: it was slow');
	sq('SET atlas_users.timeout_ms = 1000');
	emu_fault({ kind => 'slow_body', match => 'GET /api/atlas/v2/orgs/', count => 1, interval_ms => 20 });
	($o, $e, $dt) = sq("SELECT atlas_find_user_id('$org', '$name')");
	is(sqlstate_of($e), '08006', sprintf('slow body slower than timeout_ms (1 s): 08006 after %.2f s', $dt)) or diag $e;
	cmp_ok($dt, '<', 3, 'slow body: ended at the timeout');
	sq('RESET atlas_users.timeout_ms');
	alive('slow_body');

	# a fresh backend: digest starts with a 401 challenge, then the fault
	for my $kind ('hang', 'reset')
	{
		$u = fresh_user();
		emu_fault({ kind => $kind, match => $u, count => -1, seconds => 30 });
		my ($out, $err) = ('', '');
		my $t0 = time;
		$node->psql(
			'postgres',
			"SET atlas_users.timeout_ms = 1000;\n" . remove_sql($u) . ";\nSELECT 'alive';\n",
			stdout => \$out,
			stderr => \$err,
			on_error_stop => 0,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		is(sqlstate_of($err), '08006', "$kind in a fresh backend (after the digest challenge): 08006") or diag $err;
		note "$kind in a fresh backend: $1" if $err =~ /(ERROR:[^\n]*)/;
		like($out, qr/^alive$/m, "$kind in a fresh backend: the backend goes on");
		$audit_expect{$u} = [ 'failed', undef, 1 ];
		alive("$kind (fresh backend)");
	}
}

# ------------------------------------------------------------------
# 2. 429 storms with Retry-After, 5xx
# ------------------------------------------------------------------
{
	sq('SET atlas_users.max_retries = 2');
	my $u = fresh_user();
	my ($o, $e, $dt, $d) = faulted_removal($u,
		{ kind => 'status', status => 429, retry_after => 1, match => $u, count => 10 });
	is(sqlstate_of($e), '53000', '429 x10, max_retries 2: 53000') or diag $e;
	is($d->{429}, 3, '429 x10, max_retries 2: exactly 3 requests');
	is($d->{total}, 3, '429 x10: no other request');
	cmp_ok($dt, '>=', 1.9, sprintf('429 x10: waited Retry-After twice (%.2f s)', $dt));
	$audit_expect{$u} = [ 'failed', 429, 3 ];
	alive('429 storm (10)');

	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u,
		{ kind => 'status', status => 429, retry_after => 1, match => $u, count => 2 });
	is($o, 't', '429 x2, max_retries 2: success on the third request') or diag $e;
	is($d->{429} . '+' . ($d->{204} // 0), '2+1', '429 x2: two 429s and one 204');
	$audit_expect{$u} = [ 'removed', 204, 3 ];
	alive('429 storm (2)');

	sq('SET atlas_users.max_retries = 0');
	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u,
		{ kind => 'status', status => 429, retry_after => 30, match => $u, count => 1 });
	is(sqlstate_of($e), '53000', '429, max_retries 0: 53000 at once');
	cmp_ok($dt, '<', 2, 'max_retries 0: no wait for Retry-After 30');
	$audit_expect{$u} = [ 'failed', 429, 1 ];
	alive('429 no retry');

	sq('SET atlas_users.max_retries = 2');
	for my $st (500, 502, 504)
	{
		$u = fresh_user();
		($o, $e, $dt, $d) = faulted_removal($u, { kind => 'status', status => $st, match => $u, count => 10 });
		is(sqlstate_of($e), '58000', "$st: 58000") or diag $e;
		like($e, qr/Atlas API error $st UNEXPECTED_ERROR/, "$st: message with status and errorCode");
		is($d->{total}, 1, "$st: not retried synchronously (1 request)");
		$audit_expect{$u} = [ 'failed', $st, 1 ];
		alive("$st");
	}
	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u, { kind => 'status', status => 503, match => $u, count => 10, retry_after => 0 });
	is(sqlstate_of($e), '58000', '503 x10, max_retries 2: 58000') or diag $e;
	like($e, qr/Atlas API error 503 SERVICE_UNAVAILABLE/, '503: message');
	is($d->{503}, 3, '503 x10: retried to 3 requests');
	$audit_expect{$u} = [ 'failed', 503, 3 ];
	alive('503 storm');
	$u = fresh_user();
	($o, $e, $dt, $d) = faulted_removal($u, { kind => 'status', status => 503, match => $u, count => 1, retry_after => 0 });
	is($o, 't', '503 once, max_retries 2: success on the second request') or diag $e;
	$audit_expect{$u} = [ 'removed', 204, 2 ];
	alive('503 once');
	sq('RESET atlas_users.max_retries');
}

# ------------------------------------------------------------------
# 3. bodies that are not Atlas errors, and too large ones
# ------------------------------------------------------------------
{
	my %case = (
		malformed_json => [ '58000', 500, qr/DETAIL:\s+The response \(application\/json\) was not an Atlas error document: \{/ ],
		html => [ '58000', 502, qr/DETAIL:\s+The response \(text\/html; charset=utf-8\) was not an Atlas error document: <!DOCTYPE html>/ ],
		empty => [ '58000', 500, qr/DETAIL:\s+The response \(application\/json\) had an empty body\./ ],
		invalid_utf8 => [ '22023', 400, qr/DETAIL:\s+Invalid byte sequence \?\? in \?\( request \?\?\?\./ ],
	);
	for my $kind (sort keys %case)
	{
		my ($state, $st, $re) = @{ $case{$kind} };
		my $u = fresh_user();
		my ($o, $e, $dt, $d) = faulted_removal($u, { kind => $kind, match => $u, count => 1 });
		is(sqlstate_of($e), $state, "$kind ($st): $state") or diag $e;
		like($e, qr/Atlas API error $st/, "$kind: the message has the status");
		like($e, $re, "$kind: the DETAIL is a clean excerpt or Atlas's detail") or diag $e;
		$audit_expect{$u} = [ 'failed', $st, 1 ];
		alive($kind);
	}

	# invalid UTF-8 in a 404 with X-Error-Code
	my $u = fresh_user();
	my ($o, $e) = faulted_removal($u, { kind => 'invalid_utf8', status => 404, match => $u, count => 1 });
	is(sqlstate_of($e), '42704', 'invalid_utf8 (404): 42704') or diag $e;
	$audit_expect{$u} = [ 'failed', 404, 1 ];
	alive('invalid_utf8 (404)');

	# 10 MiB: capped at 1 MiB
	my $hwm0 = proc_kb($pid, 'VmHWM');
	my $rss0 = proc_kb($pid, 'VmRSS');
	for my $i (1 .. 3)
	{
		$u = fresh_user();
		my $d;
		($o, $e, undef, $d) = faulted_removal($u, { kind => 'oversized', match => $u, count => 1 });
		is(sqlstate_of($e), '58000', "oversized 10 MiB (500), try $i: 58000") or diag $e;
		$audit_expect{$u} = [ 'failed', 500, 1 ];
	}
	like($e, qr/DETAIL:\s+The response \(application\/json\) exceeded the 1048576 byte limit and was not read\./,
		'oversized: the DETAIL says the response exceeded the 1 MiB limit') or diag $e;
	my $hwm1 = proc_kb($pid, 'VmHWM');
	my $rss1 = proc_kb($pid, 'VmRSS');
	note "oversized: backend VmHWM $hwm0 -> $hwm1 kB, VmRSS $rss0 -> $rss1 kB";
	cmp_ok($hwm1 - $hwm0, '<', 10 * 1024, 'oversized x3: the backend peak RSS grew by less than 10 MiB');
	cmp_ok($rss1 - $rss0, '<', 2 * 1024, 'oversized x3: the backend RSS grew by less than 2 MiB');
	alive('oversized');

	# 10 MiB answering a GET with 200
	my $name = username_of(fresh_user());
	emu_fault({ kind => 'oversized', status => 200, match => 'GET /api/atlas/v2/orgs/', count => 1 });
	($o, $e) = sq("SELECT atlas_find_user_id('$org', '$name')");
	like($e, qr/ERROR/, 'oversized 10 MiB with 200 on a lookup: an error, not a result') or diag $o;
	note "oversized 200 GET: $1" if $e =~ /(ERROR:[^\n]*)/;
	cmp_ok(proc_kb($pid, 'VmHWM') - $hwm0, '<', 10 * 1024, 'oversized 200: peak RSS still < +10 MiB');
	alive('oversized (200 GET)');
}

# ------------------------------------------------------------------
# 4. the token endpoint
# ------------------------------------------------------------------
# Each in a fresh backend with no cached token and no retries but where the
# settings say: (stdout, stderr, token and removal request deltas).
sub token_case
{
	my ($settings, @rules) = @_;
	my $u = fresh_user();
	emu_fault(@rules);
	my $before = emu_counters();
	my ($out, $err) = ('', '');
	# the token cache is the cluster's: empty it, so that the call fetches one
	$node->psql(
		'postgres',
		"SELECT atlas_forget_tokens();\n"
		  . "SET atlas_users.auth_method = 'service_account';\nSET atlas_users.max_retries = 0;\n"
		  . "$settings\n" . remove_sql($u) . ";\nSELECT 'alive', pg_backend_pid() > 0;\n",
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $after = emu_counters();
	emu('DELETE', 'faults');
	return ($u, $out, $err,
		$after->{token_requests} - $before->{token_requests},
		$after->{removal_requests} - $before->{removal_requests});
}
{
	for my $st (429, 500, 503)
	{
		my ($u, $o, $e, $tok, $rem) = token_case('',
			{ kind => 'status', status => $st, match => '/api/oauth/token', auth => JSON::PP::true,
				count => 1, retry_after => 1 });
		my $state = $st == 429 ? '53000' : '58000';
		is(sqlstate_of($e), $state, "token endpoint $st: $state") or diag $e;
		like($e, qr/Atlas token request failed: $st/, "token endpoint $st: the message says the token request failed");
		like($e, qr/CONTEXT:\s+Atlas API request POST \/api\/oauth\/token/, "token endpoint $st: CONTEXT names it");
		is("$tok/$rem", '1/0', "token endpoint $st: one token request, no removal request");
		like($o, qr/^alive\|t$/m, "token endpoint $st: the backend goes on");
		$audit_expect{$u} = [ 'failed', $st, undef ];
		alive("token endpoint $st");
	}
	my ($u, $o, $e, $tok, $rem) = token_case('SET atlas_users.max_retries = 2;',
		{ kind => 'status', status => 429, match => '/api/oauth/token', auth => JSON::PP::true,
			count => 1, retry_after => 1 });
	like($o, qr/^t$/m, 'token endpoint 429 once, max_retries 2: the removal succeeds') or diag $e;
	is("$tok/$rem", '2/1', 'token endpoint 429 once: two token requests, one removal');
	$audit_expect{$u} = [ 'removed', 204, undef ];
	alive('token endpoint 429 retried');
	($u, $o, $e, $tok, $rem) = token_case('',
		{ kind => 'hang', match => '/api/oauth/token', auth => JSON::PP::true, count => 1, seconds => 30 });
	is(sqlstate_of($e), '08006', 'token endpoint hangs: 08006 at the timeout') or diag $e;
	$audit_expect{$u} = [ 'failed', undef, undef ];
	alive('token endpoint hang');
	($u, $o, $e, $tok, $rem) = token_case('',
		{ kind => 'malformed_json', status => 200, match => '/api/oauth/token', auth => JSON::PP::true, count => 1 });
	like($e, qr/ERROR:\s+\w{5}: Atlas token request failed/, 'token endpoint 200 with malformed JSON: token request failed') or diag $e;
	note "token malformed 200: $1" if $e =~ /(ERROR:[^\n]*)/;
	$audit_expect{$u} = [ 'failed', 200, undef ];
	alive('token endpoint malformed');
}

# ------------------------------------------------------------------
# 5. a token that expires in the middle of a bulk removal
# ------------------------------------------------------------------
{
	my @batch = map { fresh_user() } 1 .. 50;
	sql('SELECT atlas_forget_tokens()');    # the run starts without a token
	my $t = $node->background_psql('postgres', on_error_stop => 0);
	$t->query_safe("SET atlas_users.auth_method = 'service_account'");
	emu_config(latency_ms => 100);
	my $before = emu_counters();
	my $arr = join(',', map { "'$_'" } @batch);
	$t->{stdin} .= "SELECT count(*) FILTER (WHERE removed) || '/' || count(*) FROM "
	  . "atlas_remove_project_users('$group', ARRAY[$arr]);\n\\echo BULKDONE\n";
	my $deadline = time + 60;
	my $expired_at;
	while (time < $deadline)
	{
		$t->{run}->pump_nb;
		last if $t->{stdout} =~ /BULKDONE/;
		if (!defined $expired_at && emu_counter('removal_requests') - $before->{removal_requests} >= 12)
		{
			emu('POST', 'expire_tokens');
			$expired_at = emu_counter('removal_requests') - $before->{removal_requests};
		}
		sleep 0.01;
	}
	emu_config(latency_ms => 0);
	(my $out = $t->{stdout}) =~ s/\n?BULKDONE\n?//;
	my $after = emu_counters();
	ok(defined $expired_at, "tokens expired after $expired_at of 50 removal requests");
	is($out, '50/50', 'token expiry mid-batch: all 50 removed') or diag $t->{stderr};
	is($after->{token_grants} - $before->{token_grants}, 2, 'token expiry mid-batch: token_grants == 2');
	cmp_ok($after->{bearer_rejections} - $before->{bearer_rejections}, '>=', 1,
		'the emulator rejected the expired token at least once');
	note sprintf('bulk: %d removal requests, %d bearer rejections',
		$after->{removal_requests} - $before->{removal_requests},
		$after->{bearer_rejections} - $before->{bearer_rejections});
	$t->quit;
	$audit_expect{$_} = [ 'removed', 204, undef ] for @batch;
	alive('token expiry mid-batch');
}

# ------------------------------------------------------------------
# 6. the audit of every synchronous call
# ------------------------------------------------------------------
{
	is(sql('SELECT atlas_audit_flush(10000)'), 't', 'the worker wrote every handed-over audit record');
	my @wrong;
	my %seen;
	for my $line (split /\n/, sql(
			"SELECT user_id, count(*), min(outcome), min(coalesce(http_status::text, '')), min(attempts)"
			  . " FROM atlas_removal_audit GROUP BY user_id"))
	{
		my ($u, $n, $outcome, $st, $att) = split /\|/, $line;
		$seen{$u} = 1;
		next unless $audit_expect{$u};
		my ($xo, $xs, $xa) = @{ $audit_expect{$u} };
		push @wrong, "$u: $n rows" if $n != 1;
		push @wrong, "$u: outcome $outcome, expected $xo" if $outcome ne $xo;
		push @wrong, "$u: http_status '$st', expected " . ($xs // 'NULL')
		  if $st ne ($xs // '');
		push @wrong, "$u: attempts $att, expected $xa" if defined $xa && $att != $xa;
	}
	push @wrong, map { "$_: no audit row" } grep { !$seen{$_} } sort keys %audit_expect;
	is(scalar(@wrong), 0, 'audit: exactly one row per synchronous removal call ('
		  . scalar(keys %audit_expect) . ' calls), with its outcome, status and attempts')
	  or diag join("\n", @wrong);
	is(sql("SELECT count(*) FROM atlas_removal_audit"), scalar(keys %audit_expect),
		'audit: no extra row');
}

# ------------------------------------------------------------------
# 7. the same faults through the queue worker
# ------------------------------------------------------------------
my %queue_expect;    # user => [status, attempts]
sub enqueue
{
	my ($u) = @_;
	return sql("SELECT atlas_enqueue_remove_project_user('$group', '$u')");
}

sub wait_queue
{
	my ($users, $timeout) = @_;
	my $list = join(',', map { "'$_'" } @$users);
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if sql("SELECT count(*) FROM atlas_removal_queue WHERE user_id IN ($list)"
			  . " AND status IN ('queued', 'running')") eq '0';
		sleep 0.2;
	}
	return 0;
}

{
	my %rules = (
		reset => [ { kind => 'reset' }, 'done', undef ],
		hang => [ { kind => 'hang', seconds => 30 }, 'done', 2 ],
		slow_body => [ { kind => 'slow_body', interval_ms => 5 }, 'done', 1 ],
		'429' => [ { kind => 'status', status => 429, retry_after => 1 }, 'done', 2 ],
		'500' => [ { kind => 'status', status => 500 }, 'done', 2 ],
		'503' => [ { kind => 'status', status => 503 }, 'done', 2 ],
		malformed_json => [ { kind => 'malformed_json' }, 'done', 2 ],
		html => [ { kind => 'html' }, 'done', 2 ],
		empty => [ { kind => 'empty' }, 'done', 2 ],
		oversized => [ { kind => 'oversized' }, 'done', 2 ],
		invalid_utf8 => [ { kind => 'invalid_utf8' }, 'failed', 1 ],
		'403' => [ { kind => 'status', status => 403 }, 'failed', 1 ],
		'503 forever' => [ { kind => 'status', status => 503, count => -1 }, 'failed', 2 ],
		'reset forever' => [ { kind => 'reset', count => -1 }, 'failed', 2 ],
		reset_mid_body => [ { kind => 'reset_mid_body' }, 'done', undef ],
	);
	my (@users, %user_of);
	for my $k (sort keys %rules)
	{
		my ($rule, $status, $att) = @{ $rules{$k} };
		my $u = fresh_user();
		emu_fault({ count => 1, %$rule, match => $u });
		$user_of{$k} = $u;
		$queue_expect{$u} = [ $status, $att, $k ];
		push @users, $u;
	}
	my $list = join(',', map { "'$_'" } @users);
	sql("SELECT count(atlas_enqueue_remove_project_user('$group', u)) FROM unnest(ARRAY[$list]) u");
	ok(wait_queue(\@users, 90), 'queue: every faulted row finished');
	my @wrong;
	for my $line (split /\n/, sql(
			"SELECT user_id, status, attempts, coalesce(detail, ''), (SELECT count(*) FROM atlas_removal_audit a"
			  . " WHERE a.user_id = q.user_id) FROM atlas_removal_queue q WHERE user_id IN ($list)"))
	{
		my ($u, $status, $att, $detail, $naudit) = split /\|/, $line;
		my ($xs, $xa, $k) = @{ $queue_expect{$u} };
		push @wrong, "$k: status $status (expected $xs), detail: $detail" if $status ne $xs;
		push @wrong, "$k: attempts $att (expected $xa)" if defined $xa && $att != $xa;
		push @wrong, "$k: $naudit audit rows for $att attempts" if $naudit != $att;
		delete $queue_expect{$u};
		note "queue $k ($u): $status after $att attempt(s); $detail";
	}
	push @wrong, map { "$queue_expect{$_}[2]: queue row missing" } keys %queue_expect;
	is(scalar(@wrong), 0, 'queue: ' . scalar(@users)
		  . ' faulted rows end as documented (transient: done after a retry; 400, 403 and endless faults: failed), one audit row per attempt')
	  or diag join("\n", @wrong) . "\n" . sql("SELECT string_agg(a::text, E'\\n' ORDER BY id) FROM atlas_removal_audit a WHERE user_id IN ($list)")
	  . "\n" . join("\n", map { "$_->{seq} $_->{method} $_->{path} $_->{status} $_->{duration_ms}" } @{ emu('GET', 'requests?limit=100')->{requests} });
	is(sql('SELECT pid FROM atlas_worker_status()'), $worker_pid, 'queue: the worker is the same process');
	$survived += scalar(@users) if sql('SELECT pid FROM atlas_worker_status()') eq $worker_pid;
	emu('DELETE', 'faults');
}

# refused, and the token endpoint, with the worker's configuration changed
sub reconfigure
{
	my ($sql) = @_;
	sql($sql);
	sql('SELECT pg_reload_conf()');
	sleep 0.5;
}
{
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
	  or die "socket: $!";
	my $closed = $sock->sockport;
	close $sock;
	reconfigure("ALTER SYSTEM SET atlas_users.base_url = 'https://localhost:$closed'");
	my $u = fresh_user();
	enqueue($u);
	ok(wait_queue([$u], 30), 'queue, refused: the row finished');
	is(sql("SELECT status || '/' || attempts || '/' || (SELECT count(*) FROM atlas_removal_audit a WHERE a.user_id = q.user_id)"
			  . " FROM atlas_removal_queue q WHERE user_id = '$u'"),
		'failed/2/2', 'queue, refused: failed after max_attempts (2), two audit rows');
	like(sql("SELECT detail FROM atlas_removal_queue WHERE user_id = '$u'"), qr/refused|connect/i,
		'queue, refused: the detail says why');
	reconfigure('ALTER SYSTEM RESET atlas_users.base_url');

	reconfigure("ALTER SYSTEM SET atlas_users.auth_method = 'service_account'");
	my @tok_users;
	for my $st (500, 429)
	{
		$u = fresh_user();
		emu_fault({ kind => 'status', status => $st, match => '/api/oauth/token', auth => JSON::PP::true,
			count => 1, retry_after => 1 });
		sql('SELECT atlas_forget_tokens()');    # the cluster's token is gone: the worker fetches one
		my $before = emu_counters();
		enqueue($u);
		ok(wait_queue([$u], 30), "queue, token endpoint $st: the row finished");
		is(sql("SELECT status || '/' || attempts || '/' || (SELECT count(*) FROM atlas_removal_audit a WHERE a.user_id = q.user_id)"
				  . " FROM atlas_removal_queue q WHERE user_id = '$u'"),
			'done/2/2', "queue, token endpoint $st once: done on the second attempt, two audit rows");
		my $after = emu_counters();
		is($after->{token_grants} - $before->{token_grants}, 1, "queue, token endpoint $st: one token granted");
		emu('DELETE', 'faults');
	}
	reconfigure('ALTER SYSTEM RESET atlas_users.auth_method');
	is(sql('SELECT pid FROM atlas_worker_status()'), $worker_pid, 'queue: the worker survived refused and token faults');
	$survived += 3 if sql('SELECT pid FROM atlas_worker_status()') eq $worker_pid;
}

note "faults injected and survived: $survived (synchronous: " . scalar(@faults_seen) . ')';
my ($o) = sq('SELECT pg_backend_pid()');
is($o, $pid, 'the session backend is the same after everything');
$s->quit;
$node->stop;
unlike(slurp_file($node->logfile), qr/server process .* was terminated|terminated by signal|PANIC/,
	'the server log shows no crashed process');
done_testing();
