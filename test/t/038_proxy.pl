# 038_proxy.pl: calls to Atlas through an HTTP proxy (issue 21), with the
# test proxy of test/proxy.py, and never through the environment's.
#
# - The postmaster runs with https_proxy, http_proxy and ALL_PROXY naming a
#   proxy: with no proxy option, calls go straight to Atlas (the proxy logs
#   nothing).
# - atlas_users.proxy sends them through a CONNECT tunnel, even with
#   no_proxy naming the host: the removal works, the tunnel carries only
#   TLS (no secret, token or request line in clear, service account and
#   digest), and TLS is still verified end to end (the system store fails
#   with 08006 through the tunnel, and Atlas gets no request).
# - A proxy that refuses the CONNECT (403) gives 08006 naming it; the user
#   is not removed and Atlas gets no request.
# - The server option proxy and the mapping's proxy_user and
#   proxy_password_file: a proxy that wants credentials gets them (Basic);
#   a wrong password gives 08006 (407); a user without a password is 55000;
#   proxy '' on a server goes straight to Atlas whatever the setting says.
# - The validator and the setting refuse a proxy URL that is not http(s),
#   holds credentials or a path.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $root = $ENV{ATLAS_TEST_ROOT};
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my ($https_port) = $ENV{ATLAS_EMULATOR_HTTPS_URL} =~ /:(\d+)$/;

# ------------------------------------------------------------------
# test proxies, stopped at the end
# ------------------------------------------------------------------
my @procs;

sub start_proxy
{
	my ($name, @args) = @_;
	my $pf = "$tmp/$name.port";
	unlink $pf;
	my %p = (log => "$tmp/$name.log", capture => "$tmp/$name.capture");
	my $h = IPC::Run::start(
		[
			'python3', "$root/proxy.py", '--port-file', $pf,
			'--log', $p{log}, '--capture', $p{capture}, @args
		],
		'<', \undef, '>', "$tmp/$name.out", '2>', "$tmp/$name.err");
	push @procs, $h;
	my $deadline = time + 30;
	sleep 0.05 until -s $pf || time > $deadline;
	die "proxy $name did not start: " . slurp_file("$tmp/$name.err") unless -s $pf;
	$p{port} = decode_json(slurp_file($pf))->{port};
	$p{url} = "http://127.0.0.1:$p{port}";
	return \%p;
}

END
{
	local $?;
	for my $h (@procs)
	{
		eval { $h->signal('TERM'); $h->finish; 1 } or eval { $h->kill_kill };
	}
}

# The request heads a proxy logged.
sub heads
{
	my ($p) = @_;
	return [ map { decode_json($_) } grep { /\S/ } split /\n/, slurp_file($p->{log}) ];
}

my $plain = start_proxy('plain');
my $refusing = start_proxy('refusing', '--refuse');
my $guarded = start_proxy('guarded', '--user', 'pxuser', '--password', 'px-secret-7');

emu_reset();
my $ids = emu_users(count => 12, orgId => $org, groupIds => [$group], prefix => 'proxy');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }
sub removals { return emu_route_count(emu_counters(), $route); }

# The environment a proxy-following program would obey: the postmaster
# inherits it (this script's own requests to the emulator do not).
my $node;
{
	local $ENV{https_proxy} = $plain->{url};
	local $ENV{HTTPS_PROXY} = $plain->{url};
	local $ENV{http_proxy} = $plain->{url};
	local $ENV{ALL_PROXY} = $plain->{url};
	local $ENV{no_proxy} = 'localhost,127.0.0.1';
	$node = atlas_node('proxy', auth_method => 'service_account', timeout_ms => 5000);
}

my $s = $node->background_psql('postgres',
	on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);

sub sq { return bg_query($s, $_[0]); }

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

# ------------------------------------------------------------------
# 1. no option: the environment's proxy is not used
# ------------------------------------------------------------------
sq('CREATE TEMP TABLE env (v text)');
sq(q{COPY env FROM PROGRAM 'printenv https_proxy no_proxy'});
my ($env) = sq(q{SELECT string_agg(v, ' ') FROM env});
is($env, "$plain->{url} localhost,127.0.0.1", 'the server has https_proxy and no_proxy in its environment');
my ($o, $e) = sq(remove_sql(fresh_user()));
is($o, 't', 'no proxy option: the removal works') or diag $e;
is(scalar @{ heads($plain) }, 0, 'no proxy option: the proxy of the environment saw nothing');

# ------------------------------------------------------------------
# 2. atlas_users.proxy: through the tunnel, TLS verified end to end
# ------------------------------------------------------------------
sq("SET atlas_users.proxy = '$plain->{url}'");
my $before = removals();
($o, $e) = sq(remove_sql(fresh_user()));
is($o, 't', 'atlas_users.proxy: the removal works through the proxy') or diag $e;
is(removals(), $before + 1, 'atlas_users.proxy: Atlas got the removal');
my @tunnels = grep { $_->{method} eq 'CONNECT' && $_->{status} == 200 } @{ heads($plain) };
ok(scalar @tunnels >= 1, 'the call went through a CONNECT tunnel (no_proxy of the environment ignored)');
is($tunnels[0]{target}, "localhost:$https_port", 'the tunnel leads to the emulator');
is(scalar(grep { $_->{method} ne 'CONNECT' } @{ heads($plain) }), 0,
	'the proxy got no plain request, only CONNECT');

# digest too, then look at everything the proxy saw
sq("SET atlas_users.auth_method = 'digest'");
($o, $e) = sq(remove_sql(fresh_user()));
is($o, 't', 'digest through the proxy works') or diag $e;
sq('RESET atlas_users.auth_method');
{
	my $seen = slurp_file($plain->{capture});
	my $secrets = $ENV{ATLAS_SECRETS};
	ok(length($seen) > 1000, 'the proxy relayed the traffic');
	like($seen, qr/^\x16\x03/, 'the tunnel starts with a TLS handshake');
	my $cs = AtlasTest::_slurp("$secrets/client_secret");
	my $cid = AtlasTest::_slurp("$secrets/client_id");
	my $pk = AtlasTest::_slurp("$secrets/private_key");
	my $basic = encode_base64("$cid:$cs", '');
	my $leaks = 0;
	for my $needle ($cs, $pk, $basic, 'Authorization', 'access_token', '/api/atlas/v2', $ids->[1])
	{
		$leaks++ if index($seen, $needle) >= 0;
	}
	is($leaks, 0, 'no secret, token, header, path or user id in clear in the tunnel');
}

# TLS still verified through the tunnel: the system store fails
sq("SET atlas_users.ca_file = ''");
$before = removals();
my $n_heads = scalar @{ heads($plain) };
($o, $e) = sq(remove_sql(fresh_user()));
is(sqlstate_of($e), '08006', 'through the proxy, an unverified certificate is 08006') or diag $e;
like($e, qr/SSL|certificate/i, 'the error names the TLS failure');
ok(scalar @{ heads($plain) } > $n_heads, 'the tunnel was opened');
is(removals(), $before, 'Atlas got no removal');
sq('RESET atlas_users.ca_file');

# ------------------------------------------------------------------
# 3. a proxy that refuses
# ------------------------------------------------------------------
sq("SET atlas_users.proxy = '$refusing->{url}'");
$before = removals();
my $victim = fresh_user();
($o, $e) = sq(remove_sql($victim));
like(sqlstate_of($e), qr/^08/, 'a refusing proxy: an 08xxx error') or diag $e;
like($e, qr/CONNECT tunnel failed, response 403/, 'the error says the proxy refused');
note $e;
is(removals(), $before, 'a refusing proxy: Atlas got no removal');
is((grep { $_->{status} == 403 } @{ heads($refusing) }) ? 1 : 0, 1, 'the refusing proxy was asked');
sq("RESET atlas_users.proxy");
($o, $e) = sq(remove_sql($victim));
is($o, 't', 'without the proxy the same user is still there to remove') or diag $e;

# ------------------------------------------------------------------
# 4. server option and mapping credentials
# ------------------------------------------------------------------
my $pw = key_file($node, 'proxy_password', 'px-secret-7');
my $bad = key_file($node, 'proxy_password_bad', 'not-it');
my $pk = AtlasTest::_slurp("$ENV{ATLAS_SECRETS}/public_key");
$node->safe_psql('postgres', qq{
	CREATE SERVER px FOREIGN DATA WRAPPER atlas_users
		OPTIONS (base_url '$ENV{ATLAS_EMULATOR_HTTPS_URL}', ca_file '$ENV{ATLAS_TEST_CA}',
			auth_method 'digest', proxy '$guarded->{url}');
	CREATE USER MAPPING FOR postgres SERVER px
		OPTIONS (public_key '$pk', private_key_file '$ENV{ATLAS_SECRETS}/private_key',
			proxy_user 'pxuser', proxy_password_file '$pw');
});
sq("SET atlas_users.server = 'px'");
($o, $e) = sq(remove_sql(fresh_user()));
is($o, 't', 'server option proxy with the mapping\'s credentials: the removal works') or diag $e;
my @ok = grep { $_->{status} == 200 && $_->{proxy_auth} } @{ heads($guarded) };
ok(scalar @ok >= 1, 'the guarded proxy got its credentials');

$node->safe_psql('postgres',
	"ALTER USER MAPPING FOR postgres SERVER px OPTIONS (SET proxy_password_file '$bad')");
$before = removals();
($o, $e) = sq(remove_sql(fresh_user()));
like(sqlstate_of($e), qr/^08/, 'a wrong proxy password: an 08xxx error') or diag $e;
unlike($e, qr/not-it|px-secret-7/, 'the error shows no proxy password');
is(removals(), $before, 'a wrong proxy password: Atlas got no removal');

$node->safe_psql('postgres',
	"ALTER USER MAPPING FOR postgres SERVER px OPTIONS (DROP proxy_password_file)");
($o, $e) = sq(remove_sql(fresh_user()));
is(sqlstate_of($e), '55000', 'a proxy user without a password: 55000') or diag $e;
like($e, qr/incomplete proxy credentials/, 'the error says what is missing');

# proxy '' on the server: straight to Atlas, whatever the setting says
$node->safe_psql('postgres', "ALTER SERVER px OPTIONS (SET proxy '')");
sq("SET atlas_users.proxy = '$refusing->{url}'");
my $asked = scalar @{ heads($refusing) };
($o, $e) = sq(remove_sql(fresh_user()));
is($o, 't', "server option proxy '': the call goes straight to Atlas") or diag $e;
is(scalar @{ heads($refusing) }, $asked, "server option proxy '': the setting's proxy is not asked");
sq('RESET atlas_users.proxy');
sq('RESET atlas_users.server');

# ------------------------------------------------------------------
# 5. what the validator and the setting refuse
# ------------------------------------------------------------------
for my $url ('socks5://127.0.0.1:1080', 'http://u:p@127.0.0.1:3128', 'http://127.0.0.1:3128/x', '127.0.0.1:3128')
{
	($o, $e) = sq("ALTER SERVER px OPTIONS (SET proxy '$url')");
	is(sqlstate_of($e), 'HV024', "server option proxy '$url' is refused") or diag $e;
	unlike($e, qr/u:p/, 'the refusal shows no credentials of the URL');
	($o, $e) = sq("SET atlas_users.proxy = '$url'");
	is(sqlstate_of($e), '22023', "atlas_users.proxy '$url' is refused") or diag $e;
}
($o, $e) = sq("ALTER USER MAPPING FOR postgres SERVER px OPTIONS (ADD proxy_password 'x', ADD proxy_password_file '$pw')");
like($e, qr/cannot both be set/, 'proxy_password and proxy_password_file are not both allowed');

$s->quit;
$node->stop;
done_testing();
