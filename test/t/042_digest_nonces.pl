# 042_digest_nonces.pl: digest authentication with short nonces (issue 11).
#
# Atlas's digest nonces expire; a request with an expired nonce and the
# right credentials gets a 401 with stale=true, and the client answers the
# new challenge.  Here the emulator's nonces live 10 s, and one session
# removes a user every 0.45 s for 60 s: every call succeeds, and the 401s
# beyond the session's first challenge are exactly the nonce expiries.
# Counted from the emulator's counters and its request log: a call is
# re-challenged when it comes more than 10 s after its nonce was issued,
# and only then.
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
my $ttl = 10;          # nonce lifetime, s
# between the starts of two calls, s: not a divisor of 10 s, so that no
# call comes just as its nonce ends (each one issued at a call)
my $interval = 0.45;
my $span = 60;         # s of calls
my $eps = 0.05;        # clock tolerance at a nonce's end of life, s

emu_reset();
emu_config(nonce_ttl_s => $ttl);
my $node = atlas_node('nonces', auth_method => 'digest');
my $ids = emu_users(
	count => int($span / $interval) + 10,
	orgId => $org,
	groupIds => [$group],
	prefix => 'nonce');

my $s = psql_session($node);
session_run($s, 'SET client_min_messages = warning');
emu_reset_counters();

# one removal every 0.45 s, for 60 s
my ($n, $ok, @errors) = (0, 0);
my $t0 = time;
while (time - $t0 < $span)
{
	my $due = $t0 + $n * $interval;
	sleep($due - time) if $due > time;
	my ($out, $err) = session_run($s, "SELECT atlas_remove_project_user('$group', '$ids->[$n]')");
	if ($out eq 't') { $ok++; }
	else { push @errors, "call $n: '$out' $err"; }
	$n++;
}
my $dt = time - $t0;
session_close($s);

my $c = emu_counters();
my @log = emu_route_log($route);

# The calls, from the request log: when each was first sent, and its 401s.
my @calls;
for my $e (@log)
{
	my $t = $e->{time} - $e->{duration_ms} / 1000;
	push @calls, { t => $t, n401 => 0 } if !@calls || $calls[-1]{done};
	$calls[-1]{n401}++ if $e->{status} eq '401';
	$calls[-1]{done} = 1 if $e->{status} ne '401';
	$calls[-1]{issued} = $t if $e->{status} eq '401';
}

# Which calls found their nonce expired: those that came more than the
# nonce lifetime after the challenge that issued it.
my ($expiries, $misplaced, $close) = (0, 0, 0);
my $issued = $calls[0]{issued};
for my $call (@calls[ 1 .. $#calls ])
{
	my $age = $call->{t} - $issued;
	my $expired = $call->{n401} > 0;
	$close++ if abs($age - $ttl) <= $eps;
	$misplaced++ if ($expired && $age < $ttl - $eps) || (!$expired && $age > $ttl + $eps);
	if ($expired)
	{
		$expiries++;
		$issued = $call->{issued};
	}
}

note sprintf(
	'%d calls in %.1f s (one every %.2f s): removal 204=%d 401=%d; digest_challenges=%d'
	  . ' digest_stale_challenges=%d; nonce expiries seen in the log: %d (%d calls within %.2f s'
	  . ' of a nonce\'s end of life)',
	$n, $dt, $dt / $n, emu_route_count($c, $route, '204'), emu_route_count($c, $route, '401'),
	$c->{digest_challenges}, $c->{digest_stale_challenges}, $expiries, $close, $eps);
note 're-challenged calls, s after the first call: '
  . join(' ', map { sprintf '%.2f', $_->{t} - $calls[0]{t} } grep { $_->{n401} } @calls);

cmp_ok($n, '>=', 100, 'at least 100 calls over 60 s');
is($ok, $n, 'every call succeeded (t)') or diag join("\n", @errors[ 0 .. ($#errors < 4 ? $#errors : 4) ]);
is(emu_route_count($c, $route, '204'), $n, 'every call was answered 204');
is(scalar @calls, $n, 'the request log holds one call per statement');
is($calls[0]{n401}, 1, 'the first call was challenged once (the session had no nonce)');
cmp_ok($expiries, '>=', int($span / ($ttl + $interval)),
	sprintf('the nonces expired at least %d times over %d s', int($span / ($ttl + $interval)), $span));
is($misplaced, 0,
	'a call was re-challenged exactly when its nonce was older than 10 s, and never otherwise');
is(scalar(grep { $_->{n401} > 1 } @calls), 0, 'no call was challenged more than once');
is($c->{digest_stale_challenges}, $expiries, 'the stale=true challenges equal the nonce expiries');
is($c->{digest_challenges} - 1, $expiries,
	'the 401s beyond the first challenge equal the nonce expiries');
is($c->{removal_requests}, $n + 1 + $expiries,
	'requests: one per call, plus the first challenge, plus one per nonce expiry');

$node->stop;
done_testing();
