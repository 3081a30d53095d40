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
use JSON::PP;
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT = qw(atlas_node emu emu_reset emu_counter emu_fault emu_config
  emu_users seed seed_id emu_counters emu_reset_counters emu_route_count);

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

# A started node with atlas_users installed and pointed at the emulator.
sub atlas_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $secrets = $ENV{ATLAS_SECRETS};
	my $conf = "
atlas_users.base_url = '$ENV{ATLAS_EMULATOR_HTTPS_URL}'
atlas_users.ca_file = '$ENV{ATLAS_TEST_CA}'
atlas_users.public_key = '" . _slurp("$secrets/public_key") . "'
atlas_users.private_key_file = '$secrets/private_key'
atlas_users.client_id = '" . _slurp("$secrets/client_id") . "'
atlas_users.client_secret_file = '$secrets/client_secret'
atlas_users.auth_method = '" . ($opt{auth_method} // 'digest') . "'
atlas_users.timeout_ms = " . ($opt{timeout_ms} // 10000) . "
";
	$conf .= $opt{extra_conf} if $opt{extra_conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION atlas_users');
	return $node;
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
