# 010_durable_audit.pl: the audit trail survives the caller.
#
# With atlas_users preloaded, a synchronous call hands its audit record to
# the background worker, which inserts it in its own transaction: the row
# is there after atlas_audit_flush() even when the caller rolls back (a
# failed removal, or one that succeeded in Atlas) or exits right after
# the call.  Without preloading, the synchronous functions still work,
# audit is transactional (one NOTICE per session says so),
# atlas_audit_flush() returns true at once, and atlas_process_queue()
# drains the queue (skipping rows its own transaction enqueued; rows of a
# drain whose transaction rolled back are run again and must end 'done').
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
# a well-formed id that no user has: the emulator answers 404 USER_NOT_FOUND
my $nobody = 'ffffffffffffffffffffff01';

emu_reset();

# Run SQL in one psql session; returns (exit code, stdout, stderr).
sub run_sql
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		'postgres', $sql,
		stdout => \$out,
		stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

# The audit rows of one user, as "outcome|http_status|error_code" lines.
sub audit_rows
{
	my ($node, $user) = @_;
	return $node->safe_psql('postgres',
		"SELECT outcome || '|' || coalesce(http_status::text, '') || '|' || coalesce(error_code, '')"
		  . " FROM atlas_removal_audit WHERE user_id = '$user' ORDER BY id");
}

# ------------------------------------------------------------------
# preloaded: the audit is durable
# ------------------------------------------------------------------
my $node = atlas_node('durable',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");

ok( $node->poll_query_until('postgres',
		'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'preloaded: the atlas_users worker is running');

# 1. a failed removal (404) in a transaction that rolls back
{
	my ($rc, $out, $err) = run_sql($node,
		"BEGIN;\nSELECT atlas_remove_project_user('$group', '$nobody');\nROLLBACK;\n");
	like($err, qr/ERROR/, 'rolled back 404: the removal raised an error');
	unlike($err, qr/audit rows are written in the calling transaction/,
		'rolled back 404: no NOTICE about transactional audit when preloaded');
	is($node->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'rolled back 404: atlas_audit_flush() returns true');
	is(audit_rows($node, $nobody), 'failed|404|USER_NOT_FOUND',
		'rolled back 404: the failed row with its errorCode is in the audit table');
}

# 2. a successful removal in a transaction that rolls back
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'rb') };
	my ($rc, $out, $err) = run_sql($node,
		"BEGIN;\nSELECT atlas_remove_project_user('$group', '$u');\nROLLBACK;\n");
	is($rc, 0, 'rolled back success: the session ran without error') or diag $err;
	is($out, 't', 'rolled back success: the removal returned true');
	is($node->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'rolled back success: atlas_audit_flush() returns true');
	is(audit_rows($node, $u), 'removed|204|',
		'rolled back success: the removed row is in the audit table (exactly one)');
	my $st = emu('GET', "state?user=$u");
	ok(!exists $st->{projects}{$group},
		'rolled back success: Atlas did remove the user, whatever the transaction did');
}

# 3. a removal whose transaction fails later, on an unrelated error
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'err') };
	my ($rc, $out, $err) = run_sql($node,
		"BEGIN;\nSELECT atlas_remove_project_user('$group', '$u');\nSELECT 1/0;\nCOMMIT;\n");
	like($err, qr/division by zero/, 'later error: the transaction failed after the removal');
	is($node->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'later error: atlas_audit_flush() returns true');
	is(audit_rows($node, $u), 'removed|204|',
		'later error: the removed row is in the audit table');
}

# 4. a backend that exits right after its call (psql -c, then disconnect)
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'exit') };
	my $nobody2 = 'ffffffffffffffffffffff02';
	# two separate psql runs, each disconnecting right after its only statement
	my ($rc1, $out1, $err1) = run_sql($node,
		"SELECT atlas_remove_project_user('$group', '$u')");
	is($out1, 't', 'exiting backend: the removal returned true') or diag $err1;
	my ($rc2, $out2, $err2) = run_sql($node,
		"SELECT atlas_remove_project_user('$group', '$nobody2')");
	like($err2, qr/ERROR/, 'exiting backend: the 404 raised an error');
	# flush from a third session
	is($node->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'exiting backend: atlas_audit_flush() from another session returns true');
	is(audit_rows($node, $u), 'removed|204|',
		'exiting backend: the removed row of the exited session is there');
	is(audit_rows($node, $nobody2), 'failed|404|USER_NOT_FOUND',
		'exiting backend: the failed row of the exited session is there');
}

# 5. a backend killed with SIGTERM right after its call, before commit
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'term') };
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('BEGIN');
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	is($s->query_safe("SELECT atlas_remove_project_user('$group', '$u')"),
		't', 'terminated backend: the removal returned true inside an open transaction');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$s->quit;
	is($node->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'terminated backend: atlas_audit_flush() returns true');
	is(audit_rows($node, $u), 'removed|204|',
		'terminated backend: the removed row is there though its transaction never committed');
}

is($node->safe_psql('postgres', 'SELECT audit_records_logged FROM atlas_worker_status()'),
	'0', 'preloaded: no audit record had to go to the log instead of the table');

$node->stop;

# ------------------------------------------------------------------
# not preloaded: transactional audit, one NOTICE per session,
# atlas_process_queue() drains
# ------------------------------------------------------------------
my $plain = atlas_node('plain');

is($plain->safe_psql('postgres', 'SELECT worker_pid IS NULL FROM atlas_queue_status'),
	't', 'not preloaded: no worker');

{
	my @u = @{ emu_users(count => 3, orgId => $org, groupIds => [$group], prefix => 'plain') };
	emu_reset_counters();
	my ($rc, $out, $err) = run_sql($plain,
		"SELECT atlas_remove_project_user('$group', '$u[0]');\n"
		  . "SELECT atlas_remove_project_user('$group', '$u[1]');\n");
	is($rc, 0, 'not preloaded: two synchronous removals ran') or diag $err;
	is($out, "t\nt", 'not preloaded: both returned true');
	my @notices = ($err =~ /NOTICE:.*audit rows are written in the calling transaction/g);
	is(scalar @notices, 1, 'not preloaded: one NOTICE in a session of two calls');
	is(emu_route_count(emu_counters(), $route, '204'), 2,
		'not preloaded: two removal answers of 204');
	is(audit_rows($plain, $u[0]) . ';' . audit_rows($plain, $u[1]),
		'removed|204|;removed|204|', 'not preloaded: both audit rows committed with the session');

	# a second session says it again, once
	($rc, $out, $err) = run_sql($plain,
		"SELECT atlas_remove_project_user('$group', '$u[2]');\n"
		  . "SELECT atlas_remove_project_user('$group', '$nobody', true);\n");
	@notices = ($err =~ /NOTICE:.*audit rows are written in the calling transaction/g);
	is(scalar @notices, 1, 'not preloaded: one NOTICE in the next session too');

	is($plain->safe_psql('postgres', 'SELECT atlas_audit_flush()'),
		't', 'not preloaded: atlas_audit_flush() returns true');
	is($plain->safe_psql('postgres', 'SELECT atlas_audit_flush(0)'),
		't', 'not preloaded: atlas_audit_flush(0) returns true');
}

# audit is transactional here: a rolled-back failure leaves only its LOG line
{
	my $nobody3 = 'ffffffffffffffffffffff03';
	my $log_offset = -s $plain->logfile;
	my ($rc, $out, $err) = run_sql($plain,
		"BEGIN;\nSELECT atlas_remove_project_user('$group', '$nobody3');\nROLLBACK;\n");
	like($err, qr/ERROR/, 'not preloaded: the 404 raised an error');
	is(audit_rows($plain, $nobody3), '',
		'not preloaded: the rolled-back failure has no audit row (transactional, as the NOTICE says)');
	ok( $plain->wait_for_log(qr/atlas_users audit: failed call .*user_id=$nobody3/, $log_offset),
		'not preloaded: the failure is in the server log, whole');
}

# the queue, drained by atlas_process_queue()
{
	my $n = 5;
	my @u = @{ emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'pq') };
	emu_reset_counters();
	$plain->safe_psql('postgres',
		join('', map { "SELECT atlas_enqueue_remove_project_user('$group', '$_');\n" } @u));
	sleep 1;
	is($plain->safe_psql('postgres', 'SELECT queued FROM atlas_queue_status'),
		$n, "not preloaded: $n rows stay queued (no worker)");
	is(emu_counter('removal_requests'), 0, 'not preloaded: no request before atlas_process_queue()');

	is($plain->safe_psql('postgres', 'SELECT atlas_process_queue(3)'),
		'3', 'not preloaded: atlas_process_queue(3) processed 3');
	is($plain->safe_psql('postgres', 'SELECT atlas_process_queue()'),
		'2', 'not preloaded: atlas_process_queue() processed the other 2');
	is($plain->safe_psql('postgres', 'SELECT atlas_process_queue()'),
		'0', 'not preloaded: the queue is empty');
	is($plain->safe_psql('postgres',
			'SELECT queued, running, done, failed FROM atlas_queue_status'),
		"0|0|$n|0", "not preloaded: all $n rows done");
	my $c = emu_counters();
	note sprintf('not preloaded, %d queued removals: removal_requests=%d route_204=%d route_401=%d',
		$n, $c->{removal_requests}, emu_route_count($c, $route, '204'),
		emu_route_count($c, $route, '401'));
	is(emu_route_count($c, $route, '204'), $n, "not preloaded: $n removal answers of 204");
	is(emu_route_count($c, $route) - emu_route_count($c, $route, '401'),
		$n, "not preloaded: exactly $n removal requests besides digest challenges");
	is($plain->safe_psql('postgres',
			"SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'removed' AND user_id IN ("
			  . join(',', map { "'$_'" } @u) . ')'),
		$n, "not preloaded: $n audit rows 'removed'");
}

# atlas_process_queue() skips what its own transaction enqueued
{
	my ($u) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => 'own') };
	emu_reset_counters();
	is($plain->safe_psql('postgres',
			"BEGIN;\n"
			  . "SELECT atlas_enqueue_remove_project_user('$group', '$u') AS id \\gset\n"
			  . "SELECT atlas_process_queue();\n"
			  . "ROLLBACK;\n"),
		'0', 'not preloaded: atlas_process_queue() does not run a removal its own transaction enqueued');
	is(emu_counter('removal_requests'), 0, 'not preloaded: and makes no request');
}

# A drain whose transaction rolls back after Atlas removed the users: its
# rows are queued again (the claim rolled back), and running them again
# must end 'done': the users are gone, as asked.  (Atlas answers the repeat
# with 404 USER_NOT_FOUND.)
{
	my $n = 3;
	my @u = @{ emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => 'rbdrain') };
	my $list = join(',', map { "'$_'" } @u);
	$plain->safe_psql('postgres',
		join('', map { "SELECT atlas_enqueue_remove_project_user('$group', '$_');\n" } @u));
	emu_reset_counters();
	is($plain->safe_psql('postgres', "BEGIN;\nSELECT atlas_process_queue();\nROLLBACK;\n"),
		$n, "rolled-back drain: atlas_process_queue() ran $n removals, then the transaction rolled back");
	is(emu_route_count(emu_counters(), $route, '204'), $n,
		"rolled-back drain: Atlas removed the $n users");
	is($plain->safe_psql('postgres',
			"SELECT count(*) FROM atlas_removal_queue WHERE status = 'queued' AND user_id IN ($list)"),
		$n, "rolled-back drain: the $n rows are queued again");
	is($plain->safe_psql('postgres', 'SELECT atlas_process_queue()'),
		$n, "rolled-back drain: the next atlas_process_queue() runs them again");
	is($plain->safe_psql('postgres',
			"SELECT string_agg(status, ',' ORDER BY id) FROM atlas_removal_queue WHERE user_id IN ($list)"),
		join(',', ('done') x $n),
		"rolled-back drain: the rows end 'done' (the users are gone), not 'failed' on the repeat's 404");
}

$plain->stop;
done_testing();
