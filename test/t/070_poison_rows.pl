# 070_poison_rows.pl: a queued row runs as its enqueuer, entirely, and no
# row stops the worker or holds others back (issue 17), counted at the
# emulator and in the server log.  An install with credentials only in
# foreign servers (no atlas_users.* credentials at all):
#
# - a row by username enqueued with atlas_users.server (the reproduction
#   that made the worker exit about once a second): its lookup and its
#   removal go through that server, the plain row behind it is done;
# - the HR trigger by username when only the HR role has a mapping, and
#   another role made a second server for the organization before it ran;
# - poison rows: USAGE revoked, the mapping dropped, the server dropped,
#   each ends 'failed' with a detail that says why and how to fix it, and
#   the plain row behind each is done within seconds;
# - a server renamed and a look-alike created under its old name: the row
#   runs on the renamed server (by OID), the look-alike gets nothing;
# - another role's identical enqueue through another server does not make
#   the victim's enqueue return that row's id;
# - atlas_process_queue() drains in this install;
# - a host that hangs holds at most its share of the worker's slots while
#   another server's row is done.
# And 0 worker exits in the server log for all of it.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = seed_id('org');
my ($p1, $p2, $p3) = map { seed_id('project', $_) } 0 .. 2;
my $del_route = 'DELETE /api/atlas/v2/groups/{groupId}/users/{userId}';
my $list_route = 'GET /api/atlas/v2/groups/{groupId}/users';
my $url = $ENV{ATLAS_EMULATOR_HTTPS_URL};
my $ca = $ENV{ATLAS_TEST_CA};
my $secrets = $ENV{ATLAS_SECRETS};
my $pk = do { open my $f, '<', "$secrets/public_key" or die; local $/; my $s = <$f>; $s =~ s/\s+$//; $s };

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });

# no atlas_users.* credentials or URL: servers only
my $node = PostgreSQL::Test::Cluster->new('poison');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.max_concurrency = 4\n"
	  . "atlas_users.max_attempts = 2\n"
	  . "atlas_users.retry_base_ms = 100\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql('CREATE EXTENSION atlas_users');
ok($node->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker is running');

# A digest server at the emulator with a mapping for $for (PUBLIC by default).
sub server
{
	my ($name, %o) = @_;
	my $opts = "base_url '" . ($o{url} // $url) . "', ca_file '$ca'";
	$opts .= ", org_id '$o{org}'" if $o{org};
	$opts .= ", timeout_ms '$o{timeout_ms}'" if $o{timeout_ms};
	my $for = $o{for} // 'PUBLIC';
	sql(qq{CREATE SERVER $name FOREIGN DATA WRAPPER atlas_users OPTIONS ($opts);
		CREATE USER MAPPING FOR $for SERVER $name
			OPTIONS (public_key '$pk', private_key_file '$secrets/private_key');
		GRANT USAGE ON FOREIGN SERVER $name TO } . ($o{usage} // 'PUBLIC'));
}

# Requests to a route, of any status but the digest challenge (401).
sub sent
{
	my ($c, $route) = @_;
	return emu_route_count($c, $route) - emu_route_count($c, $route, '401');
}

# Worker exits in the server log so far.
sub worker_exits
{
	my @m = slurp_file($node->logfile) =~ /atlas_users worker.{0,40} exited with exit code/g;
	return scalar @m;
}

# Wait until queue row $id is no longer queued or running: (status, seconds).
sub wait_row
{
	my ($id, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 < ($timeout // 30))
	{
		my $st = sql("SELECT status FROM atlas_removal_queue WHERE id = $id");
		return ($st, time - $t0) if $st ne 'queued' && $st ne 'running';
		sleep 0.05;
	}
	return (sql("SELECT status FROM atlas_removal_queue WHERE id = $id"), time - $t0);
}

# A new user in the project(s), and its username.
sub new_user
{
	my (@groups) = @_;
	my $id = emu_users(count => 1, orgId => $org, groupIds => [@groups], prefix => 'poison')->[0];
	return ($id, emu('GET', "state?user=$id")->{username});
}

server('acme');
sql(q{CREATE ROLE victim; CREATE ROLE hostile; CREATE ROLE hr;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO victim, hostile, hr;
	CREATE SCHEMA hrs; GRANT USAGE ON SCHEMA hrs TO hr;
	CREATE TABLE hrs.employees (email text, left_at timestamptz);
	GRANT SELECT, UPDATE ON hrs.employees TO hr;});

# ------------------------------------------------------------------
# The reproduction: by username through atlas_users.server, then by id.
# ------------------------------------------------------------------
{
	my ($jid, $jname) = new_user($p1);
	my ($uid) = new_user($p1);
	emu_reset_counters();
	my ($by_name, $by_id) = split /\|/, sql(qq{SET atlas_users.server = 'acme';
		SELECT atlas_enqueue_remove_project_user_by_username('$p1', '$jname'),
			atlas_enqueue_remove_project_user('$p1', '$uid')});
	my ($s1, $t1) = wait_row($by_name, 20);
	my ($s2, $t2) = wait_row($by_id, 20);
	is("$s1 $s2", 'done done', 'the row by username and the plain row behind it are done');
	cmp_ok($t2, '<', 5, 'the plain row within seconds');
	note(sprintf('reproduction: the plain row done in %.2f s', $t2));
	my $c = emu_counters();
	is(sent($c, $list_route), 1, 'one lookup, through the server');
	is(emu_route_count($c, $del_route, '204'), 2, 'two removals, through the server');
	is(sql(qq{SELECT string_agg(DISTINCT server || ' ' || (server_oid = (SELECT oid FROM pg_foreign_server WHERE srvname = 'acme'))::text, ',')
		FROM atlas_removal_audit WHERE queue_id IN ($by_name, $by_id)}),
		'acme true', 'the audit names the server and its OID');
	is(worker_exits(), 0, 'no worker exit');
}

# ------------------------------------------------------------------
# The HR trigger by username, when only the HR role has a mapping.
# ------------------------------------------------------------------
{
	server('hrsrv', org => $org, for => 'hr', usage => 'hr');
	my ($id, $name) = new_user($p1);
	sql(qq{INSERT INTO hrs.employees VALUES ('$name', NULL);
		CREATE TRIGGER off AFTER UPDATE OF left_at ON hrs.employees FOR EACH ROW
		WHEN (OLD.left_at IS NULL AND NEW.left_at IS NOT NULL)
		EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'username=email');});
	emu_reset_counters();
	# and before it runs, another role makes a second server for that organization
	sql(qq{BEGIN;
		SET LOCAL ROLE hr; UPDATE hrs.employees SET left_at = now() WHERE email = '$name';
		RESET ROLE; GRANT USAGE ON FOREIGN DATA WRAPPER atlas_users TO hostile;
		SET LOCAL ROLE hostile;
		CREATE SERVER evil FOREIGN DATA WRAPPER atlas_users
			OPTIONS (base_url 'http://127.0.0.1:9', org_id '$org');
		COMMIT;});
	my $q = sql(qq{SELECT id FROM atlas_removal_queue WHERE username = '$name'});
	my ($st) = wait_row($q, 20);
	is($st, 'done', 'the HR row is done with the HR role\'s mapping');
	is(emu_route_count(emu_counters(), 'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}', '204'), 1,
		'one org removal');
	ok(!exists emu('GET', "state?user=$id")->{orgs}{$org}, 'the person is gone from the organization');
	is(sql(qq{SELECT enqueued_as || ' ' || server FROM atlas_removal_queue WHERE id = $q}), 'hr hrsrv',
		'the row names its role and server');
	is(worker_exits(), 0, 'no worker exit');
	sql('DROP SERVER evil');
}

# ------------------------------------------------------------------
# Poison rows: each fails with a detail that says how to fix it, and the
# plain row behind it is done.
# ------------------------------------------------------------------
my %poison = (
	'USAGE revoked' => [ 'REVOKE USAGE ON FOREIGN SERVER p_usage FROM victim',
		qr/GRANT USAGE ON FOREIGN SERVER p_usage TO victim/ ],
	'mapping dropped' => [ 'DROP USER MAPPING FOR victim SERVER p_map',
		qr/has no user mapping on server "p_map".*CREATE USER MAPPING FOR victim SERVER p_map/ ],
	'server dropped' => [ 'DROP SERVER p_drop CASCADE',
		qr/no longer exists.*Enqueue the removal again/ ]);
server('p_usage', usage => 'victim');
server('p_map', for => 'victim', usage => 'victim');
server('p_drop', usage => 'victim');
for my $case (sort keys %poison)
{
	my ($break, $why) = @{ $poison{$case} };
	my ($srv) = $break =~ /(p_\w+)/;
	my ($bad) = new_user($p2);
	my ($good) = new_user($p2);
	my $exits = worker_exits();
	my ($bad_id, $good_id) = split /\n/, sql(qq{BEGIN;
		SET LOCAL ROLE victim; SET LOCAL atlas_users.server = '$srv';
		SELECT atlas_enqueue_remove_project_user('$p2', '$bad');
		RESET ROLE; SET LOCAL atlas_users.server = 'acme';
		$break;
		SELECT atlas_enqueue_remove_project_user('$p2', '$good');
		COMMIT;});
	my ($gs, $gt) = wait_row($good_id, 20);
	is($gs, 'done', "$case: the plain row behind it is done");
	cmp_ok($gt, '<', 5, "$case: within seconds");
	note(sprintf('%s: the plain row done in %.2f s', $case, $gt));
	my ($bs) = wait_row($bad_id, 20);
	is($bs, 'failed', "$case: the poison row failed");
	like(sql("SELECT detail FROM atlas_removal_queue WHERE id = $bad_id"), $why,
		"$case: its detail says why and how to fix it");
	like(sql("SELECT string_agg(outcome || ' ' || detail, ',') FROM atlas_removal_audit WHERE queue_id = $bad_id"),
		qr/^failed .*$why/, "$case: so does its audit row");
	is(worker_exits(), $exits, "$case: no worker exit");
}
is(sql(q{SELECT attempts FROM atlas_removal_queue WHERE detail LIKE '%no longer exists%'}), 1,
	'a row whose server is gone is not retried');

# ------------------------------------------------------------------
# Renamed server, look-alike under the old name: the row runs by OID.
# ------------------------------------------------------------------
{
	server('shared', usage => 'victim');
	my $oid = sql(q{SELECT oid FROM pg_foreign_server WHERE srvname = 'shared'});
	my ($u) = new_user($p3);
	emu_reset_counters();
	my $id = sql(qq{BEGIN;
		SET LOCAL ROLE victim; SET LOCAL atlas_users.server = 'shared';
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		RESET ROLE;
		ALTER SERVER shared RENAME TO shared_old;
		CREATE SERVER shared FOREIGN DATA WRAPPER atlas_users
			OPTIONS (base_url 'http://127.0.0.1:9', ca_file '$ca');
		CREATE USER MAPPING FOR PUBLIC SERVER shared OPTIONS (public_key 'x', private_key 'y');
		GRANT USAGE ON FOREIGN SERVER shared TO PUBLIC;
		COMMIT;});
	my ($st) = wait_row($id, 20);
	is($st, 'done', 'renamed server: the row is done');
	is(emu_route_count(emu_counters(), $del_route, '204'), 1, 'renamed server: removed at the emulator');
	is(sql(qq{SELECT server || ' ' || server_oid FROM atlas_removal_audit WHERE queue_id = $id}),
		"shared_old $oid", 'renamed server: the audit names the renamed server and its OID');
	is(sql(qq{SELECT server || ' ' || server_oid FROM atlas_removal_queue WHERE id = $id}),
		"shared $oid", 'the queue row keeps the name it was enqueued with and the OID');
}

# ------------------------------------------------------------------
# Duplicates are the same operation, ids, server and role.
# ------------------------------------------------------------------
{
	server('hostile_srv', url => 'http://127.0.0.1:9', usage => 'hostile');
	my ($u) = new_user($p3);
	emu_reset_counters();
	my ($h, $v, $v2, $h2) = split /\n/, sql(qq{BEGIN;
		SET LOCAL ROLE hostile; SET LOCAL atlas_users.server = 'hostile_srv';
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		RESET ROLE; SET LOCAL ROLE victim; SET LOCAL atlas_users.server = 'acme';
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		RESET ROLE; SET LOCAL ROLE hostile; SET LOCAL atlas_users.server = 'acme';
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		COMMIT;});
	isnt($v, $h, 'the victim\'s enqueue gets its own row, not the hostile one\'s');
	is($v2, $v, 'the victim\'s identical enqueue returns its own row');
	ok($h2 ne $h && $h2 ne $v, 'the same removal by another role through the victim\'s server is a row of its own');
	my ($st) = wait_row($v, 20);
	is($st, 'done', 'the victim\'s row is done');
	cmp_ok(emu_route_count(emu_counters(), $del_route, '204'), '>=', 1, 'it reached the real Atlas');
	sql("SELECT atlas_cancel_removal($h)");
}

# ------------------------------------------------------------------
# atlas_process_queue() in this install (no atlas_users.* credentials).
# ------------------------------------------------------------------
{
	my ($u) = new_user($p3);
	# enqueued held back from the worker, then run by this session
	my $id = sql(qq{BEGIN; SET LOCAL atlas_users.server = 'acme';
		SELECT atlas_enqueue_remove_project_user('$p3', '$u');
		UPDATE atlas_removal_queue SET next_attempt_at = now() + interval '1 hour'
			WHERE username IS NULL AND user_id = '$u';
		COMMIT;});
	emu_reset_counters();
	is(sql(qq{BEGIN;
		UPDATE atlas_removal_queue SET next_attempt_at = now() - interval '1 second' WHERE id = $id;
		SELECT atlas_process_queue(10);
		COMMIT;}), 1, 'atlas_process_queue() ran the row');
	is(emu_route_count(emu_counters(), $del_route, '204'), 1, 'through the server');
	is(sql("SELECT status FROM atlas_removal_queue WHERE id = $id"), 'done', 'the row is done');
	is(sql('SELECT atlas_process_queue(10)'), 0, 'atlas_process_queue() with nothing due');
}

# ------------------------------------------------------------------
# A host that hangs holds at most its share of the worker (4 slots: 3).
# ------------------------------------------------------------------
{
	server('slow', timeout_ms => 6000);
	emu_fault({ kind => 'hang', count => -1, match => "/groups/$p2/users/", seconds => 20 });
	my @slow = map { (new_user($p2))[0] } 1 .. 6;
	my ($fast) = new_user($p3);
	sql("SET atlas_users.server = 'slow'; SELECT atlas_enqueue_remove_project_user('$p2', u) FROM unnest("
		  . id_array(\@slow) . ') u');
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 3 FROM atlas_removal_queue WHERE server = 'slow' AND status = 'running'}),
		'the hung server\'s rows take 3 slots');
	my $id = sql(qq{SET atlas_users.server = 'acme';
		SELECT atlas_enqueue_remove_project_user('$p3', '$fast')});
	my $most = 0;
	my $t0 = time;
	my $st;
	while (time - $t0 < 5)
	{
		my ($running, $s) = split /\|/, sql(qq{SELECT
			(SELECT count(*) FROM atlas_removal_queue WHERE server = 'slow' AND status = 'running'),
			(SELECT status FROM atlas_removal_queue WHERE id = $id)});
		$most = $running if $running > $most;
		$st = $s;
		last if $st eq 'done';
		sleep 0.05;
	}
	is($st, 'done', 'another server\'s row is done while the host hangs');
	cmp_ok(time - $t0, '<', 5, 'within seconds');
	note(sprintf('hung host: the other server\'s row done in %.2f s, at most %d of 4 slots hung', time - $t0, $most));
	is($most, 3, 'the hung server never held more than its share');
	emu('DELETE', 'faults');
	sql(q{SELECT atlas_cancel_removal(id) FROM atlas_removal_queue WHERE server = 'slow' AND status = 'queued'});
}

is(worker_exits(), 0, '0 worker exits in the server log');
$node->stop;
done_testing();
