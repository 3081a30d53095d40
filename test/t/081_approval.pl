# 081_approval.pl: two-person approval (atlas_users.require_approval).
#
# A row enqueued by hr_bot with a reason and a ticket waits with status
# 'awaiting_approval' and 0 requests; hr_bot approving it gets 42501 (and
# so does a role that is a member of hr_bot), still 0 requests; sec_lead
# approves it, it is sent, and the audit row names hr_bot, sec_lead, the
# reason and the ticket.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = seed_id('org');
my $org_route = 'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}';

emu_reset();

my $node = atlas_node('approval', guard => 1,
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.require_approval = on\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker is running');

my ($u) = @{ emu_users(count => 1, orgId => $org, prefix => 'approve') };
sql(q{
	CREATE ROLE hr_bot LOGIN;
	CREATE ROLE sec_lead LOGIN;
	CREATE ROLE hr_ops LOGIN IN ROLE hr_bot;
	GRANT EXECUTE ON FUNCTION atlas_enqueue_remove_org_user(text, text, text, text) TO hr_bot;
	GRANT EXECUTE ON FUNCTION atlas_approve_removal(bigint) TO hr_bot, sec_lead, hr_ops;
});

emu_reset_counters();
my ($rc, $id, $err) = psql_as($node, 'hr_bot',
	"SELECT atlas_enqueue_remove_org_user('$org', '$u', reason => 'terminated in Workday', ticket => 'HR-1234')");
is($rc, 0, 'hr_bot enqueues a removal') or diag $err;
is(sql("SELECT status || '|' || requested_by || '|' || reason || '|' || ticket FROM atlas_removal_queue WHERE id = $id"),
	'awaiting_approval|hr_bot|terminated in Workday|HR-1234',
	'it waits for approval, with who requested it, the reason and the ticket');
is(sql('SELECT awaiting_approval FROM atlas_queue_status'), '1', 'atlas_queue_status counts it');
sleep 1;
is(emu_counter('requests_total'), 0, 'nothing is sent while it waits (1 s)');

for my $r ('hr_bot', 'hr_ops')
{
	my ($rc2, $out, $e) = psql_as($node, $r, "SELECT atlas_approve_removal($id)");
	is(sqlstate_of($e), '42501', "$r cannot approve it: 42501");
}
like((psql_as($node, 'hr_bot', "SELECT atlas_approve_removal($id)"))[2],
	qr/requested by "hr_bot"; a second person must approve it/, 'the error says who requested it');
is(sql("SELECT status FROM atlas_removal_queue WHERE id = $id"), 'awaiting_approval',
	'the row still waits');
sleep 1;
is(emu_counter('requests_total'), 0, 'still 0 requests');

($rc, my $ok, $err) = psql_as($node, 'sec_lead', "SELECT atlas_approve_removal($id)");
is($ok, 't', 'sec_lead approves it') or diag $err;
ok($node->poll_query_until('postgres', "SELECT status = 'done' FROM atlas_removal_queue WHERE id = $id"),
	'the approved row is sent and ends done');
is(emu_route_count(emu_counters(), $org_route, '204'), 1, 'one removal sent');
is(sql('SELECT atlas_audit_flush()'), 't', 'the audit is flushed');
is( sql("SELECT requested_by || '|' || approved_by || '|' || reason || '|' || ticket || '|' || outcome"
		  . " FROM atlas_removal_audit WHERE queue_id = $id"),
	'hr_bot|sec_lead|terminated in Workday|HR-1234|removed',
	'the audit row names hr_bot, sec_lead, the reason and the ticket');
($rc, $ok, $err) = psql_as($node, 'sec_lead', "SELECT atlas_approve_removal($id)");
is($ok, 'f', 'approving it again: false');
like($err, qr/its status is done/, 'with a NOTICE saying why');
($rc, $ok, $err) = psql_as($node, 'sec_lead', "SELECT atlas_approve_removal(999999)");
is(sqlstate_of($err), '42704', 'an unknown queue id: 42704');
is(emu_route_count(emu_counters(), $org_route, '204'), 1, 'still one removal in all');

# the same removal enqueued twice while approval is required: approving
# both in one transaction queues the first and cancels the second
my ($u2) = @{ emu_users(count => 1, orgId => $org, prefix => 'twice') };
my @ids = map { (psql_as($node, 'hr_bot', "SELECT atlas_enqueue_remove_org_user('$org', '$u2')"))[1] } 1 .. 2;
isnt($ids[0], $ids[1], 'twice: two rows await approval');
($rc, $ok, $err) = psql_as($node, 'sec_lead',
	"BEGIN; SELECT atlas_approve_removal($ids[0]); SELECT atlas_approve_removal($ids[1]); COMMIT;");
is($ok, "t\nf", 'twice: the first is approved, the second is not') or diag $err;
like($err, qr/cancelled instead: an identical removal is queued already/, 'twice: with a NOTICE saying why');
ok($node->poll_query_until('postgres',
		"SELECT string_agg(status, ',' ORDER BY id) = 'done,cancelled' FROM atlas_removal_queue WHERE user_id = '$u2'"),
	'twice: the first ends done, the second cancelled');
is(emu_route_count(emu_counters(), $org_route, '204'), 2, 'twice: one removal sent for both');

$node->stop;
done_testing();
