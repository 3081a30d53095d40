# 035_servers.pl: credentials as foreign servers and user mappings,
# counted at the emulator.
#
# - Two servers for two organizations with different keys (Acme: a digest
#   key, Globex: a service account, both in key files); one statement
#   removes a person from both, each request with its own key; the
#   emulator accepts each key for its own organization only.
# - A role with USAGE on acme only removes there, and is refused for globex
#   with 42501 and no request.
# - Options: a non-superuser sees only its own mapping's options
#   (pg_user_mappings, \deu+, our functions), cannot set a *_file option;
#   the server log at debug5 holds no secret after CREATE and ALTER USER
#   MAPPING and calls.
# - Rotation: ALTER USER MAPPING to a new client secret is used at the
#   next call in an existing session and in the worker with exactly one
#   new token grant, and the old token is never used after the ALTER;
#   ALTER SERVER switching the auth method applies at the next call.
# - A row enqueued by role R runs with R's mapping as it is when the row
#   runs, and is audited with requested_by = R and its queue id.
# - A server that echoes request headers into its errors: no secret, Basic
#   credentials or token in the error, the log or the audit, in both auth
#   modes (API errors and token endpoint errors).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use MIME::Base64 qw(encode_base64 encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $acme = '65f0a0000000000000000001';
my $globex = '65f0a0000000000000000002';
my $acme_project = '65f0b0000000000000000001';
my $dave = '65f0d0000000000000000007';

# the seed's credentials: each valid for its own organization only
my %key = (
	acme_pk => 'atlasemu',
	acme_sk => '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60',
	acme_id => 'mdb_sa_id_65f0e0000000000000000002',
	acme_secret => 'mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f',
	globex_pk => 'globexak',
	globex_sk => '0b7e4c2d-91a3-4f56-8e0d-7a2c5b9f1e34',
	globex_id => 'mdb_sa_id_65f0e0000000000000000004',
	globex_secret => 'mdb_sa_sk_9c1d7e3a5b0f2c8e6d4a1b9f7e3c5d0a2b8f6e4c');
my $new_secret = 'mdb_sa_sk_0a1b2c3d4e5f60718293a4b5c6d7e8f9rotated1';
my $wrong_secret = 'mdb_sa_sk_ffffffffffffffffffffffffffffffwrongone';
my $jwt_head = encode_base64url('{"alg":"RS256","kid":"atlas-emulator","typ":"JWT"}');

# Which credentials does a text show?  An empty list when none.
sub leaks
{
	my ($text) = @_;
	my %lit = (%key, new_secret => $new_secret, wrong_secret => $wrong_secret,
		token => $jwt_head);
	delete $lit{$_} for qw(acme_pk acme_id globex_pk globex_id);   # names, not secrets
	for my $id (qw(acme globex))
	{
		for my $s ($key{"${id}_secret"}, $new_secret, $wrong_secret)
		{
			$lit{"Basic of $id"} = encode_base64($key{"${id}_id"} . ":$s", '');
		}
	}
	my @found = grep { index($text, $lit{$_}) >= 0 } sort keys %lit;
	push @found, 'Bearer value' if $text =~ /Bearer\s+[A-Za-z0-9._~+\/=-]{20,}/;
	push @found, 'Basic value' if $text =~ /Basic\s+[A-Za-z0-9+\/=]{16,}/;
	return @found;
}

sub no_leak
{
	my ($text, $what) = @_;
	my @l = leaks($text);
	ok(!@l, "no credential in $what") or diag "found: @l\n" . substr($text, 0, 3000);
}

ok(scalar(leaks("x $key{globex_secret} x")) && scalar(leaks("Bearer $jwt_head.abcdefghijklmnopqrstuvwxyz")),
	'the leak check finds secrets and tokens');

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });

my $node = atlas_node('servers',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "log_min_messages = debug5\nlog_statement = 'all'\n"
	  . "atlas_users.retry_base_ms = 100\n");
ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker is running');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $acme_sk_file = key_file($node, 'acme_sk', $key{acme_sk});
my $acme_secret_file = key_file($node, 'acme_secret', $key{acme_secret});
my $globex_secret_file = key_file($node, 'globex_secret', $key{globex_secret});

my $log_start = -s $node->logfile;
org_servers($node, acme => $acme, globex => $globex,
	acme_pk => $key{acme_pk}, acme_sk_file => $acme_sk_file,
	globex_id => $key{globex_id}, globex_secret_file => $globex_secret_file);
sql(qq{
	CREATE ROLE hr LOGIN;
	GRANT USAGE ON FOREIGN SERVER acme TO hr;
	CREATE USER MAPPING FOR hr SERVER acme
		OPTIONS (client_id '$key{acme_id}', client_secret_file '$acme_secret_file');
	GRANT EXECUTE ON FUNCTION atlas_remove_org_user(text, text, boolean, text, text),
		atlas_remove_project_user(text, text, boolean, text, text),
		atlas_enqueue_remove_project_user(text, text, text, text) TO hr;
});

# ------------------------------------------------------------------
# Two organizations, two keys, one statement.
# ------------------------------------------------------------------
emu_reset_counters();
is( sql(qq{SELECT string_agg(atlas_remove_org_user(o, '$dave')::text, ',')
	FROM (VALUES ('$acme'), ('$globex')) v(o)}),
	'true,true', 'one statement removes dave from both organizations');
{
	my $c = emu_counters();
	my $log = emu('GET', 'requests?limit=100')->{requests};
	my %by;
	for my $r (@$log)
	{
		next unless ($r->{route} // '') eq '/api/atlas/v2/orgs/{orgId}/users/{userId}';
		$by{ substr($r->{path}, index($r->{path}, '/orgs/') + 6, 24) }{ $r->{principal} // 'none' }{ $r->{status} }++;
	}
	is_deeply(
		\%by,
		{
			$acme => { none => { 401 => 1 }, 'digest:atlasemu' => { 204 => 1 } },
			$globex => { "bearer:$key{globex_id}" => { 204 => 1 } }
		},
		'Acme removal with the Acme digest key (after its challenge), Globex removal with the Globex service account')
	  or diag explain \%by;
	is($c->{org_scope_rejections} // 0, 0, 'no key was used on the other organization');
	is($c->{token_grants}, 1, 'one token grant (Globex)');
}
is( sql(qq{SELECT string_agg(org_id || ' ' || server || ' ' || outcome, ',' ORDER BY id)
	FROM atlas_removal_audit WHERE user_id = '$dave'}),
	"$acme acme removed,$globex globex removed",
	'each audit row names its server');

# ------------------------------------------------------------------
# USAGE on one server only.
# ------------------------------------------------------------------
{
	my $u = emu_users(count => 1, orgId => $acme, prefix => 'hr1')->[0];
	emu_reset_counters();
	my ($rc, $out, $err) = psql_as($node, 'hr', "SELECT atlas_remove_org_user('$acme', '$u')");
	is($out, 't', 'hr removes in Acme, where it has USAGE') or diag $err;
	is(emu_counter("requests_by_principal.bearer:$key{acme_id}"), 1,
		"with its own mapping's service account");
	is(emu_counter('token_grants'), 1, 'which took one token');
	emu_reset_counters();
	($rc, $out, $err) = psql_as($node, 'hr', "SELECT atlas_remove_org_user('$globex', '$dave', true)");
	is(sqlstate_of($err), '42501', 'hr is refused for Globex with 42501');
	like($err, qr/HINT:\s+GRANT USAGE ON FOREIGN SERVER globex TO hr;/, 'the hint names the GRANT');
	is(emu_counter('requests_total'), 0, 'and no request was sent');
}

# ------------------------------------------------------------------
# What a role sees of the options.
# ------------------------------------------------------------------
{
	my ($rc, $out, $err) = psql_as($node, 'hr',
		"SELECT srvname || ' ' || usename || ' ' || coalesce(array_to_string(umoptions, ';'), '(hidden)')"
		  . " FROM pg_user_mappings ORDER BY srvname, usename");
	my @rows = split /\n/, $out;
	is(scalar(@rows), 3, 'hr lists three mappings');
	is_deeply([ grep { /\(hidden\)$/ } @rows ], [ 'acme postgres (hidden)', 'globex postgres (hidden)' ],
		"the superuser's mapping options are hidden from hr");
	like($out, qr/^acme hr client_id=\Q$key{acme_id}\E;client_secret_file=/m, 'hr sees its own');
	($rc, $out, $err) = psql_as($node, 'hr', "SELECT umoptions FROM pg_user_mapping");
	is(sqlstate_of($err), '42501', 'pg_user_mapping itself is not readable by hr');
	my $deu = '';
	$node->psql('postgres', '\deu+', stdout => \$deu, extra_params => [ '-U', 'hr' ]);
	unlike($deu, qr/\Q$acme_sk_file\E|\Q$globex_secret_file\E|\Q$key{acme_pk}\E/,
		"\\deu+ as hr shows none of the superuser's options");
	like($deu, qr/client_secret_file/, "\\deu+ as hr shows hr's own mapping");
	($rc, $out, $err) = psql_as($node, 'hr',
		"ALTER USER MAPPING FOR hr SERVER acme OPTIONS (SET client_secret_file '$globex_secret_file')");
	is(sqlstate_of($err), '42501', 'hr cannot set a *_file option, even on its own mapping');
	my $everything = '';
	for my $q ('SELECT * FROM atlas_queue_status', 'SELECT * FROM atlas_rate_limits()',
		'SELECT * FROM atlas_worker_status()', 'SELECT * FROM atlas_removal_audit',
		'SELECT * FROM atlas_removal_queue')
	{
		$everything .= sql($q) . "\n";
	}
	no_leak($everything, "the views and functions of atlas_users");
	unlike($everything, qr/\Q$acme_sk_file\E|\Q$globex_secret_file\E/, 'nor a key file path');
}

# ------------------------------------------------------------------
# Rotation of a client secret.
# ------------------------------------------------------------------
my $s = psql_session($node);
my ($o, $e) = session_run($s, "SELECT atlas_remove_org_user('$globex', '$dave', true)");
is($o, 'f', 'a session calls Globex (dave is gone already)');
my $old_token;
{
	my $log = emu('GET', 'requests?limit=5')->{requests};
	($old_token) = map { $_->{token} } grep { defined $_->{token} && ($_->{route} // '') =~ /orgs/ } reverse @$log;
}
ok(defined $old_token, "the session's call used token $old_token");

emu('POST', 'service_accounts', { client_id => $key{globex_id}, client_secret => $new_secret });
my $new_file = key_file($node, 'globex_secret_2', $new_secret);
emu_reset_counters();
my $t_alter = time;
sql("ALTER USER MAPPING FOR postgres SERVER globex OPTIONS (SET client_secret_file '$new_file')");
($o, $e) = session_run($s, "SELECT atlas_remove_org_user('$globex', '$dave', true)");
is($o, 'f', 'the existing session calls Globex after ALTER USER MAPPING') or diag $e;
my $u2 = emu_users(count => 1, orgId => $globex, groupIds => [], prefix => 'rot')->[0];
sql("SELECT atlas_enqueue_remove_org_user('$globex', '$u2')");
ok( $node->poll_query_until('postgres',
		"SELECT status = 'done' FROM atlas_removal_queue WHERE user_id = '$u2'"),
	'the worker removes with the new secret');
{
	my $c = emu_counters();
	is($c->{token_grants}, 1, 'exactly one new token grant for the session and the worker');
	is(emu_route_count($c, 'POST /api/oauth/token', '401'), 0, 'no token request with the old secret');
	my $log = emu('GET', 'requests?limit=100')->{requests};
	my @after = grep { $_->{time} >= $t_alter - 0.5 && defined $_->{token} } @$log;
	ok(scalar(@after) >= 3, 'token grant and two removals after the ALTER');
	is(scalar(grep { $_->{token} == $old_token } @after), 0, 'the old token was never used after the ALTER');
}
session_close($s);

# ALTER SERVER: the same session switches to digest with the next call
$s = psql_session($node);
session_run($s, "SELECT atlas_remove_org_user('$acme', '$dave', true)");
sql(qq{ALTER SERVER acme OPTIONS (ADD auth_method 'service_account');
	ALTER USER MAPPING FOR postgres SERVER acme
		OPTIONS (ADD client_id '$key{acme_id}', ADD client_secret_file '$acme_secret_file')});
emu_reset_counters();
($o, $e) = session_run($s, "SELECT atlas_remove_org_user('$acme', '$dave', true)");
is($o, 'f', 'the session calls Acme after ALTER SERVER') or diag $e;
is(emu_counter("requests_by_principal.bearer:$key{acme_id}"), 1,
	'with the service account the server now asks for');
is(emu_counter('requests_by_principal.digest:atlasemu'), 0, 'and not with the digest key');
session_close($s);

# ------------------------------------------------------------------
# A queued row runs with the mapping of the role that enqueued it, as
# that mapping is when the row runs.
# ------------------------------------------------------------------
{
	my $u = emu_users(count => 1, orgId => $acme, groupIds => [$acme_project], prefix => 'q')->[0];
	my $hr = psql_session($node, 'hr');
	session_run($hr, "SET atlas_users.server = 'acme'");
	session_run($hr, 'BEGIN');
	my ($id) = session_run($hr, "SELECT atlas_enqueue_remove_project_user('$acme_project', '$u')");
	# hr's mapping changes from the service account to the digest key
	sql(qq{ALTER USER MAPPING FOR hr SERVER acme
		OPTIONS (DROP client_id, DROP client_secret_file, ADD public_key '$key{acme_pk}',
				 ADD private_key_file '$acme_sk_file');
		ALTER SERVER acme OPTIONS (SET auth_method 'auto')});
	emu_reset_counters();
	session_run($hr, 'COMMIT');
	ok( $node->poll_query_until('postgres',
			"SELECT status = 'done' FROM atlas_removal_queue WHERE id = $id"),
		"hr's queued row ran");
	is(emu_counter('requests_by_principal.digest:atlasemu'), 1,
		"with hr's new mapping (the digest key)");
	is(emu_counter("requests_by_principal.bearer:$key{acme_id}"), 0, "not with hr's old one");
	is( sql(qq{SELECT requested_by || ' ' || queue_id || ' ' || server || ' ' || outcome
		FROM atlas_removal_audit WHERE user_id = '$u'}),
		"hr $id acme removed", 'audited with requested_by = hr, its queue id and server');
	is(sql("SELECT enqueued_as || ' ' || server FROM atlas_removal_queue WHERE id = $id"),
		'hr acme', 'the queue row names the role and the server');
	session_close($hr);
}

# ------------------------------------------------------------------
# A server that echoes request headers into its errors.
# ------------------------------------------------------------------
emu_config(reflect_headers => JSON::PP::true);
{
	my $text = '';
	# digest: an API error (dave is no longer in Acme)
	sql(qq{ALTER SERVER acme OPTIONS (SET auth_method 'digest')});
	my ($rc, $out, $err) = psql_as($node, 'postgres', "SELECT atlas_remove_org_user('$acme', '$dave')");
	is(sqlstate_of($err), '42704', 'digest: the API error is raised');
	like($err, qr/Request headers: .*Authorization: \*+/, 'the echoed Authorization value is blanked')
	  or diag $err;
	$text .= $err;
	# service account: an API error, then a token endpoint error
	sql(qq{ALTER SERVER acme OPTIONS (SET auth_method 'service_account')});
	($rc, $out, $err) = psql_as($node, 'postgres', "SELECT atlas_remove_org_user('$acme', '$dave')");
	is(sqlstate_of($err), '42704', 'service account: the API error is raised');
	$text .= $err;
	my $wrong_file = key_file($node, 'wrong', $wrong_secret);
	sql(qq{ALTER USER MAPPING FOR postgres SERVER acme OPTIONS (SET client_secret_file '$wrong_file')});
	($rc, $out, $err) = psql_as($node, 'postgres', "SELECT atlas_remove_org_user('$acme', '$dave')");
	is(sqlstate_of($err), '28000', 'a wrong secret: the token endpoint error is raised');
	like($err, qr/Request headers:/, 'with the headers the token endpoint echoed') or diag $err;
	$text .= $err;
	no_leak($text, 'the errors of a reflecting server');
	no_leak(sql('SELECT string_agg(detail, E\'\n\') FROM atlas_removal_audit'), 'the audit rows');
}

# ------------------------------------------------------------------
# The server log, at debug5 with log_statement = 'all', from the first
# CREATE USER MAPPING to here.
# ------------------------------------------------------------------
{
	my $log = slurp_file($node->logfile, $log_start);
	like($log, qr/CREATE USER MAPPING FOR postgres SERVER acme/, 'the log holds the DDL');
	like($log, qr/Request headers:/, 'and the errors of the reflecting server');
	no_leak($log, 'the server log at debug5');
}

emu_config(reflect_headers => JSON::PP::false);
$node->stop;
done_testing();
