# 093_rate_limit_hosts.pl: rate-limit models are kept per host (issue 17):
# 70 made-up project ids at another host (a hostile server) never evict
# what was learned of the real Atlas; the other host's buckets give way
# to one another instead.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';

emu_reset();
my $node = atlas_node('rate_limit_hosts', extra_conf => "shared_preload_libraries = 'atlas_users'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $sk = key_file($node, 'sk', '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60');
sql(qq{
	CREATE SERVER other FOREIGN DATA WRAPPER atlas_users OPTIONS (base_url '$ENV{ATLAS_EMULATOR_URL}');
	CREATE USER MAPPING FOR postgres SERVER other OPTIONS (public_key 'atlasemu', private_key_file '$sk');
});
my ($other_host) = $ENV{ATLAS_EMULATOR_URL} =~ m{^http://(.*)$};

# the real Atlas: the org users' bucket, learned from the headers
sql("SELECT count(*) FROM atlas_org_users('$org')");
my $real = "SELECT capacity FROM atlas_rate_limits() WHERE bucket LIKE 'org_users $org at localhost:%'";
is(sql($real), '500', 'the real host: the org users bucket holds 500');
my $real_n = sql("SELECT count(*) FROM atlas_rate_limits() WHERE bucket LIKE '% at localhost:%'");

# another host: 70 project ids, each its own bucket
my ($rc, $out, $err) = $node->psql('postgres', q{
	SET atlas_users.server = 'other';
	DO $$
	BEGIN
		FOR i IN 1 .. 70 LOOP
			BEGIN
				PERFORM count(*) FROM atlas_project_users(lpad(to_hex(i), 24, 'e'));
			EXCEPTION WHEN OTHERS THEN NULL;
			END;
		END LOOP;
	END $$;
});
is($rc, 0, 'another host: 70 project listings (each a 404)');
is( sql("SELECT count(*) FILTER (WHERE bucket LIKE '% at $other_host') || '+'"
		  . " || count(*) FILTER (WHERE bucket LIKE '% at localhost:%') FROM atlas_rate_limits()"),
	(64 - $real_n) . "+$real_n",
	'another host: the slots the real host does not use, the rest gave way to one another');
is(sql($real), '500', 'the real host: its bucket was not evicted');

$node->stop;
done_testing();
