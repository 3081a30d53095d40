# 040_tokens.pl: one service-account token per cluster (issue 11), counted
# by the emulator, which enforces Atlas's token limits (50 token requests a
# minute per address and client, 100 active tokens per service account).
#
# With shared_preload_libraries:
# - 300 separate sessions (separate psql runs, as pg_cron job runs are),
#   one removal each: exactly 1 token grant, and no failure.
# - 20 sessions released at the same moment: 1 grant.
# - A token Atlas revoked early (expire_tokens), while 20 sessions that
#   hold it call at once: replaced with 1 grant for all of them.
# - A token cap of 1: the sessions and the worker of the cluster still
#   take only one token.  With the cap reached by another client, the
#   error says the service account's token limit is reached, the hint what
#   to do, and no token-request hint blames the IP access list.
# Without it (a second node): every backend takes its own token.
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
my $token_route = 'POST /api/oauth/token';

emu_reset();
my $node = atlas_node('tokens',
	auth_method => 'service_account',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

sub users { return emu_users(count => $_[0], orgId => $org, groupIds => [$group], prefix => $_[1]); }

# Is the user still in the project, in the emulator's state?
sub in_project { return exists emu('GET', "state?user=$_[0]")->{projects}{$group}; }

# One removal per separate psql run (a new backend each) on $n: how many
# runs printed t, and the errors of the others.
sub separate_sessions
{
	my ($n, $ids) = @_;
	my ($ok, @errors) = (0);
	for my $id (@$ids)
	{
		my ($rc, $out, $err) = psql_as($n, 'postgres', remove_sql($id));
		if ($rc == 0 && $out eq 't') { $ok++; }
		else { push @errors, "$id: rc $rc, out '$out', $err"; }
	}
	return ($ok, @errors);
}

# $k psql sessions on the node.
sub open_sessions { return map { psql_session($node) } 1 .. $_[0]; }

sub show
{
	my ($label, $c) = @_;
	note sprintf(
		"%s: token_requests=%d token_grants=%d token_rate_limited=%d token_cap_denied=%d "
		  . "bearer_rejections=%d removal 204=%d 401=%d 429=%d max_concurrent_requests=%d",
		$label, $c->{token_requests}, $c->{token_grants}, $c->{token_rate_limited},
		$c->{token_cap_denied}, $c->{bearer_rejections}, emu_route_count($c, $route, '204'),
		emu_route_count($c, $route, '401'), emu_route_count($c, $route, '429'),
		$c->{max_concurrent_requests});
}

# ------------------------------------------------------------------
# 1. 300 separate sessions, one removal each: 1 token grant
# ------------------------------------------------------------------
{
	my $ids = users(300, 'cron');
	is(scalar @$ids, 300, 'the emulator made 300 users in acme-prod');
	emu_reset_counters();
	my $t0 = time;
	my ($ok, @errors) = separate_sessions($node, $ids);
	my $dt = time - $t0;
	my $c = emu_counters();
	show('300 separate sessions', $c);
	note sprintf('300 separate sessions took %.1f s (%.0f ms each)', $dt, 1000 * $dt / 300);
	is($ok, 300, '300 sessions: every session removed its user (t)')
	  or diag join("\n", @errors[ 0 .. ($#errors < 4 ? $#errors : 4) ]);
	is($c->{token_grants}, 1, '300 sessions: exactly 1 token grant');
	is($c->{token_requests}, 1, '300 sessions: exactly 1 token request');
	is($c->{token_rate_limited} + $c->{token_cap_denied}, 0,
		'300 sessions: no token request was refused');
	is($c->{bearer_rejections}, 0, '300 sessions: no token was rejected');
	is(emu_route_count($c, $route, '204'), 300, '300 sessions: 300 removals answered 204');
	is(emu_route_count($c, $route), 300, '300 sessions: no other removal request');
	ok(!in_project($ids->[0]) && !in_project($ids->[299]),
		'300 sessions: the first and the last user are gone from acme-prod');
	sql('SELECT atlas_audit_flush(10000)');
	is( sql("SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'removed'"
			  . " AND user_id = ANY (" . id_array($ids) . ")"),
		300,
		'300 sessions: 300 audit rows, removed');
}

# ------------------------------------------------------------------
# 2. 20 sessions starting at the same moment: 1 grant
# ------------------------------------------------------------------
my @sessions = open_sessions(20);
my $ctl = psql_session($node);

# A statement in the controlling session; its output.
sub ctl_sql { return (session_run($ctl, $_[0]))[0]; }
{
	my $ids = users(20, 'burst');
	is(ctl_sql('SELECT atlas_forget_tokens()'), 1,
		'at once: the cluster forgot its one token');
	# 300 ms per answer: all 20 sessions ask for the token while it is fetched
	emu_config(latency_ms => 300);
	emu_reset_counters();
	my ($t0, @res) = sessions_at_once($ctl, \@sessions, [ map { remove_sql($_) } @$ids ]);
	my $c = emu_counters();
	show('20 sessions at once', $c);
	my $slowest = (sort { $b <=> $a } map { $_->[2] } @res)[0];
	note sprintf('20 sessions at once: all ended within %.3f s of the release', $slowest);
	is(scalar(grep { $_->[0] eq 't' } @res), 20, 'at once: all 20 removals returned t')
	  or diag join("\n", map { $_->[1] } @res);
	is($c->{token_grants}, 1, 'at once: exactly 1 token grant for 20 sessions');
	is($c->{token_requests}, 1, 'at once: exactly 1 token request');
	is(emu_route_count($c, $route, '204'), 20, 'at once: 20 removals answered 204');
	my $log = emu_requests(1000);
	my ($grant) = emu_route_log($token_route, $log);
	my @removals = emu_route_log($route, $log);
	is(scalar(@removals) . ' ' . scalar(grep { $_->{seq} > $grant->{seq} } @removals), '20 20',
		'at once: every removal was sent after the one token request');
	cmp_ok($c->{max_concurrent_requests}, '>=', 10,
		'at once: the sessions called at the same time (at least 10 requests in flight)');
	emu_config(latency_ms => 0);
}

# ------------------------------------------------------------------
# 3. a token Atlas revoked early: 1 new grant for all the sessions
# ------------------------------------------------------------------
{
	my $ids = users(40, 'revoked');
	# every session uses the cluster's token once
	my @first = @$ids[ 0 .. 19 ];
	my @second = @$ids[ 20 .. 39 ];
	my $n = 0;
	for my $s (@sessions)
	{
		my ($out) = session_run($s, remove_sql($first[ $n++ ]));
		$n-- unless $out eq 't';
	}
	is($n, 20, 'revoked: the 20 sessions each removed a user with the token');
	emu_config(latency_ms => 300);
	emu('POST', 'expire_tokens');
	emu_reset_counters();
	my ($t0, @res) = sessions_at_once($ctl, \@sessions, [ map { remove_sql($_) } @second ]);
	my $c = emu_counters();
	show('token revoked, 20 sessions at once', $c);
	is(scalar(grep { $_->[0] eq 't' } @res), 20, 'revoked: all 20 removals returned t')
	  or diag join("\n", map { $_->[1] } @res);
	is($c->{token_grants}, 1, 'revoked: the token was replaced with exactly 1 grant for all 20');
	is($c->{token_requests}, 1, 'revoked: exactly 1 token request');
	cmp_ok($c->{bearer_rejections}, '>=', 10,
		'revoked: at least 10 sessions called with the old token at once (401)');
	cmp_ok($c->{bearer_rejections}, '<=', 20,
		'revoked: at most one 401 per session (each renews once)');
	is(emu_route_count($c, $route, '204'), 20, 'revoked: 20 removals answered 204');
	note sprintf('revoked: %d of the 20 sessions had sent the old token before it was replaced',
		$c->{bearer_rejections});
	emu_config(latency_ms => 0);
}

# ------------------------------------------------------------------
# 4. the token cap
# ------------------------------------------------------------------
{
	# (a) a cap of 1 active token: sessions and the worker share the one
	emu_reset();
	emu_config(token_cap => 1);
	my $ids = users(60, 'cap');
	is(ctl_sql('SELECT atlas_forget_tokens()'), 1,
		'cap 1: the cluster forgot its token');
	emu_reset_counters();
	my ($ok, @errors) = separate_sessions($node, [ @$ids[ 0 .. 29 ] ]);
	is($ok, 30, 'cap 1: 30 separate sessions removed their user') or diag join("\n", @errors);
	my ($t0, @res) = sessions_at_once($ctl, \@sessions, [ map { remove_sql($_) } @$ids[ 30 .. 49 ] ]);
	is(scalar(grep { $_->[0] eq 't' } @res), 20, 'cap 1: 20 sessions at once removed theirs');
	sql("SELECT atlas_enqueue_remove_project_user('$group', u) FROM unnest("
		  . id_array([ @$ids[ 50 .. 59 ] ]) . ") u");
	my $done = 0;
	for (1 .. 600)
	{
		$done = sql("SELECT count(*) FROM atlas_removal_queue WHERE status = 'done'"
			  . " AND user_id = ANY (" . id_array([ @$ids[ 50 .. 59 ] ]) . ")");
		last if $done == 10;
		sleep 0.05;
	}
	is($done, 10, 'cap 1: the worker removed 10 queued users');
	my $c = emu_counters();
	show('token cap 1: 30 sessions, 20 at once, the worker', $c);
	is($c->{token_grants}, 1, 'cap 1: the cluster took exactly 1 token');
	is($c->{token_cap_denied}, 0, 'cap 1: the cap never refused the cluster');
	is(emu_route_count($c, $route, '204'), 60, 'cap 1: 60 removals answered 204');

	# (b) another client holds every token the cap allows
	emu_reset();
	emu_config(token_cap => 3);
	$ids = users(3, 'capped');
	my @taken = map { [ emu_take_token() ] } 1 .. 4;
	is(join(',', map { $_->[0] } @taken), '200,200,200,403',
		'cap reached: another client took the 3 tokens the cap allows; a 4th is refused');
	is($taken[3][1]{error}, 'access_denied', 'cap reached: the emulator answers access_denied');
	is(ctl_sql('SELECT atlas_forget_tokens()'), 1,
		'cap reached: the cluster forgot its token');
	emu_reset_counters();
	my ($rc, $out, $err) = psql_as($node, 'postgres', remove_sql($ids->[0]));
	note "cap reached, the error: $err";
	like($err, qr/ERROR:/, 'cap reached: the removal fails');
	is($out, '', 'cap reached: no result');
	is(sqlstate_of($err), '42501', 'cap reached: SQLSTATE 42501');
	like($err, qr/ERROR:.*service account's limit of active tokens is reached/,
		"cap reached: the error says the service account's token limit is reached");
	like($err, qr/HINT:.*100 active tokens.*shared_preload_libraries.*revoke the tokens/,
		'cap reached: the hint says what to do (preload, revoke tokens, or wait)');
	unlike($err, qr/access list/i, 'cap reached: nothing blames the IP access list');
	my $c2 = emu_counters();
	is($c2->{token_cap_denied}, 1, 'cap reached: one token request, refused by the cap');
	is($c2->{removal_requests}, 0, 'cap reached: no removal request was sent');
	ok(in_project($ids->[0]), 'cap reached: the user is still in the project');

	# the bulk function makes it a row, with the same words
	my $row = sql("SELECT removed || '|' || coalesce(http_status::text, '') || '|' || error_code"
		  . " || '|' || detail FROM atlas_remove_project_users('$group', "
		  . id_array([ $ids->[1] ]) . ")");
	note "cap reached, the bulk row: $row";
	like($row, qr/^false\|403\|access_denied\|/, 'cap reached: a bulk call returns a 403 access_denied row');
	unlike($row, qr/access list/i, 'cap reached: the bulk row does not blame the access list');

	# other token failures do not blame the access list either (the refused
	# credentials are backed off: atlas_forget_tokens() ends the back-off)
	ctl_sql('SELECT atlas_forget_tokens()');
	emu_fault({ kind => 'status', status => 401, match => '/api/oauth/token',
			auth => JSON::PP::true, count => 1 });
	($rc, $out, $err) = psql_as($node, 'postgres',
		"SET atlas_users.max_retries = 0;\n" . remove_sql($ids->[2]));
	note "token request answered 401, the error: $err";
	like($err, qr/ERROR:.*Atlas token request failed: 401/, 'token 401: the error names the token request');
	like($err, qr/HINT:.*client id and client secret/, 'token 401: the hint names the client id and secret');
	unlike($err, qr/access list/i, 'token 401: nothing blames the IP access list');
	emu('DELETE', 'faults');
}

session_close($_) for @sessions, $ctl;

# ------------------------------------------------------------------
# 5. without shared_preload_libraries: a token per backend
# ------------------------------------------------------------------
{
	emu_reset();
	my $plain = atlas_node('tokens_plain', auth_method => 'service_account');
	my $ids = users(20, 'plain');
	emu_reset_counters();
	my ($ok, @errors) = separate_sessions($plain, [ @$ids[ 0 .. 9 ] ]);
	my $c = emu_counters();
	show('not preloaded, 10 separate sessions', $c);
	is($ok, 10, 'not preloaded: 10 separate sessions removed their user') or diag join("\n", @errors);
	is($c->{token_grants}, 10, 'not preloaded: 10 sessions took 10 tokens, one per backend');

	emu_reset_counters();
	my ($rc, $out, $err) = psql_as($plain, 'postgres',
		join(";\n", map { remove_sql($_) } @$ids[ 10 .. 19 ]));
	$c = emu_counters();
	is($out, join("\n", ('t') x 10), 'not preloaded: one session removed 10 users');
	is($c->{token_grants}, 1, 'not preloaded: one session keeps its token for its 10 removals');
	note 'token grants: 300 preloaded sessions took 1, 10 sessions without preloading took 10';
	$plain->stop;
}

$node->stop;
done_testing();
