# 013_trigger.pl: atlas_offboard_trigger() on an HR table.
#
# The README's trigger: AFTER UPDATE OF terminated_at ON hr.employees ...
# WHEN (OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL)
# EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=...', 'user_id=atlas_user_id').
# A rolled-back HR update sends nothing; nothing is sent while the HR
# transaction is open; a committed one removes the user from the org.  A
# NULL atlas_user_id queues nothing; a malformed one fails the UPDATE with
# 22023.  The 'username=email' form resolves the e-mail when the row runs.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = '65f0a0000000000000000001';
my $org_route = 'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}';

emu_reset();

my $node = atlas_node('trigger',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.retry_base_ms = 100\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

# (exit code, stdout, stderr) of a psql session
sub run_sql
{
	my ($s) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $s, stdout => \$out, stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

sub in_org
{
	my ($u) = @_;
	my $st = emu('GET', "state?user=$u");
	return exists $st->{orgs}{$org} ? 1 : 0;
}

sub queue_rows
{
	my ($u) = @_;
	return sql("SELECT count(*) FROM atlas_removal_queue WHERE user_id = '$u'");
}

ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the atlas_users worker is running');

my @u = @{ emu_users(count => 6, orgId => $org, prefix => 'hr') };
is(scalar(grep { in_org($_) } @u), 6, 'six Atlas users in the org');

sql(<<"EOF");
CREATE SCHEMA hr;
CREATE TABLE hr.employees (
	id integer PRIMARY KEY,
	email text NOT NULL,
	atlas_user_id text,
	terminated_at timestamptz
);
INSERT INTO hr.employees VALUES
	(1, 'one\@example.com', '$u[0]', NULL),
	(2, 'two\@example.com', '$u[1]', NULL),
	(3, 'three\@example.com', '$u[2]', NULL),
	(4, 'four\@example.com', '$u[3]', NULL),
	(5, 'five\@example.com', '$u[4]', NULL),
	(6, 'nobody\@example.com', NULL, NULL),
	(7, 'bad\@example.com', 'not-an-atlas-id', NULL);
CREATE TRIGGER atlas_offboard
	AFTER UPDATE OF terminated_at ON hr.employees
	FOR EACH ROW
	WHEN (OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL)
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'user_id=atlas_user_id');
EOF

# ------------------------------------------------------------------
# 1. a rolled-back HR update sends nothing
# ------------------------------------------------------------------
{
	emu_reset_counters();
	my ($rc, $out, $err) = run_sql(
		"BEGIN;\n"
		  . "UPDATE hr.employees SET terminated_at = now() WHERE id = 1;\n"
		  . "SELECT count(*) FROM atlas_removal_queue WHERE user_id = '$u[0]';\n"
		  . "ROLLBACK;\n");
	is($rc, 0, 'rolled back: the HR transaction ran') or diag $err;
	is($out, '1', 'rolled back: inside the transaction the trigger had queued one row');
	sleep 2;
	is(sql('SELECT atlas_audit_flush()'), 't', 'rolled back: flush returns true');
	is(emu_counter('removal_requests'), 0, 'rolled back: 0 removal requests');
	is(emu_counter('requests_total'), 0, 'rolled back: 0 API requests of any kind');
	is(queue_rows($u[0]), '0', 'rolled back: no queue row');
	is(sql("SELECT count(*) FROM atlas_removal_audit WHERE user_id = '$u[0]'"),
		'0', 'rolled back: no audit row');
	ok(in_org($u[0]), 'rolled back: the user is still in the org');
}

# ------------------------------------------------------------------
# 2. a committed HR update removes the user, and not before commit
# ------------------------------------------------------------------
{
	emu_reset_counters();
	my $s = $node->background_psql('postgres');
	$s->query_safe('BEGIN');
	$s->query_safe('UPDATE hr.employees SET terminated_at = now() WHERE id = 2');
	sleep 1;
	is(emu_counter('removal_requests'), 0,
		'committed: no request while the HR transaction is still open (1 s)');
	$s->query_safe('COMMIT');
	$s->quit;

	ok( $node->poll_query_until('postgres',
			"SELECT status = 'done' FROM atlas_removal_queue WHERE user_id = '$u[1]'"),
		'committed: the queue row ends done');
	is(sql("SELECT operation || '|' || org_id || '|' || attempts || '|' || http_status || '|' || enqueued_by"
			  . " FROM atlas_removal_queue WHERE user_id = '$u[1]'"),
		"remove_org_user|$org|1|204|postgres",
		'committed: one org removal, one attempt, 204, enqueued by the session user');
	ok(!in_org($u[1]), 'committed: the emulator shows the user gone from the org');
	is(sql('SELECT atlas_audit_flush()'), 't', 'committed: flush returns true');
	is(sql("SELECT string_agg(outcome || '|' || operation || '|' || org_id, ',')"
			  . " FROM atlas_removal_audit WHERE user_id = '$u[1]'"),
		"removed|remove_org_user|$org", "committed: one audit row 'removed'");
	my $c = emu_counters();
	is(emu_route_count($c, $org_route, '204'), 1, 'committed: one org removal answer of 204');
	is(emu_route_count($c, $org_route) - emu_route_count($c, $org_route, '401'),
		1, 'committed: one org removal request besides digest challenges');
}

# ------------------------------------------------------------------
# 3. several rows in one UPDATE; the WHEN clause filters re-terminations
# ------------------------------------------------------------------
{
	emu_reset_counters();
	sql('UPDATE hr.employees SET terminated_at = now() WHERE id IN (3, 4, 5)');
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 3 FROM atlas_removal_queue WHERE status = 'done'"
			  . " AND user_id IN ('$u[2]', '$u[3]', '$u[4]')"),
		'three terminations in one UPDATE: three rows done');
	is(scalar(grep { in_org($_) } @u[ 2 .. 4 ]), 0, 'the three users are gone from the org');
	# terminated again: OLD.terminated_at is not NULL, the trigger does not fire
	sql("UPDATE hr.employees SET terminated_at = now() + interval '1 day' WHERE id IN (2, 3)");
	sleep 1;
	is(sql("SELECT count(*) FROM atlas_removal_queue WHERE user_id IN ('$u[1]', '$u[2]')"),
		'2', 'changing terminated_at of a terminated employee queues nothing more');
	# another column changes: UPDATE OF terminated_at does not fire
	sql("UPDATE hr.employees SET email = 'x\@example.com' WHERE id = 4");
	is(queue_rows($u[3]), '1', 'updating another column queues nothing more');
	my $c = emu_counters();
	is(emu_route_count($c, $org_route) - emu_route_count($c, $org_route, '401'),
		3, 'exactly 3 org removal requests for the 3 terminations');
}

# ------------------------------------------------------------------
# 4. NULL atlas_user_id: nothing queued; malformed: the UPDATE fails 22023
# ------------------------------------------------------------------
{
	my $before = sql('SELECT count(*) FROM atlas_removal_queue');
	my ($rc, $out, $err) = run_sql('UPDATE hr.employees SET terminated_at = now() WHERE id = 6');
	is($rc, 0, 'NULL atlas_user_id: the UPDATE succeeds') or diag $err;
	is(sql('SELECT count(*) FROM atlas_removal_queue'), $before,
		'NULL atlas_user_id: no row queued');
	is(sql('SELECT terminated_at IS NOT NULL FROM hr.employees WHERE id = 6'),
		't', 'NULL atlas_user_id: the HR row is terminated');

	($rc, $out, $err) = run_sql('UPDATE hr.employees SET terminated_at = now() WHERE id = 7');
	isnt($rc, 0, 'malformed atlas_user_id: the UPDATE fails');
	like($err, qr/ERROR:\s+22023:/, 'malformed atlas_user_id: SQLSTATE 22023');
	like($err, qr/invalid user_id/, 'malformed atlas_user_id: the error names user_id');
	is(sql('SELECT terminated_at IS NULL FROM hr.employees WHERE id = 7'),
		't', 'malformed atlas_user_id: the HR row is unchanged');
	is(sql('SELECT count(*) FROM atlas_removal_queue'), $before,
		'malformed atlas_user_id: no row queued');
}

# ------------------------------------------------------------------
# 5. the 'username=email' form: resolved when the row runs
# ------------------------------------------------------------------
{
	my $st = emu('GET', "state?user=$u[5]");
	my $email = $st->{username} // $st->{user}{username};
	ok(defined $email && $email =~ /\@/, "the sixth user's username is an e-mail ($email)");
	sql(<<"EOF");
CREATE TABLE hr.contractors (id integer PRIMARY KEY, email text, terminated_at timestamptz);
INSERT INTO hr.contractors VALUES (1, '$email', NULL), (2, 'unknown.person\@example.com', NULL);
CREATE TRIGGER atlas_offboard
	AFTER UPDATE OF terminated_at ON hr.contractors
	FOR EACH ROW
	WHEN (OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL)
	EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'username=email');
EOF
	emu_reset_counters();
	my ($rc, $out, $err) = run_sql(
		"BEGIN;\nUPDATE hr.contractors SET terminated_at = now();\n"
		  . "SELECT count(*) FROM atlas_removal_queue WHERE username IS NOT NULL;\nROLLBACK;\n");
	is($out, '2', 'username: two rows queued inside the transaction');
	sleep 1;
	is(emu_counter('requests_total'), 0, 'username: rolled back, no request at all (no lookup either)');

	sql('UPDATE hr.contractors SET terminated_at = now()');
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 2 FROM atlas_removal_queue WHERE username IS NOT NULL"
			  . " AND status NOT IN ('queued', 'running')"),
		'username: both rows finished');
	is(sql("SELECT status FROM atlas_removal_queue WHERE username = '$email'"),
		'done', 'username: the row of the known e-mail is done');
	is(sql('SELECT atlas_audit_flush()'), 't', 'username: flush returns true');
	is(sql("SELECT string_agg(outcome || '|' || coalesce(user_id, ''), ',') FROM atlas_removal_audit"
			  . " WHERE username = '$email'"),
		"removed|$u[5]", 'username: its audit row names the resolved id, outcome removed');
	ok(!in_org($u[5]), 'username: the user is gone from the org');
	is(sql("SELECT status FROM atlas_removal_queue WHERE username = 'unknown.person\@example.com'"),
		'done', 'username: an e-mail Atlas does not know ends done (nothing to remove)');
	my $c = emu_counters();
	is(emu_route_count($c, $org_route) - emu_route_count($c, $org_route, '401'),
		1, 'username: one org removal request (the unknown e-mail makes none)');
}

$node->stop;
done_testing();
