# 034_settings_fail_safe.pl: a value of an atlas_users.* setting that
# PostgreSQL refuses while the library loads never lets a call go out with
# another value.
#
# PostgreSQL keeps a value given before the library loads as a placeholder
# and, when the library defines the setting, only warns about a value it
# refuses and keeps the default (or an earlier value).  Each way of giving
# a value is tried with a refused one; every Atlas call of that backend
# then fails with 22023 naming the setting and the refused value (masked
# for a secret), and the emulator counts 0 requests:
#
# - not preloaded: session SET (invalid URL, mistyped enum, impossible
#   date, integer out of range), with the WARNING hidden by
#   client_min_messages and log_min_messages; connection options
#   (PGOPTIONS), as a superuser (invalid value) and as a role that may not
#   set it (a secret, which is never shown); ALTER ROLE ... SET; ALTER
#   DATABASE ... SET; postgresql.conf; an unknown atlas_users.* name; a
#   SET LOCAL in the transaction that loads the library (held until it
#   ends); a call through a foreign server (its options would not even
#   use the refused value).  Values PostgreSQL reads the same way (units,
#   enum case) are not refusals.  When the refusal clears: a valid SET lifts it, RESET
#   brings it back, a corrected postgresql.conf serves new sessions.
# - preloaded: a refused postgresql.conf value at server start (sessions
#   and the worker stop; a reload of a corrected file clears it); ALTER
#   ROLE and ALTER DATABASE values stored while the library was not
#   loaded, which PostgreSQL skips at login with a WARNING.
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
my $proxy = 'http://atlas-proxy.internal:8080';
my $secret = 'leaky-secret-4f1e9a';

emu_reset();
my $ids = emu_users(count => 60, orgId => $org, groupIds => [$group], prefix => 'guc');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }

my $node = atlas_node('gucsafe');

sub sql { return $node->safe_psql('postgres', $_[0]); }

$node->safe_psql('postgres', q{
	CREATE ROLE offb LOGIN;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text) TO offb;
	CREATE DATABASE dbset;
});
$node->safe_psql('dbset', 'CREATE EXTENSION atlas_users');

# a foreign server with its own base_url and the test's digest key in the
# superuser's mapping: a refused setting stops its calls too
digest_server($node, 'fs');

# A removal of a fresh user after $before, as $user in $db (a fresh
# backend): (stdout, stderr, requests the emulator counted).
sub attempt
{
	my (%o) = @_;
	my $user = $o{user} // 'postgres';
	my ($out, $err) = ('', '');
	emu_reset_counters();
	local $ENV{PGOPTIONS} = $o{pgoptions} if defined $o{pgoptions};
	$o{node}->psql(
		$o{db} // 'postgres',
		($o{before} // '') . "\nSELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\n",
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose', '-U', $user ]);
	return ($out, $err, emu_counter('requests_total'));
}

# The call fails with 22023 naming the setting, $shown matches the value
# the message shows, and nothing reached the emulator.
sub refused
{
	my ($what, $setting, $shown, %o) = @_;
	my ($out, $err, $requests) = attempt(node => $node, %o);
	is(sqlstate_of($err), '22023', "$what: the call fails with 22023") or diag $err;
	like($err, qr/ERROR:\s+22023: atlas_users\.$setting = \Q$shown\E was refused/,
		"$what: the error names atlas_users.$setting and the refused value");
	like($err, qr/HINT:\s+\S/, "$what: the error says how to fix it");
	is($requests, 0, "$what: 0 requests at the emulator");
	return $err;
}

# The call goes out and removes the user.
sub works
{
	my ($what, %o) = @_;
	my ($out, $err, $requests) = attempt(node => $node, %o);
	is($out, 't', "$what: the call works") or diag $err;
	cmp_ok($requests, '>=', 1, "$what: it reached the emulator");
}

# ------------------------------------------------------------------
# 1. not preloaded: session SET
# ------------------------------------------------------------------
{
	my $err = refused('SET base_url to a non-loopback http URL', 'base_url', "'$proxy'",
		before => "SET atlas_users.base_url = '$proxy';");
	like($err, qr/WARNING:.*invalid value for parameter "atlas_users\.base_url"/,
		'SET base_url: PostgreSQL warned when the library loaded');
	like($err, qr/DETAIL:\s+The value came from SET .* PostgreSQL kept '\Q$ENV{ATLAS_EMULATOR_HTTPS_URL}\E' instead/,
		'SET base_url: the detail says where the value came from and what was kept');

	refused('SET auth_method mistyped', 'auth_method', "'digets'",
		before => "SET atlas_users.auth_method = 'digets';");
	refused('SET api_version to an impossible date', 'api_version', "'2025-02-30'",
		before => "SET atlas_users.api_version = '2025-02-30';");
	refused('SET max_concurrency out of range', 'max_concurrency', "'100'",
		before => "SET atlas_users.max_concurrency = 100;");

	# no log hook: hidden warnings change nothing
	$err = refused('SET base_url with client_min_messages and log_min_messages hiding the WARNING',
		'base_url', "'$proxy'",
		before => "SET client_min_messages = error; SET log_min_messages = fatal;\n"
		  . "SET atlas_users.base_url = '$proxy';");
	unlike($err, qr/WARNING/, 'hidden WARNING: the session saw no WARNING');

	# through a foreign server, whose own base_url would not even use the
	# refused one: refused all the same
	refused('SET base_url, then a call through server fs', 'base_url', "'$proxy'",
		before => "SET atlas_users.server = 'fs'; SET atlas_users.base_url = '$proxy';");
	works('a call through server fs without a refused value',
		before => "SET atlas_users.server = 'fs';");

	works('values PostgreSQL reads the same way (10s, DIGEST, 0x10) are no refusal',
		before => "SET atlas_users.timeout_ms = '10s'; SET atlas_users.auth_method = 'DIGEST';\n"
		  . "SET atlas_users.max_concurrency = '0x10';");
}

# ------------------------------------------------------------------
# 2. not preloaded: the connection options (PGOPTIONS)
# ------------------------------------------------------------------
{
	refused('PGOPTIONS with a mistyped auth_method (superuser)', 'auth_method', "'Digestt'",
		pgoptions => '-c atlas_users.auth_method=Digestt');
	my $err = refused('PGOPTIONS with a secret a role may not set', 'client_secret', '********',
		user => 'offb', pgoptions => "-c atlas_users.client_secret=$secret");
	like($err, qr/permission denied to set parameter "atlas_users\.client_secret"/,
		'PGOPTIONS secret: PostgreSQL refused it for the role');
	unlike($err, qr/\Q$secret\E/, 'PGOPTIONS secret: the value is never shown');
}

# ------------------------------------------------------------------
# 3. not preloaded: ALTER ROLE ... SET and ALTER DATABASE ... SET
# ------------------------------------------------------------------
{
	sql("ALTER ROLE offb SET atlas_users.base_url = '$proxy'");
	my $err = refused('ALTER ROLE offb SET base_url', 'base_url', "'$proxy'", user => 'offb');
	like($err, qr/came from ALTER ROLE \.\.\. SET/, 'ALTER ROLE: the detail names ALTER ROLE ... SET');
	like($err, qr/PostgreSQL kept 'https:\/\/cloud\.mongodb\.com' instead/,
		'ALTER ROLE: what PostgreSQL kept is the production default (postgresql.conf\'s value is lost)');
	like($err, qr/ALTER ROLE \.\.\. RESET atlas_users\.base_url/, 'ALTER ROLE: the hint gives the RESET');
	sql('ALTER ROLE offb RESET atlas_users.base_url');
	works('ALTER ROLE ... RESET, new session', user => 'offb');

	sql("ALTER DATABASE dbset SET atlas_users.max_retries = 11");
	$err = refused('ALTER DATABASE dbset SET max_retries', 'max_retries', "'11'", db => 'dbset');
	like($err, qr/came from ALTER DATABASE \.\.\. SET/, 'ALTER DATABASE: the detail names it');
	sql('ALTER DATABASE dbset RESET atlas_users.max_retries');
	works('ALTER DATABASE ... RESET, new session', db => 'dbset');
}

# ------------------------------------------------------------------
# 4. not preloaded: postgresql.conf
# ------------------------------------------------------------------
{
	$node->append_conf('postgresql.conf', "atlas_users.api_version = '2025-13-01'\n");
	$node->reload;
	my $err = refused('postgresql.conf with api_version 2025-13-01', 'api_version', "'2025-13-01'");
	like($err, qr/came from the configuration file/, 'postgresql.conf: the detail names the configuration file');
	$node->append_conf('postgresql.conf', "atlas_users.api_version = ''\n");
	$node->reload;
	works('postgresql.conf corrected and reloaded, new session');
}

# ------------------------------------------------------------------
# 5. not preloaded: an unknown name; a refused SET LOCAL
# ------------------------------------------------------------------
{
	my ($out, $err, $requests) = attempt(node => $node,
		before => "SET atlas_users.baseurl = '$proxy';");
	is(sqlstate_of($err), '22023', 'unknown atlas_users.baseurl: the call fails with 22023');
	like($err, qr/atlas_users\.baseurl is not a setting of atlas_users/, 'unknown name: the error names it');
	is($requests, 0, 'unknown name: 0 requests at the emulator');

	my $u = fresh_user();
	($out, $err, $requests) = attempt(node => $node,
		before => "BEGIN;\nSET LOCAL atlas_users.base_url = '$proxy';\n"
		  . "SELECT atlas_remove_project_user('$group', '$u');\nROLLBACK;");
	my @lines = split /\n/, $out;
	like($err, qr/ERROR:\s+22023: atlas_users\.base_url = '\Q$proxy\E' was refused/,
		'SET LOCAL in the loading transaction: its call fails with 22023');
	is($lines[-1], 't', 'SET LOCAL: once that transaction ended, the next call works')
	  or diag $err;
	is($requests - emu_counter('digest_challenges'), 1,
		'SET LOCAL: only the call after the transaction reached the emulator');
}

# ------------------------------------------------------------------
# 6. when the refusal clears, in one session
# ------------------------------------------------------------------
{
	my $s = psql_session($node);
	my ($out, $err) = session_run($s, "SET atlas_users.base_url = '$proxy'");
	emu_reset_counters();
	($out, $err) = session_run($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is(sqlstate_of($err), '22023', 'one session: refused after SET of a bad value');
	($out, $err) = session_run($s, "SET atlas_users.base_url = '$ENV{ATLAS_EMULATOR_HTTPS_URL}'");
	($out, $err) = session_run($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is($out, 't', 'one session: a valid SET (even of the value kept) lifts the refusal') or diag $err;
	($out, $err) = session_run($s, 'RESET atlas_users.base_url');
	($out, $err) = session_run($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is(sqlstate_of($err), '22023', 'one session: RESET brings back the fallback, and the refusal');
	is(emu_counter('requests_total') - emu_counter('digest_challenges'), 1,
		'one session: only the call after the valid SET reached the emulator');
	session_close($s);
}
$node->stop;

# ------------------------------------------------------------------
# 7. preloaded: postgresql.conf refused at server start; ALTER ROLE and
#    ALTER DATABASE values stored while the library was not loaded
# ------------------------------------------------------------------
{
	my $pre = atlas_node('gucpre');
	$pre->safe_psql('postgres', q{
		CREATE ROLE offb LOGIN;
		GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text) TO offb;
		CREATE DATABASE dbset;
	});
	$pre->safe_psql('dbset', 'CREATE EXTENSION atlas_users');
	# stored now, while the library is not preloaded (so not checked)
	$pre->safe_psql('postgres', "ALTER ROLE offb SET atlas_users.base_url = '$proxy'");
	$pre->safe_psql('postgres', "ALTER DATABASE dbset SET atlas_users.page_size = 0");
	# queued now, with valid settings and no worker; enqueueing checks the
	# settings too, so it could not be queued after the restart
	my $u = fresh_user();
	$pre->safe_psql('postgres', "SELECT atlas_enqueue_remove_project_user('$group', '$u')");
	$pre->append_conf('postgresql.conf',
		"shared_preload_libraries = 'atlas_users'\natlas_users.auth_method = 'digets'\n");
	my $log_offset = -s $pre->logfile;
	emu_reset_counters();
	# stop and start, not restart: pg_ctl restart runs the binary recorded in
	# postmaster.opts, without the wrapper of the sanitizer run
	$pre->stop;
	$pre->start;
	$node = $pre;

	my $err = refused('preloaded: postgresql.conf auth_method refused at start', 'auth_method', "'digets'");
	like($err, qr/was refused when the server loaded atlas_users at start/,
		'preloaded: the error says it was refused at server start');
	ok($pre->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
		'preloaded: the worker runs');
	my ($rc, $out, $eerr) = psql_as($pre, 'postgres',
		"SELECT atlas_enqueue_remove_project_user('$group', '" . fresh_user() . "')");
	is(sqlstate_of($eerr), '22023', 'preloaded: an enqueue while the refusal holds fails with 22023')
	  or diag $eerr;
	is($pre->safe_psql('postgres', 'SELECT count(*) FROM atlas_removal_queue'), '1',
		'preloaded: the refused enqueue queued nothing (1 row, the one queued before)');
	ok($pre->wait_for_log(qr/atlas_users\.auth_method = 'digets' was refused/, $log_offset),
		'preloaded: the worker logs the refusal instead of draining');
	is($pre->safe_psql('postgres', "SELECT status FROM atlas_removal_queue WHERE user_id = '$u'"),
		'queued', 'preloaded: the queued removal stays queued');
	is(emu_counter('requests_total'), 0, 'preloaded: the worker sent 0 requests');

	$pre->append_conf('postgresql.conf', "atlas_users.auth_method = 'digest'\n");
	$pre->reload;
	ok($pre->poll_query_until('postgres',
			"SELECT status = 'done' FROM atlas_removal_queue WHERE user_id = '$u'"),
		'preloaded: after a reload of the corrected file the worker removes it');
	works('preloaded: after the reload, a session call works');

	$err = refused('preloaded: ALTER ROLE value stored before preloading', 'base_url', "'$proxy'",
		user => 'offb');
	like($err, qr/was refused when this session started/, 'preloaded ALTER ROLE: refused at login');
	like($err, qr/came from ALTER ROLE \.\.\. SET/, 'preloaded ALTER ROLE: the detail names it');
	$err = refused('preloaded: ALTER DATABASE value stored before preloading', 'page_size', "'0'",
		db => 'dbset');
	like($err, qr/came from ALTER DATABASE \.\.\. SET/, 'preloaded ALTER DATABASE: the detail names it');
	$pre->safe_psql('postgres', 'ALTER ROLE offb RESET atlas_users.base_url');
	works('preloaded: ALTER ROLE ... RESET, new session', user => 'offb');
	$pre->stop;
}

done_testing();
