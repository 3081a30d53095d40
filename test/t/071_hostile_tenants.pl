# 071_hostile_tenants.pl: a role with USAGE on a server or on the wrapper
# cannot spoil another's token, nor route its calls (issue 17), counted by
# the emulator.
#
# - 100 rounds alternating a removal with the service account's secret (a
#   PUBLIC user mapping) and one by a role whose own mapping has the same
#   client id and a wrong secret: exactly 1 token grant for the right
#   secret, every call of the wrong one refused, and the wrong secret
#   backed off (far fewer token requests than rounds), no token cap reached.
# - A cold worker draining 40 queued rows at max_concurrency 8: 1 grant.
# - A base URL of over 300 bytes: two calls in two sessions take 1 grant.
# - A server that the role makes for the organization (org_id) and grants
#   to PUBLIC with a PUBLIC mapping is never chosen without being named:
#   removals for that organization and atlas_orgs() do not use it.
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
my $absent = '65f0d00000000000000000ff';
my $token_route = 'POST /api/oauth/token';
my $secrets = $ENV{ATLAS_SECRETS};
open my $fh, '<', "$secrets/client_id" or die "client_id: $!";
chomp(my $client_id = <$fh>);
close $fh;

emu_reset();
my $node = atlas_node('hostile',
	auth_method => 'service_account',
	extra_conf => "shared_preload_libraries = 'atlas_users'\natlas_users.max_concurrency = 8\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub grants { return emu_counter('token_grants'); }

# ------------------------------------------------------------------
# 1. a wrong secret with the same client id never spoils the right one
# ------------------------------------------------------------------
sql(qq{
	CREATE SERVER acme FOREIGN DATA WRAPPER atlas_users
		OPTIONS (base_url '$ENV{ATLAS_EMULATOR_HTTPS_URL}', ca_file '$ENV{ATLAS_TEST_CA}',
			auth_method 'service_account');
	CREATE USER MAPPING FOR PUBLIC SERVER acme
		OPTIONS (client_id '$client_id', client_secret_file '$secrets/client_secret');
	CREATE ROLE mallory LOGIN;
	GRANT USAGE ON FOREIGN DATA WRAPPER atlas_users TO mallory;
	GRANT USAGE ON FOREIGN SERVER acme TO mallory;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text) TO mallory;
	SET ROLE mallory;
	CREATE USER MAPPING FOR mallory SERVER acme
		OPTIONS (client_id '$client_id', client_secret 'not-the-service-account-secret');
	RESET ROLE;
});
sql('SELECT atlas_forget_tokens()');
emu_reset_counters();
my $out = sql(qq{
	CREATE TEMP TABLE rounds (ok int, refused int);
	DO \$\$
	DECLARE
		ok int := 0;
		refused int := 0;
	BEGIN
		PERFORM set_config('atlas_users.server', 'acme', false);
		FOR i IN 1..100 LOOP
			IF NOT atlas_remove_project_user('$group', '$absent', true) THEN
				ok := ok + 1;
			END IF;
			BEGIN
				SET ROLE mallory;
				PERFORM atlas_remove_project_user('$group', '$absent', true);
			EXCEPTION WHEN others THEN
				refused := refused + 1;
			END;
			RESET ROLE;
		END LOOP;
		INSERT INTO rounds VALUES (ok, refused);
	END
	\$\$;
	SELECT ok || '/' || refused FROM rounds;
});
is($out, '100/100', '100 rounds: every call with the right secret ran, every one with the wrong secret was refused');
my $c = emu_counters();
is($c->{token_grants}, 1, '1 token grant for the right secret across 100 alternating rounds');
my $wrong = emu_route_count($c, $token_route, 401);
cmp_ok($wrong, '>=', 1, 'the wrong secret was tried');
cmp_ok($wrong, '<=', 10, "and backed off: $wrong token requests for 100 refused calls");
is($c->{token_cap_denied} // 0, 0, 'the token cap was never reached');
my ($rc, $o, $e) = psql_as($node, 'mallory',
	"SET atlas_users.server = 'acme'; SELECT atlas_remove_project_user('$group', '$absent', true)");
like($e, qr/token request failed: 401/, "the wrong secret's error is Atlas's refusal") or diag $e;

# ------------------------------------------------------------------
# 2. a cold worker draining 40 rows at concurrency 8: one grant
# ------------------------------------------------------------------
my $ids = emu_users(count => 40, orgId => $org, groupIds => [$group], prefix => 'cold');
sql('SELECT atlas_forget_tokens()');
emu_reset_counters();
sql('SELECT count(atlas_enqueue_remove_project_user(' . "'$group', id)) FROM unnest("
	  . id_array($ids) . ') id');
my $deadline = time + 60;
my $done = 0;
while (time < $deadline)
{
	$done = sql(q{SELECT count(*) FROM atlas_removal_queue WHERE status = 'done'});
	last if $done == 40;
	sleep 0.1;
}
is($done, 40, 'the worker drained 40 rows');
is(grants(), 1, 'with 1 token grant at max_concurrency 8');

# ------------------------------------------------------------------
# 3. a base URL of over 300 bytes: one grant for two sessions
# ------------------------------------------------------------------
my $long = "$ENV{ATLAS_EMULATOR_HTTPS_URL}/x/" . ('a' x 280);
cmp_ok(length($long), '>', 300, 'a base URL of ' . length($long) . ' bytes');
sql('SELECT atlas_forget_tokens()');
emu_reset_counters();
for my $i (1 .. 2)
{
	is(sql("SET atlas_users.base_url = '$long'; SELECT atlas_remove_project_user('$group', '$absent', true)"),
		'f', "session $i: a call through the long base URL");
}
is(grants(), 1, 'the long base URL takes 1 grant for both');

# ------------------------------------------------------------------
# 4. a tenant's server for the organization is never chosen unnamed
# ------------------------------------------------------------------
($rc, $o, $e) = psql_as($node, 'mallory', qq{
	CREATE SERVER evil FOREIGN DATA WRAPPER atlas_users
		OPTIONS (base_url 'http://127.0.0.1:9', org_id '$org', auth_method 'digest');
	CREATE USER MAPPING FOR PUBLIC SERVER evil OPTIONS (public_key 'evilkey', private_key 'evilsecret');
	GRANT USAGE ON FOREIGN SERVER evil TO PUBLIC;
});
is($rc, 0, 'a role with USAGE on the wrapper makes a server for the organization') or diag $e;
my $victim = emu_users(count => 1, orgId => $org, prefix => 'victim')->[0];
is(sql("SELECT atlas_remove_org_user('$org', '$victim')"), 't', 'a removal for that organization');
is(sql("SELECT coalesce(server, '(settings)') FROM atlas_removal_audit ORDER BY id DESC LIMIT 1"),
	'(settings)', 'went through the settings, not the tenant server');
ok(!exists emu('GET', "state?user=$victim")->{orgs}{$org}, 'and the person is really gone from Atlas');
($rc, $o, $e) = psql_as($node, 'postgres', 'SELECT count(*) > 0 FROM atlas_orgs()');
is("$rc $o", '0 t', 'atlas_orgs() does not visit the tenant server') or diag $e;
($rc, $o, $e) = psql_as($node, 'postgres',
	"SET atlas_users.server = 'evil'; SELECT atlas_remove_org_user('$org', '$victim', true)");
like($e, qr/127\.0\.0\.1(:| port )9/, 'named explicitly, it is used (and fails to connect)') or diag $e;

$node->stop;
done_testing();
