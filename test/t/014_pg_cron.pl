# 014_pg_cron.pl: the README's pg_cron recipes, with the real pg_cron
# (Debian postgresql-15-cron), in two nodes run side by side:
#
#   cron_only: shared_preload_libraries = 'pg_cron'.  atlas_users is
#     loaded on demand, there is no worker, so the drain job is what runs
#     the removals.
#   cron_atlas: shared_preload_libraries = 'pg_cron,atlas_users' (pg_cron
#     preloaded beside atlas_users, worker running).
#
# In each: job A drains the queue every minute (SELECT
# atlas_process_queue(500)); job B queues a batch of removals every minute
# from hr.leavers, one of them a user Atlas refuses (403), which must
# not stop the rest.  pg_cron has minute granularity, so this waits up to
# about 2.5 minutes.  Checks cron.job_run_details, the queue and the audit.
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
my $n = 20;

emu_reset();

my $cron_conf = "cron.database_name = 'postgres'\n"
  . "cron.use_background_workers = on\n"
  . "max_worker_processes = 20\n"
  . "cron.log_run = on\n";

my %nodes = (
	cron_only => atlas_node('cron_only',
		extra_conf => "shared_preload_libraries = 'pg_cron'\n" . $cron_conf),
	cron_atlas => atlas_node('cron_atlas',
		extra_conf => "shared_preload_libraries = 'pg_cron,atlas_users'\n" . $cron_conf),
);
my @names = sort keys %nodes;

is($nodes{cron_only}->safe_psql('postgres', 'SELECT worker_pid IS NULL FROM atlas_queue_status'),
	't', 'cron_only: no atlas_users worker');
ok( $nodes{cron_atlas}->poll_query_until('postgres',
		'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'cron_atlas: the atlas_users worker runs beside pg_cron');

my (%users, %bad);
for my $name (@names)
{
	my $node = $nodes{$name};
	$users{$name} = emu_users(count => $n, orgId => $org, groupIds => [$group], prefix => $name);
	# a user Atlas refuses to remove (403, every time): a failure that must not stop the rest
	($bad{$name}) = @{ emu_users(count => 1, orgId => $org, groupIds => [$group], prefix => "${name}_bad") };
	emu_fault({ kind => 'status', status => 403, count => -1, match => $bad{$name} });
	my $values = join(",\n", map { "('$group', '$_')" } @{ $users{$name} }, $bad{$name});
	$node->safe_psql('postgres', <<"EOF");
CREATE EXTENSION pg_cron;
CREATE SCHEMA hr;
CREATE TABLE hr.leavers (group_id text NOT NULL, user_id text NOT NULL, queued_at timestamptz);
INSERT INTO hr.leavers (group_id, user_id) VALUES
$values;
EOF
}
emu_reset_counters();

# schedule both jobs in both nodes at once
for my $name (@names)
{
	$nodes{$name}->safe_psql('postgres', <<'EOF');
SELECT cron.schedule('atlas-drain', '* * * * *', 'SELECT atlas_process_queue(500)');
SELECT cron.schedule('atlas-leavers', '* * * * *',
  $cmd$WITH l AS (UPDATE hr.leavers SET queued_at = now() WHERE queued_at IS NULL
                  RETURNING group_id, user_id)
       SELECT count(atlas_enqueue_remove_project_user(group_id, user_id)) FROM l$cmd$);
EOF
}
note 'scheduled the jobs at ' . scalar(gmtime) . ' UTC; waiting for pg_cron (minute granularity)';

my $all_done = "SELECT (SELECT count(*) FROM hr.leavers WHERE queued_at IS NULL) = 0"
  . " AND (SELECT count(*) FROM atlas_removal_queue) = " . ($n + 1)
  . " AND (SELECT count(*) FROM atlas_removal_queue WHERE status IN ('queued', 'running')) = 0";

for my $name (@names)
{
	my $node = $nodes{$name};
	ok($node->poll_query_until('postgres', $all_done),
		"$name: job B queued every leaver and the queue drained");
}
note 'drained at ' . scalar(gmtime) . ' UTC';

for my $name (@names)
{
	my $node = $nodes{$name};
	my $sql = sub { $node->safe_psql('postgres', $_[0]) };
	my $ids = "ARRAY[" . join(',', map { "'$_'" } @{ $users{$name} }) . "]::text[]";

	is($sql->("SELECT count(*) FILTER (WHERE status = 'done') || '|' || count(*) FILTER (WHERE status = 'failed')"
			  . " FROM atlas_removal_queue"),
		"$n|1", "$name: $n rows done, 1 failed");
	is($sql->("SELECT status || '|' || http_status FROM atlas_removal_queue"
			  . " WHERE user_id = '$bad{$name}'"),
		'failed|403', "$name: the 403 row failed, and did not stop the rest");
	is($sql->('SELECT atlas_audit_flush()'), 't', "$name: flush returns true");
	is($sql->("SELECT count(*) FROM atlas_removal_audit WHERE outcome = 'removed' AND user_id = ANY ($ids)"),
		$n, "$name: $n audit rows 'removed'");
	is($sql->("SELECT outcome || '|' || http_status FROM atlas_removal_audit"
			  . " WHERE user_id = '$bad{$name}'"),
		'failed|403', "$name: the failed audit row");

	# cron.job_run_details
	my $runs = $sql->(
		"SELECT j.jobname || ' ' || d.status || ' ' || coalesce(d.return_message, '')"
		  . " || ' ' || to_char(d.start_time AT TIME ZONE 'UTC', 'HH24:MI:SS')"
		  . " FROM cron.job_run_details d JOIN cron.job j USING (jobid) ORDER BY d.start_time, j.jobname");
	note "$name: cron.job_run_details:\n$runs";
	for my $job ('atlas-drain', 'atlas-leavers')
	{
		my ($total, $ok) = split /\|/, $sql->(
			"SELECT count(*) || '|' || count(*) FILTER (WHERE d.status = 'succeeded')"
			  . " FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = '$job'"
			  . " AND d.status NOT IN ('starting', 'running')");
		cmp_ok($total, '>=', 1, "$name: job $job ran");
		is($ok, $total, "$name: every finished run of $job succeeded");
	}
	like($sql->("SELECT string_agg(d.return_message, ',') FROM cron.job_run_details d"
			  . " JOIN cron.job j USING (jobid) WHERE j.jobname = 'atlas-leavers' AND d.status = 'succeeded'"),
		qr/SELECT 1/, "$name: job atlas-leavers returned its row ('SELECT 1')");

	if ($name eq 'cron_only')
	{
		# no worker here: the rows were run by job A, in pg_cron's worker
		is($sql->('SELECT worker_pid IS NULL FROM atlas_queue_status'), 't',
			'cron_only: still no atlas_users worker: job A did the removals');
		is($sql->("SELECT count(*) FROM atlas_removal_queue q WHERE EXISTS ("
				  . " SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
				  . " WHERE j.jobname = 'atlas-drain' AND d.status = 'succeeded'"
				  # pg_cron's start_time and end_time are not exact: it can record start_time after a
				  # quick job already ran, and (background-worker mode) end_time before the job's
				  # commit.  With no atlas_users worker and job B only enqueueing, the rows can only
				  # be run by job A: they must finish in the minute of a successful run of it.
				  . " AND q.finished_at >= date_trunc('minute', d.start_time)"
				  . " AND q.finished_at < date_trunc('minute', d.start_time) + interval '1 minute')"),
			$n + 1, 'cron_only: every row finished inside a run of job A (atlas-drain)')
		  or diag "runs:\n"
		  . $sql->("SELECT j.jobname, d.runid, d.job_pid, d.status, d.start_time, d.end_time"
			  . " FROM cron.job_run_details d JOIN cron.job j USING (jobid) ORDER BY d.start_time")
		  . "\nrows finished: "
		  . $sql->("SELECT min(finished_at) || ' .. ' || max(finished_at) FROM atlas_removal_queue");
	}

	my $st = emu('GET', "state?user=$users{$name}[0]");
	ok(!exists $st->{projects}{$group}, "$name: the first leaver is gone from the project");

	$sql->("SELECT cron.unschedule('atlas-drain'); SELECT cron.unschedule('atlas-leavers');");
}

my $c = emu_counters();
note sprintf('both nodes: removal requests=%d (204=%d 404=%d 401=%d)',
	emu_route_count($c, $route), emu_route_count($c, $route, '204'),
	emu_route_count($c, $route, '404'), emu_route_count($c, $route, '401'));
is(emu_route_count($c, $route, '204'), 2 * $n, "both nodes: exactly " . 2 * $n . " answers of 204");
is(emu_route_count($c, $route) - emu_route_count($c, $route, '401'),
	2 * $n + 2, 'both nodes: exactly one request per leaver (the two 403s included)');

$_->stop for values %nodes;
done_testing();
