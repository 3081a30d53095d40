# 002_cancel.pl: a call stuck on a hung Atlas ends promptly on a query
# cancel or statement_timeout, and leaves the backend clean.
#
# The emulator's 'hang' fault accepts a removal request and never answers.
# The call must end with 57014 within 1 s of pg_cancel_backend() or of the
# statement_timeout, the same backend must go on working, and it must not
# keep the aborted connection: its socket count (/proc/<pid>/fd) never
# exceeds the count after its first successful call, and the emulator's
# open connections drop back.
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
my $limit = 1.0;    # seconds from cancel (or timeout) to the error

emu_reset();
my $node = atlas_node('cancel', auth_method => 'digest');
my $ids = emu_users(
	count => 20,
	orgId => $org,
	groupIds => [$group],
	prefix => 'cancel');

# A psql session (AtlasTest's psql_session) that shows warnings only.
sub session
{
	my $s = psql_session($node);
	session_run($s, 'SET client_min_messages = warning');
	return $s;
}

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

my $s = session();
my $ctl = session();    # sends the cancels

my ($pid) = session_run($s, 'SELECT pg_backend_pid()');
like($pid, qr/^\d+$/, "backend pid $pid");

# baseline: one successful call leaves one cached connection
my ($out, $err) = session_run($s, remove_sql($ids->[0]));
is($out, 't', 'first removal succeeds');
my $base_sockets = socket_count($pid);
my $base_active = emu_counter('active_connections');
note "baseline after one call: backend sockets=$base_sockets, emulator active_connections=$base_active";
cmp_ok($base_active, '>=', 1, 'the emulator holds the cached connection open');

# Start a removal that the emulator hangs on; returns the send time once
# the emulator has the request (the hang fault was applied).
sub start_hung_call
{
	my ($user) = @_;
	my $before = emu_counter('faults_triggered');
	emu_fault({ kind => 'hang', match => $user, count => 1 });
	my $t0 = time;
	my $m = session_send($s, remove_sql($user));
	my $now = wait_counter('faults_triggered', sub { $_[0] > $before }, 10);
	return ($t0, $m, $now > $before);
}

# ------------------------------------------------------------------
# 1. pg_cancel_backend about 1 s into a hung call
# ------------------------------------------------------------------
{
	my ($t0, $m, $hung) = start_hung_call($ids->[1]);
	ok($hung, 'cancel: the emulator is hanging on the removal request');
	my $in_flight = emu_counter('in_flight_requests');
	is($in_flight, 1, 'cancel: one request in flight at the emulator');
	sleep(1.0 - (time - $t0)) if time - $t0 < 1.0;
	ok(!defined session_wait($s, 'err', qr/ERROR/, 0), 'cancel: the call is still running after 1 s');

	my $tc = time;
	session_cancel($ctl, $pid);
	my $te = session_wait($s, 'err', qr/ERROR:\s+57014/, 30);
	ok(defined $te, 'cancel: the call ended with SQLSTATE 57014') or diag $s->{err};
	my $lat = defined $te ? $te - $tc : 999;
	note sprintf('cancel: started %.3f s before the cancel, ended %.3f s after it',
		$tc - $t0, $lat);
	cmp_ok($lat, '<', $limit, "cancel: ended within $limit s of pg_cancel_backend");
	session_wait($s, 'out', qr/^\Q$m\E$/m, 10);
	unlike($s->{out}, qr/^t$/m, 'cancel: the cancelled call returned nothing');
	my ($cancelled) = session_run($ctl, 'SELECT 1');    # drain the cancel's answer

	my $after_cancel = socket_count($pid);
	note "cancel: backend sockets right after the cancel: $after_cancel";
	cmp_ok($after_cancel, '<', $base_sockets,
		'cancel: the aborted connection is closed right away');
	my $active = wait_counter('active_connections', sub { $_[0] < $base_active }, 10);
	cmp_ok($active, '<', $base_active,
		'cancel: the emulator sees the aborted connection closed');
	is(wait_counter('in_flight_requests', sub { $_[0] == 0 }, 10),
		0, 'cancel: no request left in flight at the emulator');

	# the same backend still works, and removes the same user
	($out, $err) = session_run($s, remove_sql($ids->[1]));
	is($out, 't', 'cancel: the same session removes the user afterwards') or diag $err;
	my $n = socket_count($pid);
	note "cancel: backend sockets after the next successful call: $n (baseline $base_sockets)";
	cmp_ok($n, '<=', $base_sockets, 'cancel: no socket growth over the baseline');
	cmp_ok(emu_counter('active_connections'),
		'<=', $base_active, 'cancel: emulator active_connections back to the baseline');
}

# ------------------------------------------------------------------
# 2. statement_timeout = 1s on a hung call
# ------------------------------------------------------------------
{
	session_run($s, "SET statement_timeout = '1s'");
	my ($t0, $m, $hung) = start_hung_call($ids->[2]);
	ok($hung, 'timeout: the emulator is hanging on the removal request');
	my $te = session_wait($s, 'err', qr/ERROR:\s+57014/, 30);
	ok(defined $te, 'timeout: the call ended with SQLSTATE 57014') or diag $s->{err};
	like($s->{err}, qr/statement timeout/, 'timeout: the error is the statement timeout');
	my $total = defined $te ? $te - $t0 : 999;
	note sprintf('timeout: the call ended %.3f s after it was sent (%.3f s after the 1 s timeout)',
		$total, $total - 1.0);
	cmp_ok($total, '>=', 0.9, 'timeout: the call did wait for the timeout');
	cmp_ok($total, '<', 1.0 + $limit, "timeout: ended within $limit s after the 1 s timeout");
	session_wait($s, 'out', qr/^\Q$m\E$/m, 10);
	session_run($s, 'RESET statement_timeout');

	is(wait_counter('in_flight_requests', sub { $_[0] == 0 }, 10),
		0, 'timeout: no request left in flight at the emulator');
	($out, $err) = session_run($s, remove_sql($ids->[2]));
	is($out, 't', 'timeout: the same session removes the user afterwards') or diag $err;
	my $n = socket_count($pid);
	note "timeout: backend sockets after the next successful call: $n (baseline $base_sockets)";
	cmp_ok($n, '<=', $base_sockets, 'timeout: no socket growth over the baseline');
	my $active = wait_counter('active_connections', sub { $_[0] <= $base_active }, 10);
	cmp_ok($active, '<=', $base_active, 'timeout: emulator active_connections back to the baseline');
}

# ------------------------------------------------------------------
# 3. five cancels in one session
# ------------------------------------------------------------------
{
	my @lat;
	my $all_57014 = 1;
	for my $i (1 .. 5)
	{
		my $user = $ids->[ 2 + $i ];
		my ($t0, $m, $hung) = start_hung_call($user);
		$all_57014 = 0 unless $hung;
		sleep 0.2;
		my $tc = time;
		session_cancel($ctl, $pid);
		my $te = session_wait($s, 'err', qr/ERROR:\s+57014/, 30);
		$all_57014 = 0 unless defined $te;
		push @lat, defined $te ? $te - $tc : 999;
		session_wait($s, 'out', qr/^\Q$m\E$/m, 10);
		session_run($ctl, 'SELECT 1');
		my $n = socket_count($pid);
		note sprintf('repeat %d: ended %.3f s after the cancel; backend sockets %d',
			$i, $lat[-1], $n);
		($out, $err) = session_run($s, remove_sql($user));
		$all_57014 = 0 unless $out eq 't';
	}
	ok($all_57014, 'repeat: 5 hung calls, each cancelled with 57014, each user removed afterwards');
	my ($max) = sort { $b <=> $a } @lat;
	note sprintf('repeat: cancel latencies %s', join(' ', map { sprintf '%.3f', $_ } @lat));
	cmp_ok($max, '<', $limit, "repeat: every cancel ended within $limit s");
	my $n = socket_count($pid);
	note "repeat: backend sockets after 5 cancels and a successful call: $n (baseline $base_sockets)";
	cmp_ok($n, '<=', $base_sockets, 'repeat: no socket growth after 5 cancels');
	my $active = wait_counter('active_connections', sub { $_[0] <= $base_active }, 10);
	cmp_ok($active, '<=', $base_active, 'repeat: emulator active_connections back to the baseline');
	is(emu_counter('in_flight_requests'), 0, 'repeat: nothing in flight at the emulator');
}

# ------------------------------------------------------------------
# 4. cancel while the service-account token request hangs
# ------------------------------------------------------------------
{
	session_run($s, "SET atlas_users.auth_method = 'service_account'");
	my $before = emu_counters();
	emu_fault(
		{ kind => 'hang', match => '/api/oauth/token', auth => JSON::PP::true, count => 1 });
	my $t0 = time;
	my $m = session_send($s, remove_sql($ids->[8]));
	my $now = wait_counter('faults_triggered', sub { $_[0] > $before->{faults_triggered} }, 10);
	cmp_ok($now, '>', $before->{faults_triggered}, 'token hang: the emulator hangs on the token request');
	sleep 0.5;
	my $tc = time;
	session_cancel($ctl, $pid);
	my $te = session_wait($s, 'err', qr/ERROR:\s+57014/, 30);
	ok(defined $te, 'token hang: the call ended with SQLSTATE 57014') or diag $s->{err};
	my $lat = defined $te ? $te - $tc : 999;
	note sprintf('token hang: ended %.3f s after the cancel', $lat);
	cmp_ok($lat, '<', $limit, "token hang: ended within $limit s of pg_cancel_backend");
	session_wait($s, 'out', qr/^\Q$m\E$/m, 10);
	session_run($ctl, 'SELECT 1');
	my $mid = emu_counters();
	is($mid->{removal_requests} - $before->{removal_requests},
		0, 'token hang: no removal request was sent');

	($out, $err) = session_run($s, remove_sql($ids->[8]));
	is($out, 't', 'token hang: the same session removes the user afterwards') or diag $err;
	my $after = emu_counters();
	is($after->{token_grants} - $mid->{token_grants}, 1, 'token hang: one token granted afterwards');
	my $n = socket_count($pid);
	note "token hang: backend sockets after the next successful call: $n (baseline $base_sockets)";
	cmp_ok($n, '<=', $base_sockets, 'token hang: no socket growth over the baseline');
	my $active = wait_counter('active_connections', sub { $_[0] <= $base_active }, 10);
	cmp_ok($active, '<=', $base_active, 'token hang: emulator active_connections back to the baseline');
	is(emu_counter('in_flight_requests'), 0, 'token hang: nothing in flight at the emulator');
}

session_close($ctl);
session_close($s);
$node->stop;
done_testing();
