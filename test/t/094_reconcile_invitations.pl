# 094_reconcile_invitations.pl: legacy project invitations, a supplement.
#
# - Before the sunset, atlas_reconcile_org reads the project invitation
#   listing of each project of the organization (1 request per project):
#   a person invited only that way is planned, then deleted with
#   DELETE /groups/{groupId}/invites/{invitationId} (1 request).
# - atlas_users.max_invitation_reads bounds the reads, in reconciliation
#   and offboarding: 2 projects read, and a row says the rest are unseen.
# - With the emulator's clock at 2027-07-02 the endpoint answers 410:
#   reconciliation goes on (dry run and real), a row says what could not
#   be seen, and the retired endpoint gets 1 request per statement.
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
my $legacy_project = '65f0b0000000000000000003';
my $list_route = 'GET /api/atlas/v2/groups/{groupId}/invites';
my $delete_route = 'DELETE /api/atlas/v2/groups/{groupId}/invites/{invitationId}';

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node('reconcile_invitations');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Everyone the org users listing shows is kept: only legacy invitees are not.
my $keep_all = "ARRAY(SELECT username FROM atlas_org_users('$org'))";

# The rows of a reconciliation, "kind|id|username|status|action|outcome|http_status".
sub reconcile
{
	my ($keep, $dry, $pre) = @_;
	return sql(($pre // '')
		  . "SELECT string_agg(concat_ws('|', kind, id, username, status, action, outcome, http_status),"
		  . " ' ' ORDER BY kind, username) FROM atlas_reconcile_org('$org', $keep, dry_run => $dry)");
}

# Requests to the project invitation listing since the last reset, by
# status (but the 401 of a new session's digest challenge).
sub invite_reads
{
	my $c = emu_counters();
	return join(' ', map { "$_=$c->{requests_by_route}{$list_route}{$_}" }
		  grep { $_ ne '401' } sort keys %{ $c->{requests_by_route}{$list_route} // {} });
}

my $projects = sql("SELECT count(*) FROM atlas_org_projects('$org')");
cmp_ok($projects, '>=', 3, "the organization has $projects projects");
my $inv = sql("SELECT id FROM atlas_project_invitations('$legacy_project')"
	  . " WHERE username = 'legacy.invite\@example.com'");
like($inv, qr/^[0-9a-f]{24}$/, 'the legacy invitation is listed');

# ------------------------------------------------------------------
# 1. before the sunset: seen, planned, deleted
# ------------------------------------------------------------------
emu_reset_counters();
is(reconcile($keep_all, 'true'),
	"project_invitation|$inv|legacy.invite\@example.com|PENDING|delete_project_invitation|planned",
	'dry run: the person invited only to a project is planned');
is(invite_reads(), "200=$projects", "dry run: 1 invitation read per project ($projects)");
like(sql("SELECT detail FROM atlas_reconcile_org('$org', $keep_all) WHERE kind = 'project_invitation'"),
	qr/A legacy invitation to project $legacy_project\./, 'dry run: the row names the project');

# the bound: 2 projects read, a row for the rest
emu_reset_counters();
is(reconcile($keep_all, 'true', 'SET atlas_users.max_invitation_reads = 2; '),
	"project_invitations|$org|list_project_invitations|unknown",
	'max_invitation_reads = 2: the invitation in the third project is not seen, and a row says so');
is(invite_reads(), '200=2', 'max_invitation_reads = 2: 2 invitation reads');
like(sql("SET atlas_users.max_invitation_reads = 2; SELECT detail FROM atlas_reconcile_org('$org', $keep_all)"),
	qr/read in the first 2 of the organization's $projects projects only \(atlas_users.max_invitation_reads\)/,
	'max_invitation_reads = 2: the row says how many were read');
emu_reset_counters();
is(sql("SET atlas_users.max_invitation_reads = 1; SELECT count(*) FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true)"
		  . " WHERE kind = 'project_invitations' AND outcome = 'unknown'"),
	1, 'offboarding keeps to the bound: a row for the projects not read');
is(invite_reads(), '200=1', 'offboarding, max_invitation_reads = 1: 1 invitation read');

emu_reset_counters();
is(reconcile($keep_all, 'false'),
	"project_invitation|$inv|legacy.invite\@example.com|PENDING|delete_project_invitation|removed|204",
	'real run: the legacy invitation is deleted');
is(emu_route_count(emu_counters(), $delete_route), 1, 'real run: 1 DELETE of a project invitation');
is(sql("SELECT count(*) FROM atlas_project_invitations('$legacy_project')"), 0, 'the invitation is gone');

# ------------------------------------------------------------------
# 2. 2027-07-02: the endpoint retired; the plan goes on and says so
# ------------------------------------------------------------------
emu_config(today => '2027-07-02');
my $keep = "ARRAY(SELECT username FROM atlas_org_users('$org') WHERE username <> 'erin\@example.com')";
emu_reset_counters();
is(reconcile($keep, 'true'),
	"project_invitations|$org|list_project_invitations|unknown user|65f0d0000000000000000008|erin\@example.com|ACTIVE|remove_org_user|planned",
	'2027-07-02, dry run: erin planned, the invitations that could not be read shown');
is(invite_reads(), '410=1', "dry run: 1 request to the retired endpoint for $projects projects");
like(sql("SELECT detail FROM atlas_reconcile_org('$org', $keep) WHERE kind = 'project_invitations'"),
	qr{Atlas retired GET /api/atlas/v2/groups/\{groupId\}/invites on 2027-07-01 \(410 VERSION_GONE\)},
	'dry run: the row names the endpoint, the day and the 410');
emu_reset_counters();
is(reconcile($keep, 'false'),
	"project_invitations|$org|list_project_invitations|unknown user|65f0d0000000000000000008|erin\@example.com|ACTIVE|remove_org_user|removed|204",
	'2027-07-02, real run: erin removed, the 410 did not fail it');
is(invite_reads(), '410=1', 'real run: 1 request to the retired endpoint');

$node->stop;
done_testing();
