# 104_offboard_requests.pl: the requests of offboarding one person, counted
# at the emulator (issue 22).
#
# An emulated organization of 20 projects and 20 teams (POST
# /__emulator/scale); the person is GROUP_READ_ONLY in one project and a
# member of one team, which has a role in that project:
#   - a dry run of scope 'org' reads each project's teams and invitations
#     once, and nothing twice: 46 answered requests (the organization's
#     name and its teams' names one each);
#   - a real run of scope 'org' reads no project's teams (its rows of access
#     through teams would only say dropped_with_org), nothing twice, and
#     sends one removal: 27 answered requests;
#   - scope 'projects' still reads each project's teams (its rows say the
#     access through a team stays).
# Each organization, project and team row shows its name (with org_id NULL,
# the organization's comes with GET /orgs).
# bench/offboard_requests.py prints the same figures for 200 projects.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node('offboard_requests');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $sc = emu('POST', 'scale', { users => 40, projects => 20, teams => 20, prefix => 'offreq' });
my $org = $sc->{orgId};
my $teams_route = 'GET /api/atlas/v2/groups/{groupId}/teams';
my $invites_route = 'GET /api/atlas/v2/groups/{groupId}/invites';

# Offboard a person; returns (rows, answered requests by "METHOD route",
# the requests answered twice: "METHOD path" with its count).
sub offboard
{
	my ($who, $scope, $dry) = @_;
	emu_reset_counters();
	my $rows = sql("SELECT string_agg(concat_ws('|', kind, action, name), ',' ORDER BY kind, id)"
		  . " FROM atlas_offboard_user('$org', '$who', '$scope', $dry)");
	my (%by_route, %by_path);
	for my $r (@{ emu_requests() })
	{
		next if $r->{status} eq '401';    # digest challenges
		$by_route{"$r->{method} " . ($r->{route} // '?')}++;
		$by_path{"$r->{method} $r->{path}"}++;
	}
	my $twice = join(' ', map { "$_=$by_path{$_}" } grep { $by_path{$_} > 1 } sort keys %by_path);
	return ($rows, \%by_route, $twice);
}

sub total { my $n = 0; $n += $_ for values %{ $_[0] }; return $n; }

my ($rows, $by, $twice) = offboard('offreq000007@example.com', 'org', 'true');
is($by->{'GET /api/atlas/v2/orgs/{orgId}'}, 1, "dry run: the organization's name read once");
is($by->{'GET /api/atlas/v2/orgs/{orgId}/teams'}, 1, "dry run: the teams' names read once");
is($by->{'GET /api/atlas/v2/orgs/{orgId}/groups'}, 1, "dry run: the projects (and their names) read once");
is( $rows,
	"org|remove_org_user|offreq-org-$sc->{run},project|dropped_with_org|offreq-project-7,"
	  . 'project_via_team|dropped_with_org|offreq-project-7,team|dropped_with_org|offreq-team-7',
	'dry run: the org, project, team and access through the team, each with its name');
is($by->{$teams_route}, 20, "dry run: each of the 20 projects' teams read once");
is($by->{$invites_route}, 20, "dry run: each of the 20 projects' invitations read once");
is($twice, '', 'dry run: nothing read twice');
is(total($by), 46, 'dry run: 46 answered requests');

($rows, $by, $twice) = offboard('offreq000007@example.com', 'org', 'false');
is( $rows,
	"org|remove_org_user|offreq-org-$sc->{run},project|dropped_with_org|offreq-project-7,"
	  . 'team|dropped_with_org|offreq-team-7',
	'real run: the org removed, its project and team with it, each with its name');
is($by->{$teams_route} // 0, 0, "real run of scope 'org': no project's teams read");
is($by->{$invites_route}, 20, "real run: each of the 20 projects' invitations read once");
is($by->{'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}'}, 1, 'real run: one removal');
is($twice, '', 'real run: nothing read twice');
is(total($by), 27, 'real run: 27 answered requests');

($rows, $by, $twice) = offboard('offreq000008@example.com', 'projects', 'true');
like($rows, qr/project_via_team\|stays/, "scope 'projects': the access through the team stays");
is($by->{$teams_route}, 20, "scope 'projects': each project's teams read once");
is($twice, '', "scope 'projects': nothing read twice");

# every organization (org_id NULL): GET /orgs gives the names, none is read again
emu_reset_counters();
is( sql("SELECT name FROM atlas_offboard_user(NULL, 'offreq000009\@example.com', dry_run => true)"
		  . " WHERE kind = 'org'"),
	"offreq-org-$sc->{run}", 'org_id NULL: the org row has the name GET /orgs gave');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}'), 0,
	'org_id NULL: no organization read again for its name');

done_testing();
