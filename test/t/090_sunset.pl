# 090_sunset.pl: past Atlas's sunset of 2027-07-01, and before it.
#
# - With the emulator's clock at 2027-07-02 the deprecated invitation
#   endpoints answer 410 VERSION_GONE.  Offboarding (dry run and real) and
#   reconciliation of people with and without invitations still give their
#   plans and do their removals: org invitations are PENDING users, and the
#   legacy project invitations that can no longer be read are shown in a
#   row (or a NOTICE), not raised.  Within a statement the retired endpoint
#   gets 1 request, however many projects there are.
# - atlas_org_invitations/atlas_project_invitations: a clear error naming
#   the endpoint, the day it retired and what to use instead.
# - With the clock at 2027-03-01 (122 days before), the WARNING comes once
#   per session; at 2026-12-01 (212 days before) it does not.
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
my @projects = map { seed_id('project', $_) } 0 .. 2;
my @teams = map { seed_id('team', $_) } 0 .. 1;
my $jane = seed_id('user', 'jane@example.com');
my $invited = seed_id('user', 'invited@example.com');
my $group_invites = 'GET /api/atlas/v2/groups/{groupId}/invites';

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false }, today => '2027-07-02');
my $node = atlas_node('sunset');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# The rows of atlas_offboard_user, one "kind|id|action|outcome|status" each.
sub offboard
{
	my ($who, $scope, $dry) = @_;
	return sql("SELECT concat_ws('|', kind, id, action, outcome, http_status)"
		  . " FROM atlas_offboard_user('$org', '$who', '$scope', $dry)");
}

# Requests to the project invitation listing since the last reset, by status.
sub invite_reads
{
	my $c = emu_counters();
	return join(' ', map { "$_=$c->{requests_by_route}{$group_invites}{$_}" }
		  sort keys %{ $c->{requests_by_route}{$group_invites} // {} });
}

# ------------------------------------------------------------------
# 1. 2027-07-02: offboarding goes on, and says what it could not see
# ------------------------------------------------------------------
emu_reset_counters();
is( offboard('jane@example.com', 'org', 'true'),
	join("\n",
		"org|$org|remove_org_user|planned",
		(map { "project|$_|dropped_with_org|planned" } @projects),
		(map { "team|$_|dropped_with_org|planned" } @teams),
		(map { "project_via_team|$_|dropped_with_org|planned" } @projects),
		"project_invitations|$org|list_project_invitations|unknown"),
	'2027-07-02, dry run: the plan, and a row for the invitations that could not be read');
is(invite_reads(), '410=1',
	'dry run: 1 request to the retired endpoint for 3 projects (0 after the first 410)');
like(sql("SELECT detail FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true)"
		  . " WHERE kind = 'project_invitations'"),
	qr{Atlas retired GET /api/atlas/v2/groups/\{groupId\}/invites on 2027-07-01 \(410 VERSION_GONE\)},
	'dry run: the row names the endpoint, the day and the 410');

emu_reset_counters();
is( offboard('jane@example.com', 'org', 'false'),
	join("\n",
		"org|$org|remove_org_user|removed|204",
		(map { "project|$_|dropped_with_org|removed" } @projects),
		(map { "team|$_|dropped_with_org|removed" } @teams),
		"project_invitations|$org|list_project_invitations|unknown"),
	'2027-07-02, real run: jane removed, the invitations shown as unknown');
is(invite_reads(), '410=1', 'real run: 1 request to the retired endpoint');
is_deeply(emu('GET', "state?user=$jane")->{orgs}, {}, 'real run: jane is gone from the org');

# a person with an open org invitation: a PENDING user, removed at 2025-02-19
emu_reset_counters();
is( offboard('invited@example.com', 'org', 'false'),
	join("\n",
		"org|$org|remove_org_user|removed|204",
		"project|$projects[2]|dropped_with_org|removed",
		"team|$teams[1]|dropped_with_org|removed",
		"project_invitations|$org|list_project_invitations|unknown"),
	'2027-07-02: the invited person (PENDING) is removed, invitation and all');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/invites'), 0,
	'no request to the retired org invitation listing');
is_deeply(emu('GET', "state?user=$invited")->{orgs}, {}, 'the invitation is gone');

# a person known only by a legacy project invitation: a NOTICE, no error
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT count(*) FROM atlas_offboard_user('$org', 'legacy.invite\@example.com', 'org', true)");
is($rc . '|' . $out, '0|0', 'a legacy project invitee: no rows, no error');
like($err, qr/NOTICE:  organization $org: no member legacy.invite\@example.com, and legacy project invitations could not be read/,
	'a legacy project invitee: the NOTICE says what could not be read');

# ------------------------------------------------------------------
# 2. reconciliation: org invitations are PENDING users; the legacy project
#    invitations could not be read, and a row says so
# ------------------------------------------------------------------
emu_reset_counters();
my $pending = emu('POST', 'users', { count => 1, orgId => $org, status => 'PENDING', prefix => 'rc' })->{ids}[0];
my $pending_name = emu('GET', "state?user=$pending")->{username};
my $keep = "ARRAY(SELECT username FROM atlas_org_users('$org')"
  . " WHERE username NOT IN ('erin\@example.com', '$pending_name'))";
is( sql("SELECT string_agg(concat_ws('|', kind, username, status, action, outcome), ' ' ORDER BY username)"
		  . " FROM atlas_reconcile_org('$org', $keep, dry_run => true)"),
	"user|erin\@example.com|ACTIVE|remove_org_user|planned user|$pending_name|PENDING|remove_org_user|planned"
	  . " project_invitations|list_project_invitations|unknown",
	'reconcile, dry run: erin and an invited person (a PENDING user); the legacy invitations unseen');
is( sql("SELECT string_agg(concat_ws('|', kind, username, action, outcome, http_status), ' ' ORDER BY username)"
		  . " FROM atlas_reconcile_org('$org', $keep, dry_run => false)"),
	"user|erin\@example.com|remove_org_user|removed|204 user|$pending_name|remove_org_user|removed|204"
	  . " project_invitations|list_project_invitations|unknown",
	'reconcile: erin removed, and the invitation with the PENDING user');
is(sql("SELECT count(*) FROM atlas_org_users('$org', ARRAY['PENDING']) WHERE id = '$pending'"), 0,
	'reconcile: the invitation is gone');
my $c = emu_counters();
is( emu_route_count($c, 'GET /api/atlas/v2/orgs/{orgId}/invites')
	  + emu_route_count($c, 'DELETE /api/atlas/v2/orgs/{orgId}/invites/{invitationId}'),
	0, 'reconcile: no request to the org invitation endpoints');
is(invite_reads(), '410=2', 'reconcile: 1 request to the retired project invitation listing per statement (2 statements)');

# ------------------------------------------------------------------
# 3. the invitation listings: a clear error
# ------------------------------------------------------------------
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM atlas_org_invitations('$org')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  0A000: Atlas retired GET \/api\/atlas\/v2\/orgs\/\{orgId\}\/invites on 2027-07-01 \(410 VERSION_GONE\)/,
	'atlas_org_invitations: retired, on 2027-07-01, SQLSTATE 0A000');
like($err, qr/HINT:  Open organization invitations are the PENDING users of GET \/api\/atlas\/v2\/orgs\/\{orgId\}\/users/,
	'atlas_org_invitations: the hint says what to use instead');
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM atlas_project_invitations('$projects[2]')");
like($err, qr/ERROR:  Atlas retired GET \/api\/atlas\/v2\/groups\/\{groupId\}\/invites on 2027-07-01.*\nDETAIL: .*\nHINT:  Invite people to the organization with project roles instead/s,
	'atlas_project_invitations: retired, with what to do instead');

# ------------------------------------------------------------------
# 4. before the sunset: the WARNING once per session, within 180 days
# ------------------------------------------------------------------
emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false }, today => '2027-03-01');
my $q = "SELECT count(*) FROM atlas_offboard_user('$org', 'jane\@example.com', 'org', true)";
($rc, $out, $err) = $node->psql('postgres', "$q; $q");
is($rc, 0, '2027-03-01: offboarding works');
my @warnings = ($err =~ /WARNING:  Atlas endpoint GET \/api\/atlas\/v2\/groups\/\{groupId\}\/invites is deprecated and will be removed on Thu, 1 Jul 2027 00:00:00 GMT/g);
is(scalar(@warnings), 1, '2027-03-01: one WARNING in a session of two offboardings (3 projects each)');
like($err, qr/DETAIL:  Atlas sent Deprecation: Wed, 4 Oct 2023 00:00:00 GMT, at resource version 2023-01-01. 122 days are left by Atlas's clock./,
	'the WARNING says how many days are left');
like($err, qr/HINT:  Invite people to the organization with project roles instead/, 'the WARNING names what replaces it');
($rc, $out, $err) = $node->psql('postgres', $q);
is(scalar(() = $err =~ /WARNING:  Atlas endpoint/g), 1, 'a new session warns again, once');

emu_config(today => '2026-12-01');
($rc, $out, $err) = $node->psql('postgres', $q);
is(scalar(() = $err =~ /WARNING/g), 0, '2026-12-01 (212 days before): no WARNING');

$node->stop;
done_testing();
