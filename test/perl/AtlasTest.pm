# AtlasTest.pm: helpers for the atlas_users TAP tests.
#
# A node is a PostgreSQL::Test::Cluster configured against the Atlas
# emulator that test/check started (its URLs, CA and key files come from
# the environment); emu() and friends drive the emulator's control API.
package AtlasTest;

use strict;
use warnings;

use Exporter 'import';
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 ();
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT = qw(atlas_node atlas_conf atlas_standby emu emu_reset emu_counter emu_fault emu_config
  emu_users seed seed_id emu_counters emu_reset_counters emu_route_count
  wait_counter bg_query sqlstate_of socket_count psql_as id_array
  emu_requests emu_route_log emu_take_token
  psql_session session_send session_wait session_run session_cancel session_close
  sessions_at_once proc_kb key_file digest_server org_servers);

# PostgreSQL::Test::Cluster::init runs $ENV{PG_REGRESS} --config-auth; prove
# outside a PostgreSQL build tree leaves it unset, so find the pg_regress
# that PGXS installs next to the pg_config on PATH.
if (!$ENV{PG_REGRESS})
{
	my $pgxs = `pg_config --pgxs 2>/dev/null` // '';
	chomp $pgxs;
	(my $regress = $pgxs) =~ s{src/makefiles/pgxs\.mk$}{src/test/regress/pg_regress};
	$regress = '/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress'
	  unless $regress ne $pgxs && -x $regress;
	$ENV{PG_REGRESS} = $regress;
}

my $json = JSON::PP->new->canonical;
my $http = HTTP::Tiny->new(timeout => 30);

my $seed;

# The emulator's seed, as a Perl structure.
sub seed
{
	return $seed if $seed;
	my $file = ($ENV{ATLAS_TEST_ROOT} // '.') . '/emulator/seed.json';
	open my $fh, '<', $file or die "cannot open $file: $!";
	local $/;
	$seed = decode_json(<$fh>);
	return $seed;
}

# An id from the seed: seed_id('org'), seed_id('project', 0), seed_id('user', 'jane@example.com').
sub seed_id
{
	my ($kind, $which) = @_;
	my $s = seed();
	return $s->{orgs}[$which // 0]{id} if $kind eq 'org';
	return $s->{projects}[$which // 0]{id} if $kind eq 'project';
	return $s->{teams}[$which // 0]{id} if $kind eq 'team';
	if ($kind eq 'user')
	{
		for my $u (@{ $s->{users} })
		{
			return $u->{id} if $u->{username} eq $which;
		}
	}
	die "no $kind $which in the seed";
}

# Call the emulator's control API; returns the decoded JSON answer.
sub emu
{
	my ($method, $path, $body) = @_;
	my %opt;
	if (defined $body)
	{
		$opt{content} = ref $body ? $json->encode($body) : $body;
		$opt{headers} = { 'Content-Type' => 'application/json' };
	}
	my $res = $http->request($method, "$ENV{ATLAS_EMULATOR_URL}/__emulator/$path", \%opt);
	die "emulator $method $path: $res->{status} $res->{content}" unless $res->{success};
	return length($res->{content}) ? decode_json($res->{content}) : undef;
}

# Reset the emulator: state from the seed, counters, faults, config.
sub emu_reset { emu('POST', 'reset'); }

# One counter, by dotted path (e.g. 'token_grants'); 0 when absent.
sub emu_counter
{
	my ($path) = @_;
	my $v = emu('GET', 'counters');
	for my $k (split /\./, $path)
	{
		return 0 unless ref $v eq 'HASH' && exists $v->{$k};
		$v = $v->{$k};
	}
	return $v;
}

# All counters, as one hash (GET /__emulator/counters).
sub emu_counters { return emu('GET', 'counters'); }

# Reset the counters and the request log only (state, faults, config stay).
sub emu_reset_counters { emu('POST', 'reset_counters'); }

# Requests to a route template ('DELETE /api/atlas/v2/groups/{groupId}/users/{userId}'),
# of one status ('204') or of any status (undef), from a counters hash.
sub emu_route_count
{
	my ($c, $route, $status) = @_;
	my $by = $c->{requests_by_route}{$route} // {};
	return $by->{$status} // 0 if defined $status;
	my $n = 0;
	$n += $_ for values %$by;
	return $n;
}

# Add fault rules; each is a hash as the emulator documents.
sub emu_fault { emu('POST', 'faults', { faults => [@_] }); }

# Change emulator settings (latency_ms, token_ttl_s, ...).
sub emu_config { emu('POST', 'config', {@_}); }

# Create users in bulk; returns their ids.
sub emu_users { return emu('POST', 'users', {@_})->{ids}; }

# The emulator's request log: the last $n API requests, oldest first.
sub emu_requests
{
	my ($n) = @_;
	return emu('GET', 'requests?limit=' . ($n // 50000))->{requests};
}

# The entries of the request log (or of the last 50,000 requests) that went
# to a route given as in the counters ('DELETE /api/atlas/v2/groups/...').
sub emu_route_log
{
	my ($route, $log) = @_;
	return grep { defined $_->{route} && "$_->{method} $_->{route}" eq $route }
	  @{ $log // emu_requests() };
}

# Take a token from the emulator's token endpoint with the service account
# of the tests, as another client of that account would: (HTTP status,
# the decoded answer).
sub emu_take_token
{
	my $secrets = $ENV{ATLAS_SECRETS};
	my $basic = MIME::Base64::encode_base64(
		_slurp("$secrets/client_id") . ':' . _slurp("$secrets/client_secret"), '');
	my $res = $http->request(
		'POST',
		"$ENV{ATLAS_EMULATOR_URL}/api/oauth/token",
		{
			content => 'grant_type=client_credentials',
			headers => {
				'Authorization' => "Basic $basic",
				'Content-Type' => 'application/x-www-form-urlencoded',
				'Accept' => 'application/json'
			}
		});
	my $body = eval { decode_json($res->{content}) } // {};
	return ($res->{status}, $body);
}

# An SQL array literal of ids.
sub id_array { return "ARRAY[" . join(',', map { "'$_'" } @{ $_[0] }) . "]::text[]"; }

# One psql run as a role, in a fresh backend, not stopping at errors and
# with verbose errors (SQLSTATEs): (exit code, stdout, stderr).
sub psql_as
{
	my ($node, $user, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		'postgres', $sql,
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose', '-U', $user ]);
	return ($rc, $out, $err);
}

# The settings that point a node at the emulator, and $opt{extra_conf};
# the removal budget is off unless $opt{guard}.
# listRateLimits is read only with $opt{rate_limit_sets_ttl} (seconds).
sub atlas_conf
{
	my (%opt) = @_;
	my $secrets = $ENV{ATLAS_SECRETS};
	# base_url, ca_file and the credentials: test/lib.sh writes them once
	open my $fh, '<', "$secrets/settings.conf" or die "cannot open $secrets/settings.conf: $!";
	my $conf = "\n" . do { local $/; <$fh> };
	close $fh;
	$conf .= "atlas_users.auth_method = '" . ($opt{auth_method} // 'digest') . "'
atlas_users.timeout_ms = " . ($opt{timeout_ms} // 10000) . "
atlas_users.rate_limit_sets_ttl = " . ($opt{rate_limit_sets_ttl} // 0) . "
";
	# the removal budget (guard.c) would hold the bursts of the tests of
	# other things: off unless a test asks for it with guard => 1
	$conf .= "atlas_users.guard_max_removals = 1000000\n" unless $opt{guard};
	$conf .= $opt{extra_conf} if $opt{extra_conf};
	return $conf;
}

# A started node with atlas_users installed and pointed at the emulator;
# $opt{init} is passed to init (allows_streaming => 1 for a primary).
sub atlas_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} // {} });
	$node->append_conf('postgresql.conf', atlas_conf(%opt));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION atlas_users');
	return $node;
}

# A streaming hot standby of $primary (an atlas_node with init =>
# { allows_streaming => 1 }), from a fresh base backup, with $extra_conf
# added to the configuration it copies; started and caught up.
sub atlas_standby
{
	my ($primary, $name, $extra_conf) = @_;
	$primary->backup("${name}_base");
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, "${name}_base", has_streaming => 1);
	$standby->append_conf('postgresql.conf', $extra_conf) if $extra_conf;
	$standby->start;
	$primary->wait_for_catchup($standby);
	return $standby;
}

# Poll an emulator counter until $ok->(value) holds, up to $timeout
# seconds; returns its last value.
sub wait_counter
{
	my ($name, $ok, $timeout) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		my $v = emu_counter($name);
		return $v if $ok->($v) || time > $deadline;
		sleep 0.02;
	}
}

# One statement in a BackgroundPsql session: (stdout, the stderr of just
# this statement, seconds it took).
sub bg_query
{
	my ($s, $sql) = @_;
	$s->{stderr} = '';
	my $t0 = time;
	my $out = $s->query($sql);
	my $dt = time - $t0;
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err, $dt);
}

# The SQLSTATE of the first ERROR in psql's stderr (VERBOSITY verbose).
sub sqlstate_of
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '(none)';
}

# The sockets a process holds, from /proc/<pid>/fd.
sub socket_count
{
	my ($pid) = @_;
	my $n = 0;
	opendir my $d, "/proc/$pid/fd" or die "cannot read /proc/$pid/fd: $!";
	for my $fd (readdir $d)
	{
		next if $fd =~ /^\./;
		my $l = readlink "/proc/$pid/fd/$fd";
		$n++ if defined $l && $l =~ /^socket:\[/;
	}
	closedir $d;
	return $n;
}

# ------------------------------------------------------------------
# psql sessions driven through IPC::Run, for tests that watch a statement
# while it runs (cancel, timing): send it, poll its output, cancel it.
# A session is a hash: in, out, err (the texts) and h (the harness).
# ------------------------------------------------------------------
my $mark = 0;

# A key file in the node's keys directory, owned by the server's OS user,
# mode 0600, written whole (a new name, then a rename); returns its path.
sub key_file
{
	my ($node, $name, $text) = @_;
	my $dir = $node->basedir . '/keys';
	-d $dir or mkdir $dir or die "mkdir $dir: $!";
	my $f = "$dir/$name";
	open my $fh, '>', "$f.tmp" or die "cannot write $f: $!";
	print $fh "$text\n";
	close $fh;
	chmod 0600, "$f.tmp" or die "chmod: $!";
	rename "$f.tmp", $f or die "rename: $!";
	return $f;
}

# A server of the atlas_users wrapper pointed at the emulator, digest, and
# a user mapping for postgres with the test key (its private key file).
sub digest_server
{
	my ($node, $name) = @_;
	my $secrets = $ENV{ATLAS_SECRETS};
	my $pk = _slurp("$secrets/public_key");
	$node->safe_psql('postgres', qq{
		CREATE SERVER $name FOREIGN DATA WRAPPER atlas_users
			OPTIONS (base_url '$ENV{ATLAS_EMULATOR_HTTPS_URL}', ca_file '$ENV{ATLAS_TEST_CA}',
				auth_method 'digest');
		CREATE USER MAPPING FOR postgres SERVER $name
			OPTIONS (public_key '$pk', private_key_file '$secrets/private_key');
	});
}

# Servers acme and globex of the atlas_users wrapper pointed at the
# emulator, one for each organization (%o: acme, globex: their ids), and
# user mappings for postgres: acme with a digest key (acme_pk, the file
# acme_sk_file), globex with a service account (globex_id, the file
# globex_secret_file).
sub org_servers
{
	my ($node, %o) = @_;
	my ($url, $ca) = ($ENV{ATLAS_EMULATOR_HTTPS_URL}, $ENV{ATLAS_TEST_CA});
	$node->safe_psql('postgres', qq{
		CREATE SERVER acme FOREIGN DATA WRAPPER atlas_users
			OPTIONS (base_url '$url', ca_file '$ca', org_id '$o{acme}');
		CREATE SERVER globex FOREIGN DATA WRAPPER atlas_users
			OPTIONS (base_url '$url', ca_file '$ca', org_id '$o{globex}');
		CREATE USER MAPPING FOR postgres SERVER acme
			OPTIONS (public_key '$o{acme_pk}', private_key_file '$o{acme_sk_file}');
		CREATE USER MAPPING FOR postgres SERVER globex
			OPTIONS (client_id '$o{globex_id}', client_secret_file '$o{globex_secret_file}');
	});
}

# A field of a process's /proc/<pid>/status in kB (VmHWM, VmRSS), or -1.
sub proc_kb
{
	my ($pid, $field) = @_;
	open my $fh, '<', "/proc/$pid/status" or return -1;
	while (<$fh>) { return $1 if /^\Q$field\E:\s+(\d+)\s+kB/; }
	return -1;
}

# A psql session on the postgres database of $node, as $user (default: the
# bootstrap superuser).
sub psql_session
{
	my ($node, $user) = @_;
	my %s = (in => '', out => '', err => '');
	my $conn = $node->connstr('postgres') . (defined $user ? " user=$user" : '');
	$s{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $conn ],
		'<', \$s{in}, '>', \$s{out}, '2>', \$s{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%s;
}

# Wait until the text of $which (out or err) matches $re; returns the time
# it was first seen, or undef after $timeout seconds.
sub session_wait
{
	my ($s, $which, $re, $timeout) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		$s->{h}->pump_nb;
		return time if $s->{$which} =~ $re;
		return undef if time > $deadline;
		sleep 0.002;
	}
}

# Hand what is queued for psql's stdin to psql now (IPC::Run writes it only
# while pumping).
sub _session_flush
{
	my ($s) = @_;
	my $deadline = time + 30;
	while (length $s->{in})
	{
		$s->{h}->pump_nb;
		die 'psql does not read its input' if time > $deadline;
		sleep 0.001 if length $s->{in};
	}
}

# Send a statement without waiting for it; returns the end marker that
# session_wait can look for in out.
sub session_send
{
	my ($s, $sql) = @_;
	$mark++;
	$s->{out} = '';
	$s->{err} = '';
	$s->{in} .= "$sql;\n\\echo END$mark\n";
	_session_flush($s);
	return "END$mark";
}

# Run a statement to its end; returns (stdout without the marker, stderr).
sub session_run
{
	my ($s, $sql, $timeout) = @_;
	my $m = session_send($s, $sql);
	defined session_wait($s, 'out', qr/^\Q$m\E$/m, $timeout // 60)
	  or die "statement did not end: $sql\nstdout: $s->{out}\nstderr: $s->{err}";
	(my $out = $s->{out}) =~ s/^\Q$m\E\n?//m;
	chomp $out;
	return ($out, $s->{err});
}

# From the session $ctl, cancel the backend $pid; does not wait.
sub session_cancel
{
	my ($ctl, $pid) = @_;
	$ctl->{in} .= "SELECT pg_cancel_backend($pid);\n";
	_session_flush($ctl);
}

# End a session.
sub session_close
{
	my ($s) = @_;
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
}

# Run $sqls->[i] in the session $sessions->[i] (psql_session), all starting
# at the same moment: each session first waits for a shared advisory lock
# that the session $ctl holds exclusively, and $ctl lets go once every one
# of them waits.  Returns the release time and, per session, [stdout,
# stderr, seconds from the release to its end].
sub sessions_at_once
{
	my ($ctl, $sessions, $sqls, $timeout) = @_;
	my $key = 0x41544c53;
	my $n = scalar @$sessions;
	$timeout //= 300;
	session_run($ctl, "SELECT pg_advisory_lock($key)");
	my @marks = map {
		session_send($sessions->[$_],
			"DO \$\$BEGIN PERFORM pg_advisory_lock_shared($key);"
			  . " PERFORM pg_advisory_unlock_shared($key); END\$\$;\n"
			  . $sqls->[$_])
	} 0 .. $n - 1;
	my $deadline = time + 60;
	while (1)
	{
		my ($waiting) = session_run($ctl,
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
			  . " AND objid = $key AND NOT granted");
		last if $waiting == $n;
		die "only $waiting of $n sessions reached the barrier" if time > $deadline;
		sleep 0.01;
	}
	my $t0 = time;
	session_run($ctl, "SELECT pg_advisory_unlock($key)");
	my @res;
	my $left = $n;
	$deadline = $t0 + $timeout;
	while ($left)
	{
		for my $i (0 .. $n - 1)
		{
			next if $res[$i];
			my $s = $sessions->[$i];
			$s->{h}->pump_nb;
			next unless $s->{out} =~ /^\Q$marks[$i]\E$/m;
			(my $out = $s->{out}) =~ s/^\Q$marks[$i]\E\n?//m;
			chomp $out;
			$res[$i] = [ $out, $s->{err}, time - $t0 ];
			$left--;
		}
		die "$left of $n sessions did not end within $timeout s" if $left && time > $deadline;
		sleep 0.005 if $left;
	}
	return ($t0, @res);
}

sub _slurp
{
	my ($f) = @_;
	open my $fh, '<', $f or die "cannot open $f: $!";
	my $v = <$fh>;
	chomp $v;
	return $v;
}

1;
