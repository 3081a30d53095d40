# 091_federation.pl: federation, truthfully.
#
# - An organization whose federation settings are INACTIVE (Atlas answers
#   200 for every organization): no federation row, and
#   atlas_org_role_mappings lists nothing.
# - An ACTIVE identity provider with two role mappings: the row names both
#   IdP groups (read from the connected org configuration) and its
#   post-auth role grants; atlas_org_role_mappings lists them with their
#   roles.
# - Credentials that may not read the federation settings (403): the row
#   says 'unknown'.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $dev = seed_id('project', 2);

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node('federation');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub federation_rows
{
	return sql("SELECT concat_ws('|', kind, id, action, outcome) FROM atlas_offboard_user("
		  . "'$org', 'jane\@example.com', 'org', true) WHERE kind = 'federation'");
}

# ------------------------------------------------------------------
# 1. INACTIVE: not federation
# ------------------------------------------------------------------
emu_reset_counters();
is(federation_rows(), '', 'INACTIVE: no federation row');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/federationSettings', '200'), 1,
	'INACTIVE: Atlas answered 200');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM atlas_org_role_mappings('$org')");
is($out, '0', 'INACTIVE: atlas_org_role_mappings lists nothing');
like($err, qr/NOTICE:  organization $org signs no one in through an identity provider/,
	'INACTIVE: a NOTICE says why');

# ------------------------------------------------------------------
# 2. ACTIVE with two role mappings
# ------------------------------------------------------------------
emu('POST', 'federation', { orgId => $org, federated => JSON::PP::true, roleMappings => [
	{ externalGroupName => 'okta-atlas-admins',
	  roleAssignments => [ { orgId => $org, role => 'ORG_OWNER' } ] },
	{ externalGroupName => 'okta-dev-readers',
	  roleAssignments => [ { groupId => $dev, role => 'GROUP_READ_ONLY' },
		{ groupId => $dev, role => 'GROUP_DATA_ACCESS_READ_ONLY' } ] } ] });
is(federation_rows(), "federation|$org|remove_at_identity_provider|manual", 'ACTIVE: a federation row');
like(sql("SELECT detail FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true) WHERE kind = 'federation'"),
	qr/grants roles here at every SSO login to members of the IdP groups "okta-atlas-admins", "okta-dev-readers", and to everyone it signs in: ORG_MEMBER: remove the person there too/,
	'ACTIVE: the row names both groups, and the post-auth role grants');
emu_fault({ kind => 'status', status => 403, error_code => 'USER_UNAUTHORIZED',
	match => 'connectedOrgConfigs', count => 1 });
like(sql("SELECT outcome || ' ' || detail FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true) WHERE kind = 'federation'"),
	qr/^manual .*its role mappings could not be read: Atlas API error 403 USER_UNAUTHORIZED/,
	'ACTIVE, the connected org config refused (403): still manual, and it says the mappings could not be read');
is( sql("SELECT string_agg(concat_ws('|', external_group_name, roles::text, org_ids::text, project_ids::text), ' '"
		  . " ORDER BY external_group_name) FROM atlas_org_role_mappings('$org')"),
	"okta-atlas-admins|{ORG_OWNER}|{$org}|{} "
	  . "okta-dev-readers|{GROUP_READ_ONLY,GROUP_DATA_ACCESS_READ_ONLY}|{}|{$dev,$dev}",
	'atlas_org_role_mappings lists both mappings');

# ------------------------------------------------------------------
# 3. 403: unknown
# ------------------------------------------------------------------
emu_fault({ kind => 'status', status => 403, error_code => 'USER_UNAUTHORIZED',
	match => 'federationSettings', count => 1 });
is(federation_rows(), "federation|$org|remove_at_identity_provider|unknown", '403: outcome unknown');
emu_fault({ kind => 'status', status => 403, error_code => 'USER_UNAUTHORIZED',
	match => 'federationSettings', count => 1 });
like(sql("SELECT detail FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true) WHERE kind = 'federation'"),
	qr/Atlas would not say whether organization $org signs people in through an identity provider: Atlas API error 403 USER_UNAUTHORIZED/,
	'403: the detail says Atlas would not say');

$node->stop;
done_testing();
