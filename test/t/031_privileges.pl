# 031_privileges.pl: who may do what.
#
# - The README's least-privilege role (GRANT EXECUTE ... TO
#   offboarding_role; GRANT offboarding_role TO alice) removes from
#   projects, organizations and teams, enqueues, and reads the audit, the
#   queue and its status.
# - Every function of the extension (from pg_depend) has no EXECUTE for
#   PUBLIC: has_function_privilege() is false for a plain role, and the
#   plain role calling each one gets 42501 (a trigger with
#   atlas_offboard_trigger too).
# - Only superusers change the settings: SET, set_config() and ALTER ROLE
#   ... SET as a non-superuser fail with 42501 in a backend that loaded the
#   library; in a fresh backend, a placeholder value set by SET or by the
#   connection's options never takes effect when the library loads, and
#   the refusal stops every Atlas call of that backend (22023, 0 requests).
# - atlas_removal_audit is append-only for everyone, its owner (the
#   superuser) included: UPDATE, DELETE, TRUNCATE fail with 42501;
#   atlas_purge_audit(interval) deletes only older rows and PUBLIC may not
#   run it.
# - search_path hijacking: a role whose search_path puts its own schema
#   before pg_catalog, with its own = < <= - operators and lower(),
#   clock_timestamp(), now(), pg_backend_pid() functions, runs remove,
#   enqueue (by id and by username), the trigger, process_queue, cancel,
#   bulk, offboarding and purge correctly, and none of its objects is ever
#   called (each bumps a sequence, which no rollback undoes, then raises).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use AtlasTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $org = '65f0a0000000000000000001';
my $group = '65f0b0000000000000000001';
my $team = '65f0c0000000000000000001';

emu_reset();
my $ids = emu_users(
	count => 40,
	orgId => $org,
	groupIds => [$group],
	teamIds => [$team],
	prefix => 'priv');
my $next_id = 0;
sub fresh_user { return $ids->[ $next_id++ ]; }

my $node = atlas_node('priv', auth_method => 'digest');

# One psql run as a role: (stdout, stderr).
sub as_role { return (psql_as($node, @_))[ 1, 2 ]; }

sub session
{
	my ($user) = @_;
	return $node->background_psql(
		'postgres',
		on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose', '-U', $user ]);
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

# the README's least-privilege role, verbatim, and two more roles
sql(q{
CREATE ROLE offboarding_role NOLOGIN;
GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text),
                          atlas_remove_org_user(text, text, boolean, text, text),
                          atlas_remove_team_user(text, text, text, boolean, text, text),
                          atlas_enqueue_remove_project_user(text, text, text, text),
                          atlas_enqueue_remove_org_user(text, text, text, text),
                          atlas_enqueue_remove_team_user(text, text, text, text, text),
                          atlas_worker_status()      -- used by the atlas_queue_status view
      TO offboarding_role;
GRANT SELECT ON atlas_removal_audit, atlas_removal_queue, atlas_queue_status TO offboarding_role;
CREATE ROLE alice LOGIN;
GRANT offboarding_role TO alice;
CREATE ROLE bob LOGIN;
CREATE SCHEMA bobs AUTHORIZATION bob;
});

# ------------------------------------------------------------------
# 1. the least-privilege role
# ------------------------------------------------------------------
{
	my ($u1, $u2, $u3, $u4, $u5, $u6) = map { fresh_user() } 1 .. 6;
	my ($o, $e) = as_role('alice',
		"SELECT atlas_remove_project_user('$group', '$u1');\n"
		  . "SELECT atlas_remove_team_user('$org', '$team', '$u2');\n"
		  . "SELECT atlas_remove_org_user('$org', '$u3');\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u4') > 0;\n"
		  . "SELECT atlas_enqueue_remove_org_user('$org', '$u5') > 0;\n"
		  . "SELECT atlas_enqueue_remove_team_user('$org', '$team', '$u6') > 0;\n");
	is($o, "t\nt\nt\nt\nt\nt", 'alice (offboarding_role) removes from a project, a team and the org, and enqueues all three')
	  or diag $e;
	unlike($e, qr/ERROR/, 'alice: no error');
	($o, $e) = as_role('alice',
		"SELECT count(*) FROM atlas_removal_audit WHERE user_id IN ('$u1', '$u2', '$u3') AND outcome = 'removed';\n"
		  . "SELECT count(*) FROM atlas_removal_queue WHERE user_id IN ('$u4', '$u5', '$u6') AND status = 'queued';\n");
	is($o, "3\n3", 'alice reads the audit and the queue') or diag $e;
	($o, $e) = as_role('alice', 'SELECT queued FROM atlas_queue_status');
	is($o, '3', 'alice reads atlas_queue_status (the README grants SELECT on it)') or diag $e;
	is(sql("SELECT string_agg(DISTINCT requested_by || '/' || executed_as, ',') FROM atlas_removal_audit WHERE user_id IN ('$u1', '$u2', '$u3')"),
		'alice/alice', 'the audit rows name alice');
	is(sql('SELECT atlas_process_queue(10)'), '3', 'the superuser drains alice\'s queue rows');
	($o, $e) = as_role('alice', "SELECT count(*) FROM atlas_removal_queue WHERE user_id IN ('$u4', '$u5', '$u6') AND status = 'done'");
	is($o, '3', 'alice sees her queue rows done');

	for my $stmt (
		"INSERT INTO atlas_removal_audit (requested_by, executed_as, operation, outcome) VALUES ('x', 'x', 'x', 'removed')",
		"UPDATE atlas_removal_audit SET outcome = 'failed'",
		'DELETE FROM atlas_removal_audit',
		'TRUNCATE atlas_removal_audit',
		"UPDATE atlas_removal_queue SET status = 'queued'",
		'DELETE FROM atlas_removal_queue',
		"INSERT INTO atlas_removal_queue (enqueued_by, operation, user_id) VALUES ('x', 'remove_org_user', 'x')",
		'SELECT atlas_process_queue(1)',
		"SELECT atlas_purge_audit('0 s')",
		'SELECT atlas_cancel_removal(1)')
	{
		($o, $e) = as_role('alice', $stmt);
		is(sqlstate_of($e), '42501', "alice may not: $stmt") or diag $e;
	}
}

# ------------------------------------------------------------------
# 2. no function of the extension is executable by PUBLIC
# ------------------------------------------------------------------
my $ext_funcs = q{
	FROM pg_proc p
	JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	     AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'atlas_users'};
{
	my $n = sql("SELECT count(*) $ext_funcs");
	cmp_ok($n, '>=', 20, "the extension has $n functions");
	note sql("SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1) $ext_funcs");
	is(sql("SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), '') $ext_funcs"
			  . " WHERE has_function_privilege('bob', p.oid, 'EXECUTE')"),
		'', 'has_function_privilege(bob, f, EXECUTE) is false for every function of the extension');
	is(sql("SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), '') $ext_funcs,"
			  . " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
			  . " WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'"),
		'', 'no function of the extension grants EXECUTE to PUBLIC (proacl)');
	is(sql("SELECT count(*) $ext_funcs WHERE p.prosecdef"), '0', 'no function is SECURITY DEFINER');

	# bob calls each one with NULL arguments of the right types
	my @calls = split /\n/, sql(
		"SELECT format('SELECT %s(%s)', p.oid::regproc,"
		  . "  coalesce((SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY o)"
		  . "            FROM unnest(p.proargtypes) WITH ORDINALITY AS u(t, o)), ''))"
		  . " $ext_funcs WHERE p.prorettype <> 'trigger'::regtype ORDER BY 1");
	my @refused;
	my @not;
	for my $c (@calls)
	{
		my ($o, $e) = as_role('bob', $c);
		if (sqlstate_of($e) eq '42501' && $e =~ /permission denied for function/)
		{
			push @refused, $c;
		}
		else
		{
			push @not, "$c: $o $e";
		}
	}
	is(scalar(@not), 0, 'bob gets 42501 "permission denied for function" from all '
		  . scalar(@calls) . ' non-trigger functions')
	  or diag join("\n", @not);

	# the trigger functions: bob cannot even attach them
	for my $t (
		"atlas_offboard_trigger('org', 'org_id:=$org', 'user_id=atlas_id')",
		'atlas_audit_guard()')
	{
		my ($o, $e) = as_role('bob',
			"CREATE TABLE bobs.hr (atlas_id text, gone boolean);\n"
			  . "CREATE TRIGGER t AFTER UPDATE ON bobs.hr FOR EACH ROW EXECUTE FUNCTION $t;\n"
			  . "DROP TABLE bobs.hr;\n");
		is(sqlstate_of($e), '42501', "bob cannot create a trigger with $t") or diag $e;
	}
	for my $rel (qw(atlas_removal_audit atlas_removal_queue atlas_queue_status))
	{
		my ($o, $e) = as_role('bob', "SELECT count(*) FROM $rel");
		is(sqlstate_of($e), '42501', "bob cannot read $rel");
	}
}

# ------------------------------------------------------------------
# 3. only superusers change the settings
# ------------------------------------------------------------------
my %bad_value = (
	base_url => "'http://127.0.0.1:9/'",
	ca_file => "''",
	auth_method => "'service_account'",
	public_key => "'mallory'",
	private_key => "'stolen'",
	private_key_file => "'/tmp/evil_key'",
	client_id => "'mdb_sa_id_evil'",
	client_secret => "'evil'",
	client_secret_file => "'/tmp/evil_secret'",
	api_version => "'2023-01-01'",
	timeout_ms => "'100'",
	connect_timeout_ms => "'100'",
	max_retries => "'10'",
	max_concurrency => "'64'",
	page_size => "'1'",
	max_attempts => "'100'",
	retry_base_ms => "'10'");
my @security = qw(base_url ca_file auth_method public_key private_key private_key_file
  client_id client_secret client_secret_file);
{
	# a backend that loaded the library
	my $s = session('alice');
	my ($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('x', 'y')");
	is(sqlstate_of($e), '22023', 'alice loads the library (22023 for bad ids)');
	my (@ok_set, @bad_set);
	for my $name (sort keys %bad_value)
	{
		my $v = $bad_value{$name};
		for my $stmt ("SET atlas_users.$name = $v",
			"SET LOCAL atlas_users.$name = $v",
			"SELECT set_config('atlas_users.$name', $v, false)",
			"ALTER ROLE alice SET atlas_users.$name = $v",
			"ALTER ROLE alice IN DATABASE postgres SET atlas_users.$name = $v")
		{
			($o, $e) = bg_query($s, $stmt);
			if (sqlstate_of($e) eq '42501') { push @ok_set, $stmt; }
			else { push @bad_set, "$stmt: $o $e"; }
		}
	}
	is(scalar(@bad_set), 0, 'alice: SET, SET LOCAL, set_config() and ALTER ROLE ... SET of all '
		  . scalar(keys %bad_value) . ' superuser settings fail with 42501 ('
		  . scalar(@ok_set) . ' statements)')
	  or diag join("\n", @bad_set);
	($o, $e) = bg_query($s, 'SET atlas_users.no_such_setting = 1');
	isnt(sqlstate_of($e), '(none)', 'alice: an unknown atlas_users.* setting is refused once loaded');
	($o, $e) = bg_query($s, "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "')");
	is($o, 't', 'alice: her calls still use the configured settings') or diag $e;
	$s->quit;

	is(sql("SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%atlas_users%'"),
		'0', 'no ALTER ROLE setting of atlas_users was stored');

	# fresh backends: placeholders set before the library loads never apply,
	# and the refusal stops the backend's Atlas calls before any request
	for my $name (@security)
	{
		my $v = $bad_value{$name};
		my $u = fresh_user();
		emu_reset_counters();
		($o, $e) = as_role('alice',
			"SET atlas_users.$name = $v;\n"
			  . "SELECT atlas_remove_project_user('$group', '$u');\n"
			  . "SHOW atlas_users.base_url;\n");
		is(sqlstate_of($e), '22023',
			"fresh backend, alice SET $name before the library loaded: the call fails with 22023")
		  or diag $e;
		like($e, qr/ERROR:\s+22023: atlas_users\.$name = \S.* was refused when atlas_users loaded/,
			"fresh backend: the error names atlas_users.$name");
		is(emu_counter('requests_total'), 0, "fresh backend, alice SET $name: 0 requests at the emulator");
		like($e, qr/WARNING:\s+42501: permission denied to set parameter "atlas_users\.$name"/,
			"fresh backend: alice's placeholder $name is refused with a WARNING when the library loads");
		($o, $e) = as_role('alice', "ALTER ROLE alice SET atlas_users.$name = $v");
		is(sqlstate_of($e), '42501', "fresh backend: ALTER ROLE alice SET atlas_users.$name fails with 42501");
	}
	{
		local $ENV{PGOPTIONS} = '-c atlas_users.base_url=http://127.0.0.1:9/ -c atlas_users.auth_method=service_account';
		emu_reset_counters();
		($o, $e) = as_role('alice',
			"SELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\nSHOW atlas_users.base_url;\n");
		my $shown = (split /\n/, $o)[-1] // '';
		like($e, qr/WARNING:\s+42501: permission denied to set parameter "atlas_users\.base_url"/,
			'alice: base_url from the connection options is refused with a WARNING when the library loads');
		isnt($shown, 'http://127.0.0.1:9/', 'alice: the base_url from her connection options is never used');
		# PostgreSQL core behaviour: without preloading, the refused startup
		# option also drops the value from postgresql.conf, and the setting
		# falls back to its built-in default ...
		is($shown, 'https://cloud.mongodb.com',
			'alice: without preloading, the refused option leaves base_url at its built-in default');
		# ... which atlas_users never uses: the call fails before any request
		is(sqlstate_of($e), '22023', 'alice: with a refused connection option, the call fails with 22023')
		  or diag $e;
		is(emu_counter('requests_total'), 0, 'alice: with a refused connection option, 0 requests at the emulator');
	}
	is(sql("SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%atlas_users%'"),
		'0', 'still no ALTER ROLE setting of atlas_users');
}

# ------------------------------------------------------------------
# 4. the audit is append-only, its owner included; atlas_purge_audit
# ------------------------------------------------------------------
{
	is(sql("SELECT r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.relname = 'atlas_removal_audit'"),
		't', 'the audit table belongs to a superuser (the extension owner)');
	my $before = sql('SELECT count(*) FROM atlas_removal_audit');
	cmp_ok($before, '>', 0, "the audit has $before rows");
	for my $stmt ("UPDATE atlas_removal_audit SET outcome = 'failed'",
		"UPDATE atlas_removal_audit SET detail = 'x' WHERE id = (SELECT max(id) FROM atlas_removal_audit)",
		'DELETE FROM atlas_removal_audit',
		'DELETE FROM atlas_removal_audit WHERE id = (SELECT min(id) FROM atlas_removal_audit)',
		'TRUNCATE atlas_removal_audit',
		'TRUNCATE atlas_removal_audit CASCADE')
	{
		my ($o, $e) = as_role('postgres', $stmt);
		is(sqlstate_of($e), '42501', "superuser (owner): $stmt fails with 42501") or diag $e;
		like($e, qr/atlas_removal_audit is append-only/, "superuser: $stmt: says append-only");
	}
	is(sql('SELECT count(*) FROM atlas_removal_audit'), $before, 'no audit row was changed or removed');

	# the triggers are ENABLE ALWAYS: session_replication_role = replica
	# does not switch them off either
	my ($o, $e) = as_role('postgres',
		"BEGIN;\nSET LOCAL session_replication_role = replica;\n"
		  . "DELETE FROM atlas_removal_audit WHERE id = (SELECT min(id) FROM atlas_removal_audit);\nROLLBACK;\n");
	like($e, qr/append-only/, 'superuser with session_replication_role = replica: DELETE is refused too');

	# purge: only rows older than the interval
	my @old = (fresh_user(), fresh_user());
	($o, $e) = as_role('postgres', join('', map { "SELECT atlas_remove_project_user('$group', '$_');\n" } @old));
	is($o, "t\nt", 'two calls before the pause') or diag $e;
	sleep 2.5;
	my @new = (fresh_user(), fresh_user());
	($o, $e) = as_role('postgres', join('', map { "SELECT atlas_remove_project_user('$group', '$_');\n" } @new));
	is($o, "t\nt", 'two calls after the pause') or diag $e;
	my $total = sql('SELECT count(*) FROM atlas_removal_audit');
	my ($expect, $deleted, $left, $left_new, $left_old) = split /\|/, sql(
		"BEGIN;\n"
		  . "SET LOCAL atlas_users.audit_min_retention = 0;\n"
		  . "SELECT count(*) FILTER (WHERE at < now() - interval '1.2 seconds') FROM atlas_removal_audit;\n"
		  . "SELECT atlas_purge_audit(interval '1.2 seconds');\n"
		  . "SELECT count(*) FROM atlas_removal_audit;\n"
		  . "SELECT count(*) FROM atlas_removal_audit WHERE user_id IN ('$new[0]', '$new[1]');\n"
		  . "SELECT count(*) FROM atlas_removal_audit WHERE user_id IN ('$old[0]', '$old[1]');\n"
		  . "COMMIT;\n") =~ s/\n/|/gr;
	cmp_ok($expect, '>=', 2, "purge: $expect rows are older than 1.2 s");
	is($deleted, $expect, 'atlas_purge_audit(1.2 s) returns how many it deleted: exactly the older rows');
	is($left, $total - $expect, "purge: $left rows are left");
	is($left_new, 2, 'purge: the recent rows stay');
	is($left_old, 0, 'purge: the older rows are gone');
	is(sql("SET atlas_users.audit_min_retention = 0; SELECT atlas_purge_audit('1 hour')"), '0',
		'purge of rows older than an hour: 0');
	($o, $e) = as_role('postgres', 'SELECT atlas_purge_audit(NULL)');
	is(sqlstate_of($e), '22023', 'atlas_purge_audit(NULL): 22023');
	is(sql("SELECT has_function_privilege('bob', 'atlas_purge_audit(interval)', 'EXECUTE')"),
		'f', 'bob has no EXECUTE on atlas_purge_audit');
	is(sql("SELECT has_function_privilege('alice', 'atlas_purge_audit(interval)', 'EXECUTE')"),
		'f', 'alice (offboarding_role) has no EXECUTE on atlas_purge_audit');
	($o, $e) = as_role('bob', "SELECT atlas_purge_audit('0 s')");
	is(sqlstate_of($e), '42501', 'bob: atlas_purge_audit fails with 42501');
	is(sql('SELECT count(*) FROM atlas_removal_audit'), $left, 'nothing else was purged');
}

# ------------------------------------------------------------------
# 5. search_path hijacking
# ------------------------------------------------------------------
sql(q{
CREATE ROLE mallory LOGIN;
GRANT offboarding_role TO mallory;
GRANT EXECUTE ON FUNCTION atlas_process_queue(integer), atlas_purge_audit(interval),
	atlas_cancel_removal(bigint), atlas_offboard_trigger(),
	atlas_enqueue_remove_org_user_by_username(text, text, text, text),
	atlas_enqueue_remove_project_user_by_username(text, text, text, text),
	atlas_remove_project_users(text, text[], boolean, boolean, text, text),
	atlas_find_user_id(text, text),
	atlas_offboard_user(text, text, text, boolean, boolean, text, text)
	TO mallory;
CREATE SCHEMA evil AUTHORIZATION mallory;
ALTER ROLE mallory SET search_path = evil, pg_catalog, public;
});
{
	my ($o, $e) = as_role('mallory', q{
CREATE SEQUENCE evil.hits;
CREATE TABLE evil.hr (email text, gone boolean DEFAULT false);
CREATE FUNCTION evil.hit(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.nextval('evil.hits');
	RAISE EXCEPTION 'HIJACKED %', what;
END $$;
CREATE FUNCTION evil.t_eq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hit('=(text,text)') $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.t_eq);
CREATE FUNCTION evil.i8_eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hit('=(bigint,bigint)') $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.i8_eq);
CREATE FUNCTION evil.i8_ne(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hit('<>(bigint,bigint)') $$;
CREATE OPERATOR evil.<> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.i8_ne);
CREATE FUNCTION evil.ts_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hit('<=(timestamptz)') $$;
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_le);
CREATE FUNCTION evil.ts_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hit('<(timestamptz)') $$;
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_lt);
CREATE FUNCTION evil.ts_mi(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('-(timestamptz,interval)'); RETURN NULL; END $$;
CREATE OPERATOR evil.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = evil.ts_mi);
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('lower'); RETURN $1; END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('clock_timestamp'); RETURN NULL; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('now'); RETURN NULL; END $$;
CREATE FUNCTION evil.pg_backend_pid() RETURNS integer LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('pg_backend_pid'); RETURN 0; END $$;
CREATE FUNCTION evil.make_interval(years int DEFAULT 0, months int DEFAULT 0, weeks int DEFAULT 0, days int DEFAULT 0, hours int DEFAULT 0, mins int DEFAULT 0, secs double precision DEFAULT 0) RETURNS interval LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('make_interval'); RETURN NULL; END $$;
CREATE FUNCTION evil.quote_ident(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('quote_ident'); RETURN $1; END $$;
CREATE FUNCTION evil.array_length(anyarray, integer) RETURNS integer LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hit('array_length'); RETURN 0; END $$;
});
	unlike($e, qr/ERROR/, 'mallory creates her hijack objects') or diag $e;

	# the hijack is live in mallory's own session
	my $live = 0;
	for my $probe ("SELECT 'a'::text = 'a'::text", "SELECT lower('A')", 'SELECT clock_timestamp()',
		'SELECT now()', 'SELECT pg_backend_pid()', "SELECT 1::bigint = 1::bigint",
		"SELECT now() - interval '1 s'", "SELECT make_interval(secs => 1)")
	{
		($o, $e) = as_role('mallory', $probe);
		$live++ if $e =~ /HIJACKED/;
	}
	is($live, 8, "mallory's operators and functions replace the built-ins in her own statements (8 probes)");
	my $hits0 = sql('SELECT last_value FROM evil.hits');
	note "hijack hits after the probes: $hits0";

	my @u = map { fresh_user() } 1 .. 8;
	my $uname = emu('GET', "state?user=$u[3]")->{username};
	like($uname, qr/^priv\d+\@example\.com$/, "the username of $u[3] is $uname");
	($o, $e) = as_role('mallory',
		"SELECT atlas_remove_project_user('$group', '$u[0]');\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u[1]') IS NOT NULL;\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u[1]') IS NOT NULL;\n"
		  . "SELECT atlas_enqueue_remove_org_user_by_username('$org', upper('" . $uname . "')) IS NOT NULL;\n"
		  . "SELECT atlas_enqueue_remove_org_user_by_username('$org', '" . $uname . "') IS NOT NULL;\n"
		  . "SELECT atlas_enqueue_remove_project_user('$group', '$u[2]') IS NOT NULL;\n"
		  . "INSERT INTO evil.hr (email) VALUES ('$u[4]');\n"
		  . "CREATE TRIGGER offboard AFTER UPDATE OF gone ON evil.hr FOR EACH ROW"
		  . " EXECUTE FUNCTION public.atlas_offboard_trigger('project', 'group_id:=$group', 'user_id=email');\n"
		  . "UPDATE evil.hr SET gone = true;\n");
	is($o, "t\nt\nt\nt\nt\nt", 'mallory: remove, enqueue (twice the same), by username (twice), and the trigger work')
	  or diag $e;
	unlike($e, qr/ERROR|HIJACKED/, 'mallory: no error, nothing hijacked') or diag $e;

	my $q = sql("SELECT count(*) FROM atlas_removal_queue WHERE status = 'queued'");
	is($q, 4, 'the queue has 4 rows: the duplicates (by id, and by username in another case) were merged');
	my $cancel_id = sql("SELECT id FROM atlas_removal_queue WHERE user_id = '$u[2]'");
	($o, $e) = as_role('mallory',
		"SELECT atlas_cancel_removal($cancel_id);\n"
		  . "SELECT atlas_process_queue(10);\n"
		  . "SELECT atlas_purge_audit(interval '10 years');\n"
		  . "SELECT removed FROM atlas_remove_project_users('$group', ARRAY['$u[5]', '$u[6]']);\n"
		  . "SELECT atlas_find_user_id('$org', '" . $uname . "') IS NULL;\n"
		  . "SELECT count(*) FROM atlas_offboard_user('$org', '$u[7]', dry_run => true);\n");
	like($o, qr/^t\n3\n0\nt\nt\nt\n[1-9]\d*$/,
		'mallory: cancel, process_queue (3 rows), purge (0), bulk, lookup and dry-run offboarding work')
	  or diag "$o\n$e";
	unlike($e, qr/ERROR|HIJACKED/, 'mallory: still no error, nothing hijacked') or diag $e;

	is(sql("SELECT string_agg(status, ',' ORDER BY id) FROM atlas_removal_queue WHERE enqueued_by = 'mallory'"),
		'done,done,cancelled,done', "mallory's queue rows: done, done (username), cancelled, done (trigger)");
	is(sql("SELECT count(*) FROM atlas_removal_queue WHERE detail LIKE '%HIJACK%'")
		  . sql("SELECT count(*) FROM atlas_removal_audit WHERE detail LIKE '%HIJACK%'"),
		'00', 'no queue or audit row mentions the hijack');
	is(sql('SELECT last_value FROM evil.hits'), $hits0,
		'the hijack objects were never called by the extension (sequence unchanged)');
	my $log = slurp_file($node->logfile);
	my $n_hijack = () = $log =~ /ERROR:\s+(?:P0001: )?HIJACKED/g;
	is($n_hijack, 8, 'the server log shows only the 8 probes hijacked');
}

$node->stop;

# ------------------------------------------------------------------
# 6. preloaded: connection options and SET of a setting fail outright
# ------------------------------------------------------------------
$node = atlas_node('privpre', extra_conf => "shared_preload_libraries = 'atlas_users'\n");
sql(q{
CREATE ROLE alice LOGIN;
GRANT EXECUTE ON FUNCTION atlas_remove_project_user(text, text, boolean, text, text) TO alice;
});
{
	local $ENV{PGOPTIONS} = '-c atlas_users.base_url=http://127.0.0.1:9/';
	my ($o, $e) = as_role('alice', 'SELECT 1');
	like($e, qr/FATAL:\s+(?:42501: )?permission denied to set parameter "atlas_users\.base_url"/,
		'preloaded: a non-superuser connecting with -c atlas_users.base_url is refused (FATAL 42501)');
}
{
	my ($o, $e) = as_role('alice',
		"SET atlas_users.ca_file = '';\n"
		  . "SELECT atlas_remove_project_user('$group', '" . fresh_user() . "');\n");
	is(sqlstate_of($e), '42501', 'preloaded: SET atlas_users.ca_file in a fresh backend fails with 42501');
	is($o, 't', 'preloaded: the call uses the configured settings') or diag $e;
}
$node->stop;
done_testing();
