# 082_evidence.pl: evidence for auditors.
#
# An install at 1.4 with audit and queue rows updates to 1.5 cleanly: the
# old rows are kept, the new columns are NULL (requested_by filled from
# enqueued_by), grants are kept, and the objects match a fresh install.
# Then reason and ticket from every kind of caller (a removal, an enqueue,
# the trigger with 'reason=column' and 'ticket:=literal') reach the queue
# and the audit, and atlas_offboarding_report() gives a row per person
# with the times, the outcome and the flag past the target time.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $org = seed_id('org');
my $group = seed_id('project', 0);

emu_reset();
my $ids = emu_users(count => 6, orgId => $org, groupIds => [$group], prefix => 'ev');

my $node = atlas_node('evidence', guard => 1);
sub sql { return $node->safe_psql('postgres', $_[0]); }
sql('DROP EXTENSION atlas_users');

# ------------------------------------------------------------------
# 1. an install at 1.4, updated to 1.5
# ------------------------------------------------------------------
my $t0 = sql('SELECT now()');
sql(q{CREATE EXTENSION atlas_users VERSION '1.4'});
is(sql("SELECT atlas_remove_project_user('$group', '$ids->[0]')"), 't', '1.4: a removal');
my $qid = sql("SELECT atlas_enqueue_remove_project_user('$group', '$ids->[1]')");
sql(q{CREATE ROLE reviewer;
	GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean) TO reviewer;
	GRANT EXECUTE ON FUNCTION atlas_enqueue_remove_org_user(text, text) TO reviewer});
my $audit_cols = sql(q{SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'atlas_removal_audit'::regclass AND attnum > 0 AND NOT attisdropped});
my $queue_cols = sql(q{SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'atlas_removal_queue'::regclass AND attnum > 0 AND NOT attisdropped});
my $audit_before = sql("SELECT string_agg(ROW($audit_cols)::text, E'\\n' ORDER BY id) FROM atlas_removal_audit");
my $queue_before = sql("SELECT string_agg(ROW($queue_cols)::text, E'\\n' ORDER BY id) FROM atlas_removal_queue");

sql(q{ALTER EXTENSION atlas_users UPDATE TO '1.5'});
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'atlas_users'}), '1.5', 'updated to 1.5');
is(sql("SELECT string_agg(ROW($audit_cols)::text, E'\\n' ORDER BY id) FROM atlas_removal_audit"),
	$audit_before, 'update: every audit row kept, in the columns 1.4 had');
is( sql('SELECT count(*) FROM atlas_removal_audit WHERE approved_by IS NULL AND reason IS NULL'
		  . ' AND ticket IS NULL AND NOT forced'),
	'1', 'update: the new audit columns are NULL (forced false)');
is(sql("SELECT string_agg(ROW($queue_cols)::text, E'\\n' ORDER BY id) FROM atlas_removal_queue"),
	$queue_before, 'update: every queue row kept');
is(sql("SELECT requested_by FROM atlas_removal_queue WHERE id = $qid"), 'postgres',
	'update: requested_by filled from enqueued_by');
is( sql(q{SELECT has_function_privilege('reviewer', 'atlas_remove_project_user(text, text, boolean, text, text)', 'EXECUTE')
		AND has_function_privilege('reviewer', 'atlas_enqueue_remove_org_user(text, text, text, text)', 'EXECUTE')
		AND NOT has_function_privilege('reviewer', 'atlas_release_held(text, integer)', 'EXECUTE')}),
	't', 'update: grants on the redefined functions kept; the new ones are not public');
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n'
		ORDER BY pg_describe_object(classid, objid, objsubid))
	FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'atlas_users')};
my $signature = q{SELECT string_agg(f, E'\n' ORDER BY f) FROM (
	SELECT p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid)
		|| ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '') AS f
	FROM pg_proc p WHERE p.proname LIKE 'atlas\_%') s};
my $columns = q{SELECT string_agg(attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod),
		E'\n' ORDER BY attrelid::regclass::text, attname)
	FROM pg_attribute WHERE attrelid IN ('atlas_removal_audit'::regclass, 'atlas_removal_queue'::regclass,
		'atlas_queue_status'::regclass) AND attnum > 0 AND NOT attisdropped};
sql('CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION atlas_users');
is(sql($objects), $node->safe_psql('fresh', $objects), 'update: the objects of a fresh install');
is(sql($signature), $node->safe_psql('fresh', $signature), 'update: the same signatures and comments');
is(sql($columns), $node->safe_psql('fresh', $columns), 'update: the same columns');
sleep 3.2;    # past the report's target below
is(sql('SELECT atlas_process_queue()'), '1', 'update: the 1.4 row runs');

# ------------------------------------------------------------------
# 2. reason and ticket from every kind of caller
# ------------------------------------------------------------------
is( sql("SELECT atlas_remove_org_user('$org', '$ids->[2]', reason => 'left the company', ticket => 'SEC-7')"),
	't', 'a removal with a reason and a ticket');
my $q2 = sql("SELECT atlas_enqueue_remove_org_user('$org', '$ids->[3]', 'contract ended', 'HR-9')");
sql(  "CREATE SCHEMA hr;"
	. " CREATE TABLE hr.employees (id int PRIMARY KEY, atlas_user_id text, why text, terminated_at timestamptz);"
	. " INSERT INTO hr.employees VALUES (1, '$ids->[4]', 'terminated in Workday', NULL);"
	. " CREATE TRIGGER atlas_offboard AFTER UPDATE OF terminated_at ON hr.employees FOR EACH ROW"
	. " WHEN (OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL)"
	. " EXECUTE FUNCTION atlas_offboard_trigger('org', 'org_id:=$org', 'user_id=atlas_user_id',"
	. " 'reason=why', 'ticket:=HR-FEED');");
sql('UPDATE hr.employees SET terminated_at = now()');
is( sql("SELECT string_agg(reason || '|' || ticket, ',' ORDER BY id) FROM atlas_removal_queue"
		  . " WHERE user_id IN ('$ids->[3]', '$ids->[4]')"),
	'contract ended|HR-9,terminated in Workday|HR-FEED', 'the enqueue and the trigger keep them in the queue');
is(sql('SELECT atlas_process_queue()'), '2', 'the two rows run');
is( sql("SELECT string_agg(user_id || '|' || reason || '|' || ticket || '|' || outcome, ',' ORDER BY user_id)"
		  . " FROM atlas_removal_audit WHERE user_id IN ('$ids->[2]', '$ids->[3]', '$ids->[4]')"),
	join(',', sort ("$ids->[2]|left the company|SEC-7|removed", "$ids->[3]|contract ended|HR-9|removed",
		"$ids->[4]|terminated in Workday|HR-FEED|removed")),
	'every audit row carries its reason and ticket');
my ($rc, $o, $e) = psql_as($node, 'postgres',
	"SELECT atlas_enqueue_remove_org_user('$org', '$ids->[5]', repeat('x', 300))");
is(sqlstate_of($e), '22023', 'a reason over 255 bytes: 22023');

# ------------------------------------------------------------------
# 3. the offboarding report over a mixed set
# ------------------------------------------------------------------
sql("SET atlas_users.require_approval = on; SELECT atlas_enqueue_remove_org_user('$org', '$ids->[5]', 'awaiting a second person', 'HR-10')");
sleep 3.2;
my $report = "SELECT coalesce(user_id, '') || '|' || outcome || '|' || coalesce(requested_by, '') || '|'"
  . " || coalesce(reason, '') || '|' || coalesce(ticket, '') || '|' || (removed_at IS NOT NULL)"
  . " || '|' || (time_taken IS NOT NULL AND time_taken >= '0'::interval) || '|' || past_target"
  . " FROM atlas_offboarding_report('$t0') ORDER BY requested_at";
my @rows = split /\n/, $node->safe_psql('postgres', "SET atlas_users.offboarding_target = '3s'; $report");
is(scalar @rows, 6, 'report: one row per person and organization');
is( $rows[0], "$ids->[0]|removed|postgres|||true|true|false",
	'report: the 1.4 removal, done within the target');
is($rows[1], "$ids->[1]|removed|postgres|||true|true|true",
	'report: the 1.4 queued row, run after the target: flagged');
is($rows[2], "$ids->[2]|removed|postgres|left the company|SEC-7|true|true|false", 'report: the removal with its evidence');
is($rows[3], "$ids->[3]|removed|postgres|contract ended|HR-9|true|true|false", 'report: the enqueued one');
is($rows[4], "$ids->[4]|removed|postgres|terminated in Workday|HR-FEED|true|true|false", 'report: the trigger\'s');
is($rows[5], "$ids->[5]|pending|postgres|awaiting a second person|HR-10|false|false|true",
	'report: the one awaiting approval is pending and, past the target, flagged');
is(sql("SELECT count(*) FROM atlas_offboarding_report('$t0') WHERE past_target"), '0',
	'report: with the default target (24 h) nothing is flagged');
is(sql("SELECT count(*) FROM atlas_offboarding_report('$t0', '$t0')"), '0',
	'report: an empty period has no rows');

$node->stop;
done_testing();
