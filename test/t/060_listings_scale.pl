# 060_listings_scale.pl: listings at scale and against a hostile server.
#
# An emulated organization of 20,000 users, 200 projects and 300 teams
# (POST /__emulator/scale):
#   - atlas_org_users reads exactly 40 pages of 500 and returns every user,
#     and the backend's peak memory grows by less than 10 MiB;
#   - atlas_reconcile_org removes 2,000 of them under Atlas's rate limit (a
#     bucket of 100 refilling 100 every second), with at most one 429 per
#     refill period, and its blast-radius guard refuses the same plan with
#     the default max_removals, before any removal.
# A hostile server that links a next page forever (endless_pages):
#   - pages of 1 MiB (thousands of entries, more than itemsPerPage): refused
#     at the first page with 08P01, before it is parsed;
#   - 1,000 pages of 500 entries: the listing stops at atlas_users.max_pages
#     with SQLSTATE 54000, and the backend's peak memory grows by less than
#     50 MiB;
#   - a slow endless listing (one page a second) holds only its own queue
#     row: a plain removal queued after it finishes within seconds, and the
#     username row fails at atlas_users.worker_lookup_timeout.
# Times are noted, not asserted (bench/run measures them).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use POSIX qw(ceil floor);
use Time::HiRes qw(time sleep);
use lib 'perl';
use AtlasTest;

emu_reset();
emu_config(rate_limits => { enabled => JSON::PP::false });
my $node = atlas_node(
	'scale',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n"
	  . "atlas_users.worker_lookup_timeout = '5s'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $MiB = 1024;    # proc_kb gives kB

# ------------------------------------------------------------------
# 1. 20,000 users: 40 pages, memory
# ------------------------------------------------------------------
my $sc = emu('POST', 'scale', { users => 20000, projects => 200, teams => 300 });
my $org = $sc->{orgId};
note "scale: an organization of $sc->{users} users in $sc->{seconds} s";

my $s = psql_session($node);
my ($pid) = session_run($s, 'SELECT pg_backend_pid()');
session_run($s, "SELECT count(*) FROM atlas_org_teams('$org')");    # load, connect
# Under AddressSanitizer (the sanitizer pass of test/check) freed memory
# sits in ASan's quarantine, so peak memory says nothing about ours there.
my $asan = do { open my $m, '<', "/proc/$pid/maps"; local $/; my $t = <$m> // ''; $t =~ /libasan/ };
sub memory_below
{
	my ($grew_kb, $limit_kb, $what) = @_;
  SKIP:
	{
		skip "$what: not measurable under AddressSanitizer (its quarantine keeps freed memory)", 1 if $asan;
		cmp_ok($grew_kb, '<', $limit_kb, $what);
	}
}

my $hwm0 = proc_kb($pid, 'VmHWM');
emu_reset_counters();
my $t0 = time;
my ($n) = session_run($s, "SELECT count(*) FROM atlas_org_users('$org')", 300);
my $dt = time - $t0;
my $pages = emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/users', 200);
is($n, 20000, 'atlas_org_users: every one of the 20,000 users');
is($pages, ceil(20000 / 500), 'atlas_org_users: exactly 40 pages of 500');
my $hwm1 = proc_kb($pid, 'VmHWM');
note sprintf('atlas_org_users: %d rows in %.2f s; backend VmHWM %d -> %d kB', $n, $dt, $hwm0, $hwm1);
memory_below($hwm1 - $hwm0, 10 * $MiB, 'atlas_org_users: the backend peak memory grew by less than 10 MiB');

# project 0: users 200, 400, ..., 19,800 (i mod 200 = 0) and the owner
my ($direct) = session_run($s,
	"SELECT count(*) FROM atlas_project_users('$sc->{projectIds}[0]', false, false) WHERE via = 'direct'");
is($direct, 99 + 1, 'atlas_project_users: project 0 has its 99 users and the owner, directly');

# ------------------------------------------------------------------
# 2. a reconciliation that removes 2,000 of them, paced
# ------------------------------------------------------------------
# keep everyone but users 1 .. 2000 (usernames scale000001 ...)
sql(    "CREATE TABLE keep AS SELECT username FROM atlas_org_users('$org')"
	  . " WHERE NOT (username ~ '^scale0[0-9]{5}\@' AND substr(username, 6, 6)::int BETWEEN 1 AND 2000)");
is(sql('SELECT count(*) FROM keep'), 18000, 'reconcile: 18,000 usernames kept');

emu_reset_counters();
my ($rc, $out, $err) = psql_as($node, 'postgres',
	"SELECT count(*) FROM atlas_reconcile_org('$org', ARRAY(SELECT username FROM keep), dry_run => false)");
like($err, qr/ERROR:\s+55000:.*blast-radius guard/, 'reconcile: the default max_removals (10) refuses 2,000 removals');
like($err, qr/It would remove 2000 people, more than max_removals \(10\)/, 'reconcile: the error says how many');
is(emu_counter('removal_requests'), 0, 'reconcile: refused before any removal');

emu_config(rate_limits => { enabled => JSON::PP::true,
	sets => { org_users => { capacity => 100, refill_rate => 100, refill_seconds => 1 } } });
sql('SELECT atlas_reset_rate_limits()');
emu_reset_counters();
$t0 = time;
my $res = sql(
	"SELECT outcome || ':' || count(*) FROM atlas_reconcile_org('$org', ARRAY(SELECT username FROM keep),"
	  . " dry_run => false, max_removals => 2000) GROUP BY outcome ORDER BY 1");
$dt = time - $t0;
is($res, 'removed:2000', 'reconcile: 2,000 rows, every one removed');
my $c = emu_counters();
my $removed = emu_route_count($c, 'DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}', 204);
is($removed, 2000, 'reconcile: 2,000 DELETE answered 204');
is(sql("SELECT count(*) FROM atlas_org_users('$org')"), 18000, 'reconcile: 18,000 users are left');

# 429s per refill period (1 s), from the request log
my $log = emu('GET', 'requests?limit=50000')->{requests};
my %per_period;
my $first;
for my $r (@$log)
{
	next unless ($r->{route} // '') =~ m{/orgs/\{orgId\}/users};
	$first //= $r->{time};
	$per_period{ floor($r->{time} - $first) }++ if $r->{status} == 429;
}
my $n429 = 0;
$n429 += $_ for values %per_period;
my $worst = 0;
for (values %per_period) { $worst = $_ if $_ > $worst; }
note sprintf('reconcile: 2,000 removals in %.1f s under a bucket of 100 a second; %d answers 429 in all, at most %d in one refill period',
	$dt, $n429, $worst);
cmp_ok($worst, '<=', 1, 'reconcile: at most 1 answer 429 per refill period');
is(sql("SELECT count(*) FROM atlas_removal_audit WHERE operation = 'remove_org_user' AND org_id = '$org'"),
	2000, 'reconcile: 2,000 audit rows');
emu_config(rate_limits => { enabled => JSON::PP::false });

# ------------------------------------------------------------------
# 3. a hostile server: endless pages (of 1 MiB: more entries than asked)
# ------------------------------------------------------------------
# a page of 1 MiB holds thousands of entries, more than the itemsPerPage
# asked: refused at the first page, before it is parsed (issue 17)
emu_config(endless_pages => { enabled => JSON::PP::true, page_bytes => 1024 * 1024,
	match => 'GET /api/atlas/v2/orgs/{orgId}/users' });
emu_reset_counters();
my (undef, $e) = session_run($s, "SELECT atlas_find_user_id('$org', 'nobody\@example.com')", 600);
like($e, qr/ERROR:\s+08P01:\s+unexpected answer from Atlas: a page of more than 500 entries/,
	'endless 1 MiB pages: the first page holds more entries than asked: 08P01');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/users', 200), 1,
	'endless 1 MiB pages: 1 page was read');

# pages of itemsPerPage entries, forever: stopped at max_pages
emu_config(endless_pages => { enabled => JSON::PP::true, page_bytes => 0,
	match => 'GET /api/atlas/v2/orgs/{orgId}/users' });
emu_reset_counters();
$hwm0 = proc_kb($pid, 'VmHWM');
$t0 = time;
(undef, $e) = session_run($s, "SELECT atlas_find_user_id('$org', 'nobody\@example.com')", 600);
$dt = time - $t0;
$hwm1 = proc_kb($pid, 'VmHWM');
like($e, qr/ERROR:\s+54000:\s+Atlas list has more than 1000 pages/, 'endless: stopped at max_pages with 54000');
is(emu_route_count(emu_counters(), 'GET /api/atlas/v2/orgs/{orgId}/users', 200), 1000,
	'endless: 1,000 pages were read');
note sprintf('endless: 1,000 pages of 500 entries in %.1f s; backend VmHWM %d -> %d kB', $dt, $hwm0, $hwm1);
memory_below($hwm1 - $hwm0, 50 * $MiB, 'endless: the backend peak memory grew by less than 50 MiB');

# a time bound too
session_run($s, "SET atlas_users.listing_timeout = '2s'");
emu_config(endless_pages => { enabled => JSON::PP::true, page_bytes => 0, delay_ms => 200,
	match => 'GET /api/atlas/v2/orgs/{orgId}/users' });
$t0 = time;
(undef, $e) = session_run($s, "SELECT count(*) FROM atlas_org_users('$org')", 60);
$dt = time - $t0;
like($e, qr/ERROR:\s+54000:\s+reading an Atlas list took longer than 2000 ms/, 'slow endless: stopped at listing_timeout');
cmp_ok($dt, '<', 30, 'slow endless: the statement ended');
note sprintf('slow endless: ended after %.1f s', $dt);
session_close($s);

# ------------------------------------------------------------------
# 4. the worker: a slow endless lookup holds only its own row
# ------------------------------------------------------------------
emu_config(endless_pages => { enabled => JSON::PP::true, page_bytes => 0, delay_ms => 1000,
	match => 'GET /api/atlas/v2/orgs/{orgId}/users' });
my $victim = $sc->{lastUserId};
my $slow = sql("SELECT atlas_enqueue_remove_org_user_by_username('$org', 'nobody\@example.com')");
$node->poll_query_until('postgres', "SELECT status = 'running' FROM atlas_removal_queue WHERE id = $slow")
  or diag 'the username row never ran';
$t0 = time;
my $plain = sql("SELECT atlas_enqueue_remove_project_user('$sc->{projectIds}[0]', '$sc->{firstUserId}')");
$node->poll_query_until('postgres', "SELECT status <> 'queued' AND status <> 'running' FROM atlas_removal_queue WHERE id = $plain")
  or diag 'the plain row never finished';
my $plain_dt = time - $t0;
is(sql("SELECT status FROM atlas_removal_queue WHERE id = $plain"), 'done', 'worker: the plain removal is done');
is(sql("SELECT status FROM atlas_removal_queue WHERE id = $slow"), 'running',
	'worker: while the slow username lookup still runs');
note sprintf('worker: the plain removal finished %.2f s after it was queued', $plain_dt);
cmp_ok($plain_dt, '<', 5, 'worker: within seconds');
$node->poll_query_until('postgres', "SELECT status NOT IN ('queued', 'running') FROM atlas_removal_queue WHERE id = $slow")
  or diag 'the username row never ended';
is(sql("SELECT status FROM atlas_removal_queue WHERE id = $slow"), 'failed', 'worker: the slow lookup fails at its deadline');
like(sql("SELECT detail FROM atlas_removal_queue WHERE id = $slow"), qr/took longer than 5000 ms/,
	'worker: its detail names the deadline');
emu_config(endless_pages => { enabled => JSON::PP::false });

$node->stop;
done_testing();
