# 036_upgrade.pl: ALTER EXTENSION atlas_users UPDATE from 1.3, on an
# install that holds audit and queue rows, with today's library.
#
# - The 1.3 install works with the new library (its tables lack the 1.4
#   columns): a removal is audited, removals are queued.
# - After the update: every audit and queue row is kept unchanged, the new
#   columns are NULL on old rows, grants on functions and views are kept,
#   the queued rows run (with the settings' credentials, as in 1.3) and
#   their audit rows carry their queue ids, and the foreign data wrapper
#   works.
# - The updated extension has exactly the objects of a fresh install.
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

emu_reset();
my $ids = emu_users(count => 4, orgId => $org, groupIds => [$group], prefix => 'upg');

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
my $secrets = $ENV{ATLAS_SECRETS};
$node->append_conf('postgresql.conf', "
atlas_users.base_url = '$ENV{ATLAS_EMULATOR_HTTPS_URL}'
atlas_users.ca_file = '$ENV{ATLAS_TEST_CA}'
atlas_users.public_key = 'atlasemu'
atlas_users.private_key_file = '$secrets/private_key'
atlas_users.auth_method = 'digest'
");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{CREATE EXTENSION atlas_users VERSION '1.3'});
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'atlas_users'}), '1.3', 'a 1.3 install');

# rows of a 1.3 install, written by today's library
is(sql("SELECT atlas_remove_project_user('$group', '$ids->[0]')"), 't', 'a removal on 1.3');
is(sql("SELECT atlas_remove_project_user('$group', '$ids->[0]', true)"), 'f', 'an already absent one');
sql("SELECT atlas_enqueue_remove_project_user('$group', '$ids->[1]'),"
	  . " atlas_enqueue_remove_project_user('$group', '$ids->[2]')");
sql(q{
	CREATE ROLE reviewer;
	GRANT SELECT ON atlas_queue_status TO reviewer;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean) TO reviewer;
});
my $cols_audit = sql(q{SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'atlas_removal_audit'::regclass AND attnum > 0 AND NOT attisdropped});
my $audit_before = sql('SELECT string_agg(a::text, E\'\n\' ORDER BY id) FROM atlas_removal_audit a');
my $queue_before = sql('SELECT string_agg(q::text, E\'\n\' ORDER BY id) FROM atlas_removal_queue q');
is(sql('SELECT count(*) FROM atlas_removal_audit'), '2', 'two audit rows');
is(sql(q{SELECT count(*) FROM atlas_removal_queue WHERE status = 'queued'}), '2', 'two queued rows');

sql(q{ALTER EXTENSION atlas_users UPDATE TO '1.4'});
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'atlas_users'}), '1.4', 'updated to 1.4');

# the old rows, as they were, in the columns 1.3 had
is( sql("SELECT string_agg(ROW($cols_audit)::text, E'\\n' ORDER BY id) FROM atlas_removal_audit"),
	$audit_before, 'every audit row is kept unchanged');
is(sql('SELECT count(*) FROM atlas_removal_audit WHERE server IS NULL AND queue_id IS NULL'),
	'2', 'with the new columns NULL');
my $qcols = sql(q{SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'atlas_removal_queue'::regclass AND attnum > 0 AND NOT attisdropped
	  AND attname NOT IN ('server', 'enqueued_as')});
is(sql("SELECT string_agg(ROW($qcols)::text, E'\\n' ORDER BY id) FROM atlas_removal_queue"),
	$queue_before, 'every queue row is kept unchanged');
is( sql(q{SELECT has_table_privilege('reviewer', 'atlas_queue_status', 'SELECT')
	 AND has_function_privilege('reviewer', 'atlas_remove_project_user(text, text, boolean)', 'EXECUTE')}),
	't', 'grants on the recreated view and on functions are kept');

# the queued rows run after the update, with the settings' credentials
is(sql('SELECT atlas_process_queue()'), '2', 'the queued rows run');
is( sql(q{SELECT count(*) FROM atlas_removal_queue q JOIN atlas_removal_audit a ON a.queue_id = q.id
	WHERE q.status = 'done' AND a.outcome = 'removed'}),
	'2', 'and their audit rows carry their queue ids');
is(sql("SELECT kind FROM atlas_offboard_user('$org', '$ids->[3]', 'projects', true) LIMIT 1"),
	'project', 'atlas_offboard_user has its 1.4 result');
sql(qq{CREATE SERVER acme FOREIGN DATA WRAPPER atlas_users
	OPTIONS (base_url '$ENV{ATLAS_EMULATOR_HTTPS_URL}', ca_file '$ENV{ATLAS_TEST_CA}', org_id '$org');
	CREATE USER MAPPING FOR CURRENT_USER SERVER acme
		OPTIONS (public_key 'atlasemu', private_key_file '$secrets/private_key')});
is(sql("SELECT atlas_remove_org_user('$org', '$ids->[3]')"), 't', 'a removal through a server');
is(sql("SELECT server FROM atlas_removal_audit WHERE user_id = '$ids->[3]'"), 'acme', 'audited with it');

# the same objects as a fresh install
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n'
		ORDER BY pg_describe_object(classid, objid, objsubid))
	FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'atlas_users')};
my $updated = sql($objects);
sql('CREATE DATABASE fresh');
$node->safe_psql('fresh', q{CREATE EXTENSION atlas_users VERSION '1.4';
	GRANT SELECT ON atlas_queue_status TO reviewer;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean) TO reviewer});
my $fresh = $node->safe_psql('fresh', $objects);
is($updated, $fresh, 'the updated extension has exactly the objects of a fresh install');
my $signature = q{SELECT string_agg(f, E'\n' ORDER BY f) FROM (
	SELECT p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid)
		|| ' ' || coalesce(p.proacl::text, '') AS f
	FROM pg_proc p WHERE p.proname LIKE 'atlas\_%') s};
is(sql($signature), $node->safe_psql('fresh', $signature),
	'with the same function signatures, results and privileges');

$node->stop;
done_testing();
