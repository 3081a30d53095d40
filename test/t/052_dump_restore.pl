# 052_dump_restore.pl: pg_dump and restore keep every audit and queue row
# and the positions of their identity sequences.
#
# - A fresh CREATE EXTENSION (1.0, then every update) ends with both
#   identity sequences marked for pg_dump; an install of 1.3 has them
#   unmarked, and ALTER EXTENSION UPDATE marks them.
# - A preloaded install with history: audit rows of which the oldest were
#   purged by atlas_purge_audit(), queue rows done, cancelled and failed,
#   rows the worker deleted for atlas_users.queue_retention, and a queue
#   id used by an enqueue that rolled back (so the sequence is past the
#   highest id).
# - pg_dump -Fc, then pg_restore into a new database of the same cluster
#   and into a new cluster: the same rows (compared whole), the same
#   sequence positions, and the next removal and enqueue get the next ids.
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
my $no_group = 'ffffffffffffffffffffff99';

emu_reset();
my $ids = emu_users(count => 30, orgId => $org, groupIds => [$group], prefix => 'dump');

my $src = atlas_node('dumpsrc', extra_conf => "shared_preload_libraries = 'atlas_users'\n");
ok($src->poll_query_until('postgres', 'SELECT worker_pid IS NOT NULL FROM atlas_queue_status'),
	'the worker runs');

sub sql { return $src->safe_psql('postgres', $_[0]); }

# How many of the two identity sequences are marked for pg_dump.
my $marked = "SELECT count(*) FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'atlas_users'"
  . " AND c IN (pg_get_serial_sequence('atlas_removal_audit', 'id')::regclass,"
  . " pg_get_serial_sequence('atlas_removal_queue', 'id')::regclass)";

# ------------------------------------------------------------------
# 1. fresh install and upgrade mark the sequences
# ------------------------------------------------------------------
is(sql($marked), 2, 'fresh CREATE EXTENSION: both identity sequences are marked for pg_dump');
sql('CREATE DATABASE upgraded');
$src->safe_psql('upgraded', "CREATE EXTENSION atlas_users VERSION '1.3'");
is($src->safe_psql('upgraded', $marked), 0, 'an install of 1.3 has them unmarked');
$src->safe_psql('upgraded', "ALTER EXTENSION atlas_users UPDATE TO '1.4'");
is($src->safe_psql('upgraded', $marked), 2, 'ALTER EXTENSION UPDATE TO 1.4 marks both');

# ------------------------------------------------------------------
# 2. an install with history
# ------------------------------------------------------------------
sub remove { sql("SELECT atlas_remove_project_user('$group', '$_')") for @_; }

sub wait_queue
{
	my ($cond) = @_;
	return $src->poll_query_until('postgres', "SELECT $cond FROM atlas_removal_queue");
}

# audit: 4 rows, then 6 three seconds later; the 4 older ones are purged
remove(@$ids[ 0 .. 3 ]);
sleep 3;
remove(@$ids[ 4 .. 9 ]);
is(sql('SELECT atlas_audit_flush()'), 't', 'history: audit flushed');
is(sql("SET atlas_users.audit_min_retention = 0; SELECT atlas_purge_audit('2 seconds')"), 4, 'history: atlas_purge_audit deleted the 4 oldest audit rows');

# queue: 5 removals done, then deleted by the worker for the retention
my $enq = sub {
	my ($user, $grp) = @_;
	return sql("SELECT atlas_enqueue_remove_project_user('" . ($grp // $group) . "', '$user')");
};
$enq->($_) for @$ids[ 10 .. 14 ];
ok(wait_queue("count(*) FILTER (WHERE status = 'done') = 5"), 'history: 5 queued removals done');
sql('ALTER SYSTEM SET atlas_users.queue_retention = 1');
sql('SELECT pg_reload_conf()');
sleep 2;
# a new worker applies the retention at once (then once a minute)
sql('SELECT pg_terminate_backend(worker_pid) FROM atlas_queue_status');
ok(wait_queue('count(*) = 0'), 'history: the worker deleted the 5 finished rows (queue_retention)');
sql('ALTER SYSTEM RESET atlas_users.queue_retention');
sql('SELECT pg_reload_conf()');

# queue: 3 done, 1 cancelled, 1 failed (no such project), 1 enqueue rolled back
$enq->($_) for @$ids[ 15 .. 17 ];
$src->safe_psql('postgres',
	"BEGIN; SELECT atlas_cancel_removal(atlas_enqueue_remove_project_user('$group', '$ids->[18]')); COMMIT;");
$enq->($ids->[19], $no_group);
ok(wait_queue("count(*) FILTER (WHERE status = 'done') = 3 AND count(*) FILTER (WHERE status = 'failed') = 1"),
	'history: 3 done, 1 failed');
$src->safe_psql('postgres',
	"BEGIN; SELECT atlas_enqueue_remove_project_user('$group', '$ids->[20]'); ROLLBACK;");
is(sql('SELECT atlas_audit_flush()'), 't', 'history: audit flushed');

# The state to keep: rows (whole), counts, id ranges, sequence positions.
sub state_of
{
	my ($node, $db) = @_;
	my %s;
	for my $t (qw(audit queue))
	{
		my $rel = $t eq 'audit' ? 'atlas_removal_audit' : 'atlas_removal_queue';
		$s{$t} = $node->safe_psql($db,
			"SELECT count(*) || '|' || min(id) || '|' || max(id) || '|' || md5(string_agg(r::text, E'\\n' ORDER BY id))"
			  . " FROM $rel r");
		$s{"${t}_seq"} = $node->safe_psql($db,
			"SELECT last_value || '|' || is_called FROM ${rel}_id_seq");
	}
	return \%s;
}
my $before = state_of($src, 'postgres');
my ($an, $amin, $amax) = split /\|/, $before->{audit};
my ($qn, $qmin, $qmax) = split /\|/, $before->{queue};
my ($alast) = split /\|/, $before->{audit_seq};
my ($qlast) = split /\|/, $before->{queue_seq};
note "before the dump: audit rows=$an ids $amin..$amax sequence=$before->{audit_seq};"
  . " queue rows=$qn ids $qmin..$qmax sequence=$before->{queue_seq}";
is($an, 15, 'history: 15 audit rows (6 removals left after the purge, 9 queue attempts)');
cmp_ok($amin, '>', 1, 'history: the lowest audit ids were purged');
is($qn, 5, 'history: 5 queue rows');
is($qmin, 6, 'history: queue ids 1 to 5 were deleted by the retention');
is($qlast, $qmax + 1, 'history: the queue sequence is past the highest id (a rolled-back enqueue)');
is(sql("SELECT string_agg(status, ',' ORDER BY id) FROM atlas_removal_queue"),
	'done,done,done,cancelled,failed', 'history: queue rows done, cancelled and failed');

# ------------------------------------------------------------------
# 3. pg_dump, and pg_restore into a new database and a new cluster
# ------------------------------------------------------------------
my $dump = PostgreSQL::Test::Utils::tempdir() . '/atlas.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ], 'pg_dump -Fc');

my $dst = atlas_node('dumpdst');
my $u = 21;
for my $target ([ $src, 'the same cluster' ], [ $dst, 'a new cluster' ])
{
	my ($node, $where) = @$target;
	$node->safe_psql('postgres', 'CREATE DATABASE restored');
	command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
		"pg_restore into a new database of $where");
	my $after = state_of($node, 'restored');
	is($after->{audit}, $before->{audit}, "$where: every audit row kept ($an rows, ids $amin..$amax)");
	is($after->{queue}, $before->{queue}, "$where: every queue row kept ($qn rows, ids $qmin..$qmax)");
	is($after->{audit_seq}, $before->{audit_seq}, "$where: the audit sequence position kept ($before->{audit_seq})");
	is($after->{queue_seq}, $before->{queue_seq}, "$where: the queue sequence position kept ($before->{queue_seq})");
	is($node->safe_psql('restored', $marked), 2, "$where: the restored install has both sequences marked");

	my $user = $ids->[ $u++ ];
	my $out = $node->safe_psql('restored',
		"SELECT atlas_remove_project_user('$group', '$user');\n"
		  . "SELECT max(id) FROM atlas_removal_audit WHERE user_id = '$user';");
	is($out, "t\n" . ($alast + 1), "$where: the next removal works and its audit row gets id " . ($alast + 1));
	$user = $ids->[ $u++ ];
	is($node->safe_psql('restored', "SELECT atlas_enqueue_remove_project_user('$group', '$user')"),
		$qlast + 1, "$where: the next enqueue works and gets id " . ($qlast + 1));
}

$dst->stop;
$src->stop;
done_testing();
