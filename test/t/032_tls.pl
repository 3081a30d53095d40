# 032_tls.pl: TLS verification is always on; http only to loopback; no
# redirects; only http and https.
#
# - The test CA verifies the emulator (by name and by IP address SAN).
# - A certificate for another host name (wronghost.crt), an expired one
#   (expired.crt, 2020), the system CA store (ca_file = '') and an
#   unrelated CA all end with 08006 and an SSL message, and the server
#   never sees an API request.  No setting turns verification off.
# - base_url: http to a non-loopback host, other schemes, credentials,
#   queries and fragments are refused at SET time (22023); http to
#   127.0.0.0/8, localhost and [::1] is accepted, and works.
# - 301, 302, 303, 307 and 308 answers with a Location are not followed
#   (58000, the emulator gets exactly one request per call, the target of
#   the Location none).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $certs = dirname($ENV{ATLAS_TEST_CA});
my $root = $ENV{ATLAS_TEST_ROOT};
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my ($https_port) = $ENV{ATLAS_EMULATOR_HTTPS_URL} =~ /:(\d+)$/;
my ($http_port) = $ENV{ATLAS_EMULATOR_URL} =~ /:(\d+)$/;

# ------------------------------------------------------------------
# extra emulators with other certificates, stopped at the end
# ------------------------------------------------------------------
my @extra;

sub start_emulator
{
	my ($name, $cert, $key) = @_;
	my $pf = "$tmp/$name.ports";
	unlink $pf;
	my $h = IPC::Run::start(
		[
			'python3', "$root/emulator/atlas_emulator.py",
			'--host', '127.0.0.1', '--http-port', '0', '--https-port', '0',
			'--cert', $cert, '--key', $key,
			'--seed', "$root/emulator/seed.json", '--port-file', $pf
		],
		'<', \undef, '>', "$tmp/$name.out", '2>', "$tmp/$name.err");
	push @extra, $h;
	my $deadline = time + 30;
	sleep 0.1 until -s $pf || time > $deadline;
	die "emulator $name did not start: " . slurp_file("$tmp/$name.err") unless -s $pf;
	my $ports = decode_json(slurp_file($pf));
	return $ports;
}

END
{
	for my $h (@extra)
	{
		eval { $h->signal('TERM'); $h->finish; 1 } or eval { $h->kill_kill };
	}
}

# Counters of an extra emulator, over its http listener.
sub counters_of
{
	my ($ports) = @_;
	my $res = HTTP::Tiny->new(timeout => 10)
	  ->get("http://127.0.0.1:$ports->{http_port}/__emulator/counters");
	die "counters: $res->{status}" unless $res->{success};
	return decode_json($res->{content});
}

emu_reset();
my $ids = emu_users(count => 20, orgId => $org, groupIds => [$group], prefix => 'tls');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }

my $node = atlas_node('tls', auth_method => 'digest', timeout_ms => 5000);

my $s = $node->background_psql('postgres',
	on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);

sub sq { return bg_query($s, $_[0]); }

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

my ($pid) = sq('SELECT pg_backend_pid()');

# ------------------------------------------------------------------
# 1. verification
# ------------------------------------------------------------------
{
	my ($o, $e) = sq(remove_sql(fresh_user()));
	is($o, 't', 'the test CA verifies the emulator (https://localhost)') or diag $e;
	sq("SET atlas_users.base_url = 'https://127.0.0.1:$https_port'");
	($o, $e) = sq(remove_sql(fresh_user()));
	is($o, 't', 'the test CA verifies the emulator by its IP address SAN (https://127.0.0.1)') or diag $e;
	sq('RESET atlas_users.base_url');

	my $wrong = start_emulator('wronghost', "$certs/wronghost.crt", "$certs/wronghost.key");
	my $expired = start_emulator('expired', "$certs/expired.crt", "$certs/expired.key");

	sq("SET atlas_users.base_url = 'https://localhost:$wrong->{https_port}'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'a certificate for another host name: 08006') or diag $e;
	like($e, qr/could not reach Atlas at localhost:$wrong->{https_port}: .*(SSL|certificate|subject)/i,
		'wrong host: the message names the host and the SSL failure');
	note "wrong host: $1" if $e =~ /(could not reach Atlas[^\n]*)/;
	my $c = counters_of($wrong);
	is($c->{requests_total}, 0, 'wrong host: the server got no API request');
	cmp_ok($c->{connections_accepted}, '>=', 1,
		'wrong host: the client did connect (and gave up on the certificate)');

	sq("SET atlas_users.base_url = 'https://localhost:$expired->{https_port}'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'an expired certificate: 08006') or diag $e;
	like($e, qr/could not reach Atlas at localhost:$expired->{https_port}: .*(SSL|certificate).*expired/i,
		'expired: the message says the certificate has expired');
	note "expired: $1" if $e =~ /(could not reach Atlas[^\n]*)/;
	is(counters_of($expired)->{requests_total}, 0, 'expired: the server got no API request');

	# the same servers over a session that first worked with the good one
	sq('RESET atlas_users.base_url');
	($o, $e) = sq(remove_sql(fresh_user()));
	is($o, 't', 'back to the good server: works (a kept connection does not bypass checks)') or diag $e;
	sq("SET atlas_users.base_url = 'https://localhost:$wrong->{https_port}'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'wrong host again after a good call: 08006');
	sq('RESET atlas_users.base_url');

	# the system store does not know the test CA
	sq("SET atlas_users.ca_file = ''");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'no CA file (system store) against the test server: 08006') or diag $e;
	like($e, qr/(SSL|certificate|issuer)/i, 'system store: an SSL message');
	note "system store: $1" if $e =~ /(could not reach Atlas[^\n]*)/;

	# an unrelated CA
	my $other = "$tmp/other_ca";
	system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-subj', '/CN=another CA', '-keyout', "$other.key", '-out', "$other.crt") == 0
	  or die 'openssl failed';
	sq("SET atlas_users.ca_file = '$other.crt'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'an unrelated CA: 08006') or diag $e;

	sq("SET atlas_users.ca_file = '$tmp/no_such_ca.crt'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'a CA file that does not exist: 08006') or diag $e;

	# the server certificate itself as the only trust anchor is not a CA
	sq("SET atlas_users.ca_file = '$certs/wronghost.crt'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'a CA file with an unrelated leaf certificate: 08006') or diag $e;
	sq('RESET atlas_users.ca_file');

	# nothing turns verification off
	my $names = $node->safe_psql('postgres',
		"LOAD 'atlas_users'; SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings WHERE name LIKE 'atlas_users.%'");
	unlike($names, qr/verify|insecure|ssl|tls|cert(?!ificate)/i,
		"no setting to turn verification off among: $names");
	for my $n (qw(ssl_verify verify_peer verify_host insecure ssl_verifypeer tls_verify))
	{
		($o, $e) = sq("SET atlas_users.$n = off");
		like($e, qr/ERROR/, "SET atlas_users.$n is refused");
	}
	is(emu_route_count(emu_counters(), $route, '204'), 3, 'the main emulator got only the 3 good removals');
	($o) = sq('SELECT pg_backend_pid()');
	is($o, $pid, 'the backend survived every TLS failure');
}

# ------------------------------------------------------------------
# 2. base_url: http only to loopback, https otherwise, nothing else
# ------------------------------------------------------------------
{
	my @refused = (
		'http://10.0.0.1/', 'http://192.168.1.1:8080', 'http://example.com/',
		'http://cloud.mongodb.com', 'http://169.254.169.254/latest/meta-data',
		'http://0.0.0.0/', 'http://128.0.0.1/', 'http://[::2]/', 'http://[::]/',
		'http://127.0.0.1.nip.io/', 'http://localhost.example.com/', 'http://localhost./',
		'http://127.0.0.1@evil.example/', 'http://user:pw@127.0.0.1/',
		'https://user:pw@cloud.mongodb.com', 'https://cloud.mongodb.com/?x=1',
		'https://cloud.mongodb.com/#f', 'ftp://127.0.0.1/', 'ftps://127.0.0.1/',
		'file:///etc/passwd', 'gopher://127.0.0.1/', 'ldap://127.0.0.1/', 'dict://127.0.0.1/',
		'telnet://127.0.0.1/', 'scp://127.0.0.1/', 'sftp://127.0.0.1/', 'smtp://127.0.0.1/',
		'imap://127.0.0.1/', 'tftp://127.0.0.1/', 'ws://127.0.0.1/', 'wss://127.0.0.1/',
		'mqtt://127.0.0.1/', 'rtsp://127.0.0.1/', 'javascript:alert(1)', 'cloud.mongodb.com',
		'//cloud.mongodb.com', 'https://', 'http:///x', '');
	my @wrong;
	for my $url (@refused)
	{
		my ($o, $e) = sq("SET atlas_users.base_url = '$url'");
		push @wrong, "$url: " . ($e || 'accepted') unless sqlstate_of($e) eq '22023';
	}
	is(scalar(@wrong), 0, 'base_url: ' . scalar(@refused)
		  . ' URLs (http to non-loopback, other schemes, credentials, query, fragment) refused with 22023')
	  or diag join("\n", @wrong);
	my ($o, $e) = sq("SET atlas_users.base_url = 'http://10.0.0.1/'");
	like($e, qr/http is allowed only for loopback hosts/, 'the error says http is only for loopback');
	($o, $e) = sq("SET atlas_users.base_url = 'ftp://127.0.0.1/'");
	like($e, qr/must use https/, 'the error for ftp says https');
	($o) = sq('SHOW atlas_users.base_url');
	is($o, $ENV{ATLAS_EMULATOR_HTTPS_URL}, 'base_url unchanged after the refused values');

	my @accepted = ("http://127.0.0.2:$http_port", "http://localhost:$http_port/",
		"http://127.255.255.254/", "http://[::1]:$http_port", "HTTP://127.0.0.1:$http_port",
		"http://LOCALHOST:$http_port", "https://cloud.mongodb.com", "https://cloud.mongodb.com/");
	@wrong = ();
	for my $url (@accepted)
	{
		($o, $e) = sq("SET atlas_users.base_url = '$url'");
		push @wrong, "$url: $e" if $e =~ /ERROR/;
	}
	is(scalar(@wrong), 0, 'base_url: http to 127.0.0.0/8, localhost, [::1], and https are accepted')
	  or diag join("\n", @wrong);

	for my $url ("http://127.0.0.1:$http_port", "http://localhost:$http_port")
	{
		sq("SET atlas_users.base_url = '$url'");
		($o, $e) = sq(remove_sql(fresh_user()));
		is($o, 't', "http to loopback works: $url") or diag $e;
	}
	sq("SET atlas_users.base_url = 'http://127.0.0.2:$http_port'");
	($o, $e) = sq(remove_sql($ids->[19]));
	is(sqlstate_of($e), '08006', 'http://127.0.0.2 (nothing listens): 08006, connection refused') or diag $e;
	sq('RESET atlas_users.base_url');
}

# ------------------------------------------------------------------
# 3. redirects are never followed
# ------------------------------------------------------------------
{
	my $warm = fresh_user();
	my ($o, $e) = sq(remove_sql($warm));
	is($o, 't', 'redirects: a first call (digest handshake done)') or diag $e;
	my @targets = (
		"$ENV{ATLAS_EMULATOR_HTTPS_URL}/api/atlas/v2/groups/$group/users/TARGET",
		"$ENV{ATLAS_EMULATOR_URL}/api/atlas/v2/groups/$group/users/TARGET",
		"/api/atlas/v2/groups/$group/users/TARGET",
		"ftp://127.0.0.1:$http_port/TARGET",
		"http://10.0.0.1/TARGET");
	my $i = 0;
	for my $status (301, 302, 303, 307, 308)
	{
		my $u = fresh_user();
		my $target_user = fresh_user();
		(my $loc = $targets[ $i++ % @targets ]) =~ s/TARGET/$target_user/;
		emu_fault({ kind => 'status', status => $status, match => $u, count => 1,
			headers => { Location => $loc } });
		emu_reset_counters();
		($o, $e) = sq(remove_sql($u));
		my $c = emu_counters();
		is(sqlstate_of($e), '58000', "$status to $loc: 58000") or diag $e;
		like($e, qr/Atlas API error $status/, "$status: the message has the status");
		like($e, qr/HINT:\s+atlas_users does not follow redirects/, "$status: the hint says redirects are not followed");
		is($c->{requests_total}, 1, "$status: exactly one request reached the emulator");
		is(emu_route_count($c, $route, $status), 1, "$status: it was the removal, answered $status");
		my $st = emu('GET', "state?user=$target_user");
		ok(exists $st->{projects}{$group}, "$status: the Location's user was not removed");
		is(scalar(@{ emu('GET', 'requests?limit=5')->{requests} }), 1,
			"$status: the request log has only that request");
	}
	($o) = sq('SELECT pg_backend_pid()');
	is($o, $pid, 'redirects: the same backend');
}

$s->quit;
$node->stop;
done_testing();
