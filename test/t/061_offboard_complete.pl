# 061_offboard_complete.pl: offboarding everywhere a person has access,
# counted at the emulator.
#
# - Two foreign servers for two organizations (Acme: a digest key;
#   Globex, federated: a service account): atlas_orgs() lists both;
#   atlas_offboard_user(NULL, ...) plans and then removes a person from
#   both, each organization with its own credentials, audited with its
#   server; Globex's rows say the person must also go at the identity
#   provider.
# - Last owners and last team members: the dry run shows them blocked with
#   the reason; the real run removes every other membership first, one by
#   one, then sends the blocked removals and the org removal last, which
#   fail with Atlas's own answer; nothing is skipped.
# - A person known only by a legacy project invitation (invisible to the
#   user listings) is found by e-mail; the invitation is deleted and
#   audited.  An open org invitation is a PENDING user: no deprecated org
#   invitation read is made.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $acme = '65f0a0000000000000000001';
my $globex = '65f0a0000000000000000002';
my @acme_projects = map { sprintf('65f0b000000000000000000%d', $_) } 1 .. 3;
my $globex_project = '65f0b0000000000000000004';
my @acme_teams = ('65f0c0000000000000000001', '65f0c0000000000000000002');
my $globex_team = '65f0c0000000000000000003';
my $dave = '65f0d0000000000000000007';
my $owner = '65f0d000000000000000000c';

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node('offboard_complete');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $acme_sk = key_file($node, 'acme_sk', '6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60');
my $globex_secret = key_file($node, 'globex_secret', 'mdb_sa_sk_9c1d7e3a5b0f2c8e6d4a1b9f7e3c5d0a2b8f6e4c');
org_servers($node, acme => $acme, globex => $globex,
	acme_pk => 'atlasemu', acme_sk_file => $acme_sk,
	globex_id => 'mdb_sa_id_65f0e0000000000000000004', globex_secret_file => $globex_secret);

# Removal and invitation-deletion requests (not 401 challenges), by principal.
sub removals_by_principal
{
	my %by;
	for my $r (@{ emu('GET', 'requests?limit=1000')->{requests} })
	{
		next unless $r->{method} eq 'DELETE' || ($r->{method} eq 'POST' && $r->{route} =~ /removeUser/);
		next if $r->{status} eq '401';
		$by{ $r->{principal} // 'none' }++;
	}
	return join(' ', map { "$_=$by{$_}" } sort keys %by);
}

# The rows of an offboarding: "organization|kind|id|action|outcome|status|code".
sub offboard
{
	my ($org, $who, $scope, $dry) = @_;
	my $o = defined $org ? "'$org'" : 'NULL';
	return sql("SELECT concat_ws('|', organization, kind, id, action, outcome, http_status, error_code)"
		  . " FROM atlas_offboard_user($o, '$who', '$scope', $dry)");
}

# ------------------------------------------------------------------
# 1. every organization: two servers, two keys
# ------------------------------------------------------------------
is(sql('SELECT string_agg(id || \'|\' || name || \'|\' || server, \' \' ORDER BY server) FROM atlas_orgs()'),
	"$acme|Acme Corp|acme $globex|Globex|globex", 'atlas_orgs: each server lists its organization');

emu_reset_counters();
my $plan = offboard(undef, 'dave@example.com', 'org', 'true');
is( $plan,
	join("\n",
		"$acme|org|$acme|remove_org_user|planned",
		"$globex|org|$globex|remove_org_user|planned",
		"$globex|project|$globex_project|dropped_with_org|planned",
		"$globex|team|$globex_team|dropped_with_org|planned",
		"$globex|project_via_team|$globex_project|dropped_with_org|planned",
		"$globex|federation|$globex|remove_at_identity_provider|manual"),
	'org_id NULL, dry run: dave in both organizations, and Globex is federated');
is(emu_counter('removal_requests'), 0, 'dry run: no removal request');
like(sql("SELECT detail FROM atlas_offboard_user(NULL, 'dave\@example.com', dry_run => true) WHERE kind = 'federation'"),
	qr/federated identity provider.*remove the person there too, or their access returns at their next SSO login/,
	'federation: the detail says to remove the person at the identity provider');

emu_reset_counters();
my $a0 = sql('SELECT coalesce(max(id), 0) FROM atlas_removal_audit');
is( offboard(undef, 'dave@example.com', 'org', 'false'),
	join("\n",
		"$acme|org|$acme|remove_org_user|removed|204",
		"$globex|org|$globex|remove_org_user|removed|204",
		"$globex|project|$globex_project|dropped_with_org|removed",
		"$globex|team|$globex_team|dropped_with_org|removed",
		"$globex|federation|$globex|remove_at_identity_provider|manual"),
	'org_id NULL: dave removed from both organizations');
is(removals_by_principal(), 'bearer:mdb_sa_id_65f0e0000000000000000004=1 digest:atlasemu=1',
	'each organization with its own credentials');
is( sql("SELECT string_agg(org_id || '|' || server, ' ' ORDER BY server) FROM atlas_removal_audit WHERE id > $a0"),
	"$acme|acme $globex|globex", 'the audit rows name each server');
is_deeply(emu('GET', "state?user=$dave")->{orgs}, {}, 'the emulator shows dave in no organization');

my ($rc, $out, $err) = psql_as($node, 'postgres', "SELECT count(*) FROM atlas_offboard_user(NULL, 'nobody\@example.com')");
is($out, '0', 'nobody: no rows');
like($err, qr/NOTICE:\s+00000: no organization has a user nobody\@example.com.*\n.*DETAIL:\s+2 organizations were searched/,
	'nobody: a NOTICE says 2 organizations were searched');

# ------------------------------------------------------------------
# 2. last owners and last team members
# ------------------------------------------------------------------
# Globex: its only owner is now also the only member of its team
is( offboard($globex, 'globex.owner@example.com', 'org', 'true'),
	join("\n",
		"$globex|org|$globex|remove_org_user|blocked",
		"$globex|project|$globex_project|dropped_with_org|blocked",
		"$globex|team|$globex_team|dropped_with_org|blocked",
		"$globex|project_via_team|$globex_project|dropped_with_org|planned",
		"$globex|org_role|ORG_OWNER|dropped_with_org|planned",
		"$globex|federation|$globex|remove_at_identity_provider|manual"),
	'dry run: the last Organization Owner, Project Owner and team member are blocked');
like(sql("SELECT string_agg(detail, E'\\n') FROM atlas_offboard_user('$globex', 'globex.owner\@example.com', dry_run => true) WHERE outcome = 'blocked'"),
	qr/last Organization Owner.*\n.*last Project Owner.*\n.*last member/, 'dry run: each blocked row says why');

# Acme: owner@ is the only Project Owner of acme-staging; alice is another
# Organization Owner
emu_reset_counters();
my $rows = offboard($acme, 'owner@example.com', 'org', 'false');
like($rows, qr/^\Q$acme|project|$acme_projects[0]|remove_project_user|removed|204\E$/m, 'real run: acme-prod removed on its own');
like($rows, qr/^\Q$acme|project|$acme_projects[2]|remove_project_user|removed|204\E$/m, 'real run: acme-dev removed on its own');
like($rows, qr/^\Q$acme|team|$acme_teams[0]|remove_team_user|removed|200\E$/m, 'real run: dba-team left on its own');
like($rows, qr/^\Q$acme|team|$acme_teams[1]|remove_team_user|removed|200\E$/m, 'real run: app-team left on its own');
like($rows, qr/^\Q$acme|project|$acme_projects[1]|remove_project_user|failed|409|\E\w+$/m,
	'real run: the blocked project removal was sent and failed with Atlas\'s answer');
like($rows, qr/^\Q$acme|org|$acme|remove_org_user|failed|409|\E\w+$/m,
	'real run: the org removal was sent last and failed with Atlas\'s answer');
like($rows, qr/^\Q$acme|org_role|ORG_OWNER|dropped_with_org|not_removed\E$/m, 'real run: the org role stays, and says so');
my @order = map { $_->{route} } grep { $_->{method} ne 'GET' && $_->{status} ne '401' }
  @{ emu('GET', 'requests?limit=1000')->{requests} };
is($order[-1], '/api/atlas/v2/orgs/{orgId}/users/{userId}', 'real run: the org removal came after every other removal');
is(scalar(@order), 6, 'real run: 6 removal requests: 3 projects, 2 teams, the org');
my $st = emu('GET', "state?user=$owner");
is_deeply([ [ sort keys %{ $st->{orgs} } ], [ sort keys %{ $st->{projects} } ], $st->{teamIds} ],
	[ [$acme], [ $acme_projects[1] ], [] ], 'real run: only the org and the blocked project are left');

# ------------------------------------------------------------------
# 3. a person known only by a legacy project invitation
# ------------------------------------------------------------------
my $who = 'legacy.invite@example.com';
is(sql("SELECT count(*) FROM atlas_org_users('$acme') WHERE username = '$who'"), 0,
	'invitations: the user listing does not show the person');
my $proj_inv = sql("SELECT id FROM atlas_project_invitations('$acme_projects[2]') WHERE username = '$who'");
ok($proj_inv, 'invitations: a legacy invitation to acme-dev');
is(sql("SELECT count(*) FROM atlas_org_invitations('$acme') WHERE username = '$who'"), 0,
	'invitations: no org invitation (that would be a PENDING user)');
$a0 = sql('SELECT coalesce(max(id), 0) FROM atlas_removal_audit');
emu_reset_counters();
is( offboard($acme, $who, 'org', 'true'),
	"$acme|project_invitation|$proj_inv|delete_project_invitation|planned",
	'invitations: the plan deletes the project invitation');
is( offboard($acme, $who, 'org', 'false'),
	"$acme|project_invitation|$proj_inv|delete_project_invitation|removed|204",
	'invitations: the project invitation deleted');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/invites'), 0,
	'invitations: the deprecated org invitation listing is never read');
is(sql("SELECT count(*) FROM atlas_project_invitations('$acme_projects[2]') WHERE username = '$who'"),
	'0', 'invitations: none is left');
is( sql("SELECT string_agg(operation || '|' || user_id || '|' || username || '|' || outcome, ' ' ORDER BY operation)"
		  . " FROM atlas_removal_audit WHERE id > $a0"),
	"delete_project_invitation|$proj_inv|$who|removed",
	'invitations: the deletion is audited, the invitation id as user_id');

# an open invitation to the organization is a PENDING user (user id =
# invitation id + 1): scope 'projects' leaves it, and says so
my $inv2 = emu('POST', 'users', { count => 1, orgId => $acme, groupIds => [ $acme_projects[0] ],
	status => 'PENDING', prefix => 'invitee' })->{ids}[0];
my $who2 = emu('GET', "state?user=$inv2")->{username};
my ($oi2) = sql("SELECT id FROM atlas_org_invitations('$acme') WHERE username = '$who2'");
is(hex(substr($inv2, -8)) - hex(substr($oi2, -8)), 1, "a second invitee, $who2: invitation id = user id - 1");
is( offboard($acme, $who2, 'projects', 'false'),
	join("\n",
		"$acme|project|$acme_projects[0]|remove_project_user|removed|204",
		"$acme|org_invitation|$inv2|stays|stays"),
	"scope 'projects': the project membership goes, the org invitation (the PENDING user) stays");

$node->stop;
done_testing();
