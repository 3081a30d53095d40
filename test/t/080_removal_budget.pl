# 080_removal_budget.pl: the removal budget on every unattended path.
#
# The mistaken UPDATE of 60 HR rows through the README's trigger: 20 (the
# default budget) are sent, the other 40 are held with 0 requests, one
# WARNING and one NOTIFY on atlas_users_guard; a restart keeps them held;
# atlas_release_held() sends them, audited with approved_by.  A burst split
# over 6 sessions and 6 transactions is held the same way.  A bulk of 30:
# 55000 and 0 requests; with force => true: sent, audited as forced.  A
# single synchronous removal past the budget is not limited; offboarding
# past it: 55000 before any removal, then forced.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = seed_id('org');
my $group = seed_id('project', 0);
my $group2 = seed_id('project', 1);
my $org_route = 'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}';
my $group_route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';

emu_reset();

my $node = atlas_node('budget', guard => 1,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.retry_base_ms = 100\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub statuses
{
	my ($where) = @_;
	return sql("SELECT count(*) FILTER (WHERE status = 'done') || '|'"
		  . " || count(*) FILTER (WHERE status = 'held') || '|' || count(*)"
		  . " FROM atlas_removal_queue WHERE $where");
}

ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker is running');

# ------------------------------------------------------------------
# 1. the mistaken UPDATE of 60 rows through the README's trigger
# ------------------------------------------------------------------
my @u = @{ emu_users(count => 60, orgId => $org, prefix => 'leaver') };
my ($late) = @{ emu_users(count => 1, orgId => $org, prefix => 'late') };
sql(  "CREATE SCHEMA hr;"
	. " CREATE TABLE hr.employees (id serial PRIMARY KEY, atlas_user_id text, terminated_at timestamptz);"
	. " INSERT INTO hr.employees (atlas_user_id) SELECT unnest(" . id_array(\@u) . ");"
	. " CREATE TRIGGER atlas_offboard AFTER UPDATE OF terminated_at ON hr.employees FOR EACH ROW"
	. " WHEN (OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL)"
	. " EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'user_id=atlas_user_id');");

my $listener = psql_session($node);
session_run($listener, 'LISTEN atlas_users_guard');
emu_reset_counters();
my $log_offset = -s $node->logfile;
sql('UPDATE hr.employees SET terminated_at = now()');    # no WHERE: everyone

ok($node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE status = 'done') = 20 AND count(*) FILTER (WHERE status = 'held') = 40"
		  . " FROM atlas_removal_queue WHERE org_id = '$org'"),
	'burst: 20 rows done, 40 held');
sleep 1;
my $c = emu_counters();
is(emu_route_count($c, $org_route, '204'), 20, 'burst: 20 removals sent (the budget)');
is(emu_counter('removal_requests') - emu_route_count($c, $org_route, '401'), 20,
	'burst: 0 requests for the 40 held rows');
is(sql('SELECT held FROM atlas_queue_status'), '40', 'burst: atlas_queue_status counts 40 held');
my $log = slurp_file($node->logfile, $log_offset);
my @warnings = $log =~ /WARNING:  atlas_users held (\d+) queued removals for organization \Q$org\E/g;
is(scalar @warnings, 1, 'burst: one WARNING');
is($warnings[0], 40, 'burst: it names the 40 held rows');
my ($out, $err) = session_run($listener, 'SELECT 1');
my @notes = "$out\n$err" =~ /notification "atlas_users_guard" with payload "(.*?)" received/g;
is(scalar @notes, 1, 'burst: one NOTIFY on atlas_users_guard');
my $p = eval { decode_json($notes[0] // '{}') } // {};
is($p->{org_id}, $org, 'burst: its JSON payload names the organization');
is($p->{held}, 40, 'burst: and the count of held rows');
is($p->{budget}, 20, 'burst: and the budget');

# a restart while rows are held: they stay held, nothing is sent (stop and
# start, not pg_ctl restart, which would start the binary of postmaster.opts
# without the sanitizer run's LD_PRELOAD wrapper)
$node->stop;
$node->start;
ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'restart: the worker is back');
sleep 1;
is(statuses("org_id = '$org'"), '20|40|60', 'restart: the 40 rows are still held');
is(emu_counter('removal_requests') - emu_route_count(emu_counters(), $org_route, '401'), 20,
	'restart: still nothing sent for them');
# the worker counted the window's removals again from the audit
sql("SELECT atlas_enqueue_remove_org_user('$org', '$late')");
ok($node->poll_query_until('postgres',
		"SELECT status = 'held' FROM atlas_removal_queue WHERE user_id = '$late'"),
	'restart: the budget is still spent: a new row is held');
is(emu_route_count(emu_counters(), $org_route, '204'), 20, 'restart: and not sent');

# release: all 60 end done and audited, the released ones with approved_by
my $release_offset = -s $node->logfile;
is(sql("SELECT atlas_release_held('$org')"), '41', 'release: 41 rows released');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 61 FROM atlas_removal_queue WHERE org_id = '$org' AND status = 'done'"),
	'release: all 61 rows end done');
is(emu_route_count(emu_counters(), $org_route, '204'), 61, 'release: 61 removals sent in all');
is(sql('SELECT atlas_audit_flush()'), 't', 'release: the audit is flushed');
is( sql("SELECT count(*) FILTER (WHERE approved_by IS NULL) || '|' || count(*) FILTER (WHERE approved_by = 'postgres')"
		  . " FROM atlas_removal_audit WHERE org_id = '$org' AND outcome = 'removed'"),
	'20|41', 'release: 61 audit rows, the 41 released ones with approved_by');
$log = slurp_file($node->logfile, $release_offset);
is(scalar(() = $log =~ /WARNING:  atlas_users held/g), 0, 'release: no WARNING for released rows');
session_close($listener);

# ------------------------------------------------------------------
# 2. a burst split over 6 sessions and 6 transactions
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 60, orgId => $org, groupIds => [$group], prefix => 'split');
	emu_reset_counters();
	my @s = map { psql_session($node) } 1 .. 6;
	my $ctl = psql_session($node);
	my @sqls = map {
		my @mine = @$ids[ $_ * 10 .. $_ * 10 + 9 ];
		join('', map { "SELECT atlas_enqueue_remove_project_user('$group', '$_');\n" } @mine)
	} 0 .. 5;
	sessions_at_once($ctl, \@s, \@sqls);
	session_close($_) for @s, $ctl;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) FILTER (WHERE status = 'done') = 20 AND count(*) FILTER (WHERE status = 'held') = 40"
			  . " FROM atlas_removal_queue WHERE group_id = '$group'"),
		'split: 20 rows done, 40 held');
	sleep 1;
	is(emu_route_count(emu_counters(), $group_route, '204'), 20, 'split: 20 removals sent');
	is(sql("SELECT atlas_cancel_held('$group')"), '40', 'split: the 40 held rows cancelled');
	is(statuses("group_id = '$group'"), '20|0|60', 'split: none left held');
	is(sql('SELECT atlas_audit_flush()'), 't', 'split: the audit is flushed');
	is(sql("SELECT count(*) FROM atlas_removal_audit WHERE group_id = '$group' AND outcome = 'cancelled'"),
		'40', 'split: each cancelled row has an audit row');
	is(emu_route_count(emu_counters(), $group_route, '204'), 20, 'split: nothing sent for them');
}

# ------------------------------------------------------------------
# 3. a bulk of 30 over the budget; then forced; a single removal after
# ------------------------------------------------------------------
{
	my $ids = emu_users(count => 31, orgId => $org, groupIds => [$group2], prefix => 'bulk');
	my @thirty = @$ids[ 0 .. 29 ];
	emu_reset_counters();
	my ($rc, $o, $e) = psql_as($node, 'postgres',
		"SELECT count(*) FROM atlas_remove_project_users('$group2', " . id_array(\@thirty) . ")");
	is(sqlstate_of($e), '55000', 'bulk: 55000 past the budget');
	like($e, qr/would remove 30 people from project/, 'bulk: the message says how many');
	like($e, qr/HINT:  .*force => true/, 'bulk: the hint names force => true');
	is(emu_counter('requests_total'), 0, 'bulk: 0 requests');
	is( sql("SELECT count(*) FILTER (WHERE removed) FROM atlas_remove_project_users('$group2', "
			  . id_array(\@thirty) . ", force => true)"),
		'30', 'bulk: with force => true all 30 are removed');
	is(emu_route_count(emu_counters(), $group_route, '204'), 30, 'bulk: 30 requests answered 204');
	sql('SELECT atlas_audit_flush()');
	is( sql("SELECT count(*) FILTER (WHERE forced) || '|' || count(*) FROM atlas_removal_audit"
			  . " WHERE group_id = '$group2'"),
		'30|30', 'bulk: audited as forced');
	is(sql("SELECT atlas_remove_project_user('$group2', '$ids->[30]')"), 't',
		'single: a removal typed by a person past the budget is not limited');
	sql('SELECT atlas_audit_flush()');
	is(sql("SELECT forced FROM atlas_removal_audit WHERE user_id = '$ids->[30]'"), 'f',
		'single: and not audited as forced');
}

# ------------------------------------------------------------------
# 4. offboarding one more person from the organization whose budget is spent
# ------------------------------------------------------------------
{
	my ($off) = @{ emu_users(count => 1, orgId => $org, prefix => 'offb') };
	emu_reset_counters();
	my ($rc, $o, $e) = psql_as($node, 'postgres', "SELECT count(*) FROM atlas_offboard_user('$org', '$off')");
	is(sqlstate_of($e), '55000', 'offboarding: 55000 past the budget');
	is(emu_counter('removal_requests'), 0, 'offboarding: 0 removal requests');
	is( sql("SELECT count(*) FROM atlas_offboard_user('$org', '$off', force => true,"
			  . " reason => 'confirmed leaver', ticket => 'SEC-2') WHERE outcome = 'removed'"),
		'1', 'offboarding: with force => true the person is removed');
	sql('SELECT atlas_audit_flush()');
	is( sql("SELECT string_agg(forced || '|' || reason || '|' || ticket, ',') FROM atlas_removal_audit"
			  . " WHERE user_id = '$off'"),
		'true|confirmed leaver|SEC-2', 'offboarding: audited as forced, with the reason and ticket');
}

$node->stop;
done_testing();
