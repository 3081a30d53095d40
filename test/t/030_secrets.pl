# 030_secrets.pl: the private key, the client secret and the tokens never
# show, and the two documented leaks of inline secrets are real and closed
# by the recommended setup.
#
# Every text a role can see or an operator can read is searched for the
# literal secrets of $ATLAS_SECRETS, the Basic header a token request
# carries, the emulator's service-account secret prefix and its tokens.
# Tokens are JWT-shaped and all start with the same base64url header
# (checked against a token fetched here), so that header finds any token.
#
# - SHOW, current_setting(), pg_settings and SHOW ALL as a non-superuser
#   (and a pg_read_all_settings member), in a fresh backend that has not
#   loaded the library (checked in /proc/<pid>/maps), after loading it,
#   and with preloading: only a path for the *_file settings.
# - The server log at log_min_messages = debug5 with log_statement = all,
#   after digest and service-account calls, 401s (digest, token endpoint,
#   rejected bearer), a pg_reload_conf() that changes a *_file path.
# - Error messages, DETAIL, HINT and CONTEXT (VERBOSITY verbose).
# - Audit and queue rows; pg_stat_activity while a call hangs.
# - The documented leaks: an inline secret without preloading is readable
#   with SHOW by any role in a fresh backend, and not with preloading; a
#   reload logs an inline secret's new value, and only the path of a file.
# - The WARNING about an inline secret, once per backend.
# - Key files readable by group or others, not regular, symlinks, owned by
#   someone else or missing are refused with F0000; a file is re-read
#   when it changes, without a reload.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use File::Copy;
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64 encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $secrets = $ENV{ATLAS_SECRETS};

sub slurp
{
	my ($f) = @_;
	open my $fh, '<', $f or die "cannot open $f: $!";
	local $/;
	my $v = <$fh>;
	$v =~ s/\s+\z//;
	return $v;
}

sub spew
{
	my ($f, $text, $mode) = @_;
	unlink $f;
	open my $fh, '>', $f or die "cannot write $f: $!";
	print $fh $text;
	close $fh;
	chmod($mode // 0600, $f) or die "chmod $f: $!";
}

my $private_key = slurp("$secrets/private_key");
my $client_id = slurp("$secrets/client_id");
my $client_secret = slurp("$secrets/client_secret");
my $public_key = slurp("$secrets/public_key");

# the JWT header every token of the emulator starts with
my $jwt_head = encode_base64url('{"alg":"RS256","kid":"atlas-emulator","typ":"JWT"}');

# wrong secrets written to key files below; they must not leak either
my $wrong_key = 'b0b0b0b0-wrong-key-1111-222233334444';
my $wrong_secret = 'mdb_sa_sk_wrongwrongwrongwrongwrongwrongwrong01';

# Which secrets does a text show?  An empty list when none.
sub leaks
{
	my ($text) = @_;
	my @found;
	my %lit = (
		'private key' => $private_key,
		'client secret' => $client_secret,
		'Basic credentials' => encode_base64("$client_id:$client_secret", ''),
		'wrong private key' => $wrong_key,
		'wrong client secret' => $wrong_secret,
		'wrong Basic credentials' => encode_base64("$client_id:$wrong_secret", ''),
		'client secret prefix mdb_sa_sk_' => 'mdb_sa_sk_',
		'token header' => $jwt_head);
	for my $k (sort keys %lit)
	{
		push @found, $k if index($text, $lit{$k}) >= 0;
	}
	push @found, 'JWT-like string' if $text =~ /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{10,}/;
	push @found, 'Bearer value' if $text =~ /Bearer\s+[A-Za-z0-9._~+\/=-]{20,}/;
	return @found;
}

sub no_leak
{
	my ($text, $what) = @_;
	my @l = leaks($text);
	ok(!@l, "no secret in $what") or diag "found: @l\n" . substr($text, 0, 3000);
}

emu_reset();

# a real token from the emulator: the fingerprint above matches it
{
	my $res = HTTP::Tiny->new->request(
		'POST',
		"$ENV{ATLAS_EMULATOR_URL}/api/oauth/token",
		{
			headers => {
				'Content-Type' => 'application/x-www-form-urlencoded',
				Authorization => 'Basic ' . encode_base64("$client_id:$client_secret", '')
			},
			content => 'grant_type=client_credentials'
		});
	my $tok = $res->{success} ? decode_json($res->{content})->{access_token} : '';
	ok(index($tok, "$jwt_head.") == 0, 'emulator tokens start with the JWT header searched for')
	  or diag $res->{status} . ' ' . $res->{content};
	ok(scalar(leaks("x $tok x")), 'the leak check finds a token');
	ok(scalar(leaks("x $private_key x")) && scalar(leaks($client_secret)),
		'the leak check finds the literal secrets');
}

my $ids = emu_users(count => 40, orgId => $org, groupIds => [$group], prefix => 'sec');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }

# The names of every setting.
my @settings = map { "atlas_users.$_" } qw(base_url ca_file auth_method public_key
  private_key private_key_file client_id client_secret client_secret_file api_version
  timeout_ms connect_timeout_ms max_retries max_concurrency page_size max_attempts
  retry_base_ms queue_retention database);

# A background session: (stdout, stderr) of each statement.
sub session
{
	my ($node, $user) = @_;
	return $node->background_psql(
		'postgres',
		on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose', '-U', $user ]);
}

# Has the backend of a session mapped atlas_users.so?
sub library_loaded
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/maps" or die "cannot read /proc/$pid/maps: $!";
	local $/;
	my $maps = <$fh>;
	return $maps =~ m{/atlas_users\.so} ? 1 : 0;
}

# Everything a role sees of the settings in one session: SHOW of each,
# current_setting() of each, pg_settings, SHOW ALL.
sub settings_view
{
	my ($s) = @_;
	my $all = '';
	for my $name (@settings)
	{
		my ($o, $e) = bg_query($s, "SHOW $name");
		$all .= "SHOW $name: $o $e\n";
		($o, $e) = bg_query($s, "SELECT current_setting('$name', true)");
		$all .= "current_setting($name): $o $e\n";
	}
	my ($o, $e) = bg_query($s,
		"SELECT string_agg(s::text, E'\\n') FROM pg_settings s WHERE name LIKE 'atlas%'");
	$all .= "pg_settings: $o $e\n";
	($o, $e) = bg_query($s, 'SHOW ALL');
	$all .= "SHOW ALL: $o $e\n";
	return $all;
}

# ==================================================================
# Node "files": key files, not preloaded, log_min_messages = debug5
# ==================================================================
my $node = atlas_node('secfiles',
	auth_method => 'digest',
	extra_conf => "log_min_messages = debug5\nlog_statement = 'all'\n"
	  . "log_error_verbosity = verbose\nlog_line_prefix = '%m [%p] %q%u@%d '\n");
$node->safe_psql('postgres', q{
	CREATE ROLE plain LOGIN;
	CREATE ROLE settings_reader LOGIN;
	GRANT pg_read_all_settings TO settings_reader;
	CREATE ROLE offboarding_role NOLOGIN;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text),
	                          atlas_enqueue_remove_project_user(text, text, text, text)
	      TO offboarding_role;
	GRANT SELECT ON atlas_removal_audit, atlas_removal_queue TO offboarding_role;
	CREATE ROLE alice LOGIN IN ROLE offboarding_role;
});

# ------------------------------------------------------------------
# 1. settings in a fresh backend that has not loaded atlas_users
# ------------------------------------------------------------------
for my $role (qw(plain settings_reader alice))
{
	my $s = session($node, $role);
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	is(library_loaded($pid), 0, "fresh $role backend: atlas_users.so is not loaded");
	my $view = settings_view($s);
	is(library_loaded($pid), 0, "fresh $role backend: still not loaded after SHOW and pg_settings");
	no_leak($view, "SHOW/current_setting/pg_settings/SHOW ALL of a fresh $role backend");
	my ($o) = bg_query($s, 'SHOW atlas_users.private_key_file');
	is($o, "$secrets/private_key", "fresh $role backend: private_key_file shows only the path");
	($o) = bg_query($s, 'SHOW atlas_users.client_secret_file');
	is($o, "$secrets/client_secret", "fresh $role backend: client_secret_file shows only the path");
	$s->quit;
}

# ------------------------------------------------------------------
# 2. the same after the library is loaded in the backend
# ------------------------------------------------------------------
{
	# alice loads it by calling a function she may run (bad input: 22023)
	my $s = session($node, 'alice');
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	my ($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('x', 'y')");
	is(sqlstate_of($e), '22023', 'alice: a call with bad ids fails with 22023');
	is(library_loaded($pid), 1, 'alice backend: the call loaded atlas_users.so');
	my $view = settings_view($s);
	no_leak($view, 'settings of a non-superuser backend that loaded the library');
	($o, $e) = bg_query($s, 'SHOW atlas_users.private_key_file');
	is(sqlstate_of($e), '42501', 'loaded, alice: SHOW private_key_file is refused (42501)');
	($o, $e) = bg_query($s, 'SHOW atlas_users.client_secret');
	is(sqlstate_of($e), '42501', 'loaded, alice: SHOW client_secret is refused (42501)');
	($o, $e) = bg_query($s, "SELECT count(*) FROM pg_settings WHERE name ~ '(private_key|client_secret)'");
	is($o, '0', 'loaded, alice: pg_settings lists no secret setting');
	$s->quit;

	# superuser after LOAD, then SET ROLE to roles without the right
	$s = session($node, 'postgres');
	($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	bg_query($s, "LOAD 'atlas_users'");
	is(library_loaded($pid), 1, 'superuser backend: LOAD loaded atlas_users.so');
	for my $role (qw(plain settings_reader))
	{
		bg_query($s, "SET ROLE $role");
		$view = settings_view($s);
		no_leak($view, "settings seen by $role in a loaded backend");
		bg_query($s, 'RESET ROLE');
	}
	$view = settings_view($s);
	no_leak($view, 'settings seen by the superuser in a loaded backend');
	$s->quit;
}

# ------------------------------------------------------------------
# 3. calls: digest, service account, and failures (401s)
# ------------------------------------------------------------------
my %texts;    # label => text that must not show a secret
my $calls = 0;    # calls whose audit row commits (no preloading: a failed
                  # call's row goes with its transaction, into the log only)

sub call_text
{
	my ($label, $user, $sql) = @_;
	my ($rc, $out, $err) = psql_as($node, $user, $sql);
	$texts{$label} = "$out\n$err";
	return ($out, $err);
}

{
	my ($o, $e) = call_text('digest call', 'alice',
		"SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, 't', 'digest: alice removes a user') or diag $e;

	($o, $e) = call_text('service account call', 'postgres',
		"SET atlas_users.auth_method = 'service_account';\n"
		  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\n"
		  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\n");
	$calls += 2;
	is($o, "t\nt", 'service account: two removals with a token') or diag $e;
	my $req = emu('GET', 'requests?limit=200');
	ok((grep { ($_->{headers}{Authorization} // '') =~ /^Bearer/ } @{ $req->{requests} }),
		'the emulator received Bearer requests');

	# a 404 (USER_NOT_FOUND) with full error fields
	($o, $e) = call_text('404 error', 'postgres',
		"SELECT atlas_remove_project_user('$group', 'ffffffffffffffffffffff01')");
	is(sqlstate_of($e), '42704', '404: 42704');

	# a rejected bearer token: renewed once, then 401 again -> 28000
	emu_fault({ kind => 'status', status => 401, match => 'DELETE /api/atlas/v2/groups', count => 2 });
	($o, $e) = call_text('rejected bearer', 'postgres',
		"SET atlas_users.auth_method = 'service_account';\n"
		  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is(sqlstate_of($e), '28000', 'rejected bearer twice: 28000');
	like($e, qr/Atlas API error 401/, 'rejected bearer: the message has the status');
	like($e, qr/CONTEXT:\s+Atlas API request DELETE /, 'rejected bearer: CONTEXT names the request');
	emu('DELETE', 'faults');
}

# ------------------------------------------------------------------
# 4. key files: refused when unsafe, re-read when they change
# ------------------------------------------------------------------
my $kdir = $PostgreSQL::Test::Utils::tmp_check . '/keys';
mkdir $kdir;
chmod 0700, $kdir;
{
	my $kf = "$kdir/private_key";
	my $cf = "$kdir/client_secret";
	spew($kf, "$private_key\n");
	spew($cf, "$client_secret\n");

	my $s = session($node, 'postgres');
	bg_query($s, "SET atlas_users.private_key_file = '$kf'");
	bg_query($s, "SET atlas_users.client_secret_file = '$cf'");
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');

	my ($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, 't', 'key file 0600: works') or diag $e;

	my @unsafe = (0640, 0604, 0644, 0660, 0606, 0610, 0601, 0700 | 0004);
	my $all_refused = 1;
	for my $mode (@unsafe)
	{
		chmod $mode, $kf;
		($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[39] . "')");
		$texts{ sprintf('mode %04o error', $mode) } = $e;
		my $ok = sqlstate_of($e) eq 'F0000' && $e =~ /is not safe to use/ && $e =~ /\Q$kf\E/;
		$all_refused = 0 unless $ok;
		diag sprintf("mode %04o: %s", $mode, $e) unless $ok;
	}
	ok($all_refused, 'key file readable or writable by group or others: F0000 "is not safe to use" for '
		  . join(' ', map { sprintf '%04o', $_ } @unsafe));
	like($e, qr/HINT:\s+Run: chown/, 'unsafe key file: the HINT says how to fix it');

	chmod 0400, $kf;
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, 't', 'key file 0400: works') or diag $e;
	chmod 0600, $kf;

	# not a regular file, a symlink, owned by someone else, missing, empty, two lines
	symlink $kf, "$kdir/link" or die "symlink: $!";
	my %bad = (
		'a symlink' => "$kdir/link",
		'a directory' => $kdir,
		'owned by root (/etc/passwd)' => '/etc/passwd',
		'missing' => "$kdir/nonexistent");
	if (-e '/etc/shadow') { $bad{'owned by root, unreadable (/etc/shadow)'} = '/etc/shadow'; }
	spew("$kdir/empty", "\n");
	spew("$kdir/twolines", "$private_key\nsecond line\n");
	$bad{'empty'} = "$kdir/empty";
	$bad{'two lines'} = "$kdir/twolines";
	for my $k (sort keys %bad)
	{
		bg_query($s, "SET atlas_users.private_key_file = '$bad{$k}'");
		($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[39] . "')");
		$texts{"$k key file error"} = $e;
		is(sqlstate_of($e), 'F0000', "key file $k: F0000") or diag $e;
		like($e, qr/atlas_users\.private_key_file "\Q$bad{$k}\E"/, "key file $k: the message names the setting and path");
	}
	like($texts{'owned by root (/etc/passwd) key file error'}, qr/is not safe to use/,
		'a world-readable key file of another owner (root) is "not safe to use"');
	bg_query($s, "SET atlas_users.private_key_file = '$kf'");

	# re-read without reload: a wrong key gives 401, the right one works again
	spew($kf, "$wrong_key\n");
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[38] . "')");
	$texts{'wrong private key error'} = $e;
	is(sqlstate_of($e), '28000', 'key file changed to a wrong key: the next call gets 401 (28000)') or diag $e;
	spew($kf, "$private_key\n");
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[38] . "')");
	$calls++;
	is($o, 't', 'key file changed back: the next call works, without a reload') or diag $e;

	# the same for the client secret file (token request 401)
	bg_query($s, "SET atlas_users.auth_method = 'service_account'");
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, 't', 'client secret file: works') or diag $e;
	spew($cf, "$wrong_secret\n");
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[37] . "')");
	$texts{'wrong client secret error'} = $e;
	is(sqlstate_of($e), '28000', 'client secret file changed to a wrong secret: 28000') or diag $e;
	like($e, qr/Atlas token request failed: 401/, 'wrong client secret: the token request failed');
	spew($cf, "$client_secret\n");
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[37] . "')");
	$calls++;
	is($o, 't', 'client secret file changed back: works, without a reload') or diag $e;
	chmod 0644, $cf;
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . $ids->[36] . "')");
	$texts{'client secret 0644 error'} = $e;
	is(sqlstate_of($e), 'F0000', 'client secret file 0644: F0000') or diag $e;
	chmod 0600, $cf;
	is(library_loaded($pid), 1, 'the session backend is the same one');
	$s->quit;
}

# ------------------------------------------------------------------
# 5. pg_stat_activity while a service-account call hangs
# ------------------------------------------------------------------
{
	my $s = session($node, 'postgres');
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	bg_query($s, "SET atlas_users.auth_method = 'service_account'");
	my ($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, 't', 'pg_stat_activity: the session has a token') or diag $e;
	my $u = fresh_user();
	emu_fault({ kind => 'hang', match => $u, count => 1, seconds => 30 });
	my $before = emu_counter('faults_triggered');
	$s->{stdin} .= "SELECT atlas_remove_project_user('$group', '$u');\n";
	$s->{run}->pump_nb;
	my $deadline = time + 20;
	while (emu_counter('faults_triggered') <= $before && time < $deadline)
	{
		$s->{run}->pump_nb;
		sleep 0.05;
	}
	ok(emu_counter('faults_triggered') > $before, 'pg_stat_activity: the call hangs at the emulator');
	my $act = $node->safe_psql('postgres',
		"SELECT string_agg(a::text, E'\\n') FROM pg_stat_activity a");
	$texts{'pg_stat_activity'} = $act;
	like($act, qr/atlas_remove_project_user\('$group', '$u'\)/,
		'pg_stat_activity shows the hung statement');
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	($o, $e) = bg_query($s, 'SELECT 1');
	is($o, '1', 'pg_stat_activity: the cancelled session goes on');
	$s->quit;
}

# ------------------------------------------------------------------
# 6. a reload that changes a *_file path logs only the path
# ------------------------------------------------------------------
{
	my $newpath = "$kdir/client_secret_rotated";
	spew($newpath, "$client_secret\n");
	my $off = -s $node->logfile;
	$node->append_conf('postgresql.conf', "atlas_users.client_secret_file = '$newpath'\n");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok( $node->wait_for_log(
			qr/parameter "atlas_users\.client_secret_file" changed to "\Q$newpath\E"/, $off),
		'reload: the log names the new client_secret_file path');
	my ($o, $e) = call_text('after reload', 'postgres',
		"SET atlas_users.auth_method = 'service_account';\n"
		  . "SHOW atlas_users.client_secret_file;\n"
		  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	$calls++;
	is($o, "$newpath\nt", 'reload: the new file is used') or diag $e;
}

# ------------------------------------------------------------------
# 7. audit and queue rows, errors, the whole server log
# ------------------------------------------------------------------
{
	# queue rows: one done, one failed with a 401 detail
	emu_fault({ kind => 'status', status => 401, match => $ids->[35], count => -1 });
	my ($o, $e) = call_text('queue', 'postgres',
		"SET atlas_users.auth_method = 'service_account';\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '" . fresh_user() . "') > 0;\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$ids->[35]') > 0;\n"
		  . "SELECT atlas_process_queue(10);\n");
	$calls += 2;
	is($o, "t\nt\n2", 'queue: two rows enqueued and processed') or diag $e;
	emu('DELETE', 'faults');

	my $audit = $node->safe_psql('postgres',
		"SELECT count(*) || E'\\n' || string_agg(a::text, E'\\n') FROM atlas_removal_audit a");
	my ($n) = $audit =~ /^(\d+)/;
	is($n, $calls, "audit: one row per call ($calls)");
	no_leak($audit, 'the audit rows');
	like($audit, qr/failed/, 'audit: failed rows are there');
	my $queue = $node->safe_psql('postgres',
		"SELECT string_agg(q::text, E'\\n') FROM atlas_removal_queue q");
	like($queue, qr/done/, 'queue: a done row');
	like($queue, qr/401/, 'queue: a failed row with the 401');
	no_leak($queue, 'the queue rows');
	my $alice_view = $node->safe_psql('postgres',
		"SET ROLE alice; SELECT string_agg(a::text, E'\\n') FROM atlas_removal_audit a");
	no_leak($alice_view, 'the audit rows as alice sees them');

	for my $k (sort keys %texts)
	{
		no_leak($texts{$k}, "output of: $k");
	}
	like($texts{'wrong private key error'}, qr/DETAIL:.*\n(?:.*\n)*.*HINT:.*\n(?:.*\n)*CONTEXT:/,
		'a 401 error carries DETAIL, HINT and CONTEXT (all searched)');

	my $log = slurp($node->logfile);
	cmp_ok(length($log), '>', 100_000, 'debug5 server log: ' . length($log) . ' bytes to search');
	like($log, qr/DEBUG:/, 'server log: has DEBUG lines');
	like($log, qr/atlas_users audit: failed call/, 'server log: has the failed-call audit lines');
	like($log, qr/received SIGHUP, reloading configuration files/, 'server log: has the reload');
	no_leak($log, 'the server log at debug5 (digest, service account, 401s, reload)');
}

$node->stop;

# ==================================================================
# Nodes "inline" and "inline_preload": an inline client secret
# ==================================================================
my $inline_conf = "atlas_users.auth_method = 'service_account'\n"
  . "atlas_users.client_secret_file = ''\n"
  . "atlas_users.client_secret = '$client_secret'\n"
  . "log_min_messages = debug5\n";

my $inl = atlas_node('secinline', auth_method => 'service_account', extra_conf => $inline_conf);
$inl->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
{
	# leak 1: any role reads the placeholder in a backend without the library
	my $s = session($inl, 'plain');
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	my ($o, $e) = bg_query($s, 'SHOW atlas_users.client_secret');
	is($o, $client_secret,
		'documented leak 1: not preloaded, a non-superuser reads an inline secret with SHOW');
	is(library_loaded($pid), 0, 'documented leak 1: in a backend that has not loaded atlas_users');
	($o, $e) = bg_query($s, "SELECT current_setting('atlas_users.client_secret')");
	is($o, $client_secret, 'documented leak 1: current_setting() too');
	$s->quit;

	# the WARNING, once per backend that loads the library
	for my $round (1, 2)
	{
		($o, $e) = (psql_as($inl, 'postgres',
				"SELECT atlas_remove_project_user('x', 'y');\n"
				  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\n"
				  . "SELECT atlas_remove_project_user('x', 'y');\n"))[ 1, 2 ];
		my @w = $e =~ /WARNING:\s+01000: atlas_users\.client_secret is set inline while atlas_users is not in shared_preload_libraries/g;
		is(scalar(@w), 1, "inline secret, backend $round: the WARNING appears exactly once") or diag $e;
		like($e, qr/HINT:\s+Use atlas_users\.private_key_file or atlas_users\.client_secret_file, and preload atlas_users/,
			"inline secret, backend $round: the WARNING's hint recommends files and preloading");
		is($o, 't', "inline secret, backend $round: the service account works") or diag $e;
		no_leak($e, "inline secret, backend $round: the WARNING and errors");
	}

	# the superuser sees a mask once the library is loaded
	($o) = (psql_as($inl, 'postgres', "LOAD 'atlas_users'; SHOW atlas_users.client_secret"))[1];
	is($o, '********', 'inline secret, loaded: SHOW prints a mask for the superuser');

	# leak 2: a reload logs an inline secret's new value at LOG
	my $rotated = 'mdb_sa_sk_rotated' . ('9' x 30);
	my $off = -s $inl->logfile;
	$inl->append_conf('postgresql.conf', "atlas_users.client_secret = '$rotated'\n");
	$inl->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok( $inl->wait_for_log(
			qr/LOG:\s+parameter "atlas_users\.client_secret" changed to "\Q$rotated\E"/, $off),
		'documented leak 2: a reload logs the new inline secret at LOG');
}
$inl->stop;

my $pre = atlas_node('secpreload',
	auth_method => 'service_account',
	extra_conf => $inline_conf . "shared_preload_libraries = 'atlas_users'\n");
$pre->safe_psql('postgres', q{
	CREATE ROLE plain LOGIN;
	CREATE ROLE settings_reader LOGIN;
	GRANT pg_read_all_settings TO settings_reader;
});
{
	my $s = session($pre, 'plain');
	my ($pid) = bg_query($s, 'SELECT pg_backend_pid()');
	is(library_loaded($pid), 1, 'preloaded: a fresh backend has atlas_users.so');
	my ($o, $e) = bg_query($s, 'SHOW atlas_users.client_secret');
	is(sqlstate_of($e), '42501', 'preloaded: a non-superuser cannot SHOW the inline secret (42501)');
	my $view = settings_view($s);
	no_leak($view, 'settings of a fresh non-superuser backend with preloading');
	($o, $e) = bg_query($s, 'SELECT count(*) FROM pg_file_settings');
	is(sqlstate_of($e), '42501', 'preloaded: pg_file_settings is refused to a non-superuser');
	$s->quit;

	# a role that may read settings sees the setting and the mask only
	for my $who ([ 'settings_reader', 'a pg_read_all_settings member' ], [ 'postgres', 'the superuser' ])
	{
		$s = session($pre, $who->[0]);
		no_leak(settings_view($s), "settings of $who->[1] with preloading");
		($o) = bg_query($s, 'SHOW atlas_users.client_secret');
		is($o, '********', "preloaded: $who->[1] sees only the mask");
		$s->quit if $who->[0] ne 'postgres';
	}
	($o) = bg_query($s, "SELECT count(*) FROM pg_settings WHERE name = 'atlas_users.client_secret'");
	is($o, '0', 'preloaded: the secret is not in pg_settings, even for the superuser');
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is($o, 't', 'preloaded: the inline secret works') or diag $e;
	unlike($e, qr/is set inline/, 'preloaded: no WARNING about the inline secret');
	$s->quit;
}
$pre->stop;
no_leak(slurp($pre->logfile), 'the server log of the preloaded inline node (no reload)');

done_testing();
