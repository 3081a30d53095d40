# 102_health.pl: atlas_health(), one row for monitoring.
#
# - Not preloaded: no worker, so worker_running is false and queued rows
#   stay queued; a removal Atlas refuses is failed within 24 h; the token
#   of the service account is valid until a time, never shown.
# - Preloaded: the worker runs, and a 429 is the last 429.
# - A role with EXECUTE on atlas_health() alone may call it.
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
my $ids = emu_users(count => 4, orgId => $org, groupIds => [$group], prefix => 'health');

my $node = atlas_node('health', auth_method => 'service_account');
sub sql { return $node->safe_psql('postgres', $_[0]); }

is(sql('SELECT worker_running, queued, failed_24h, last_success IS NULL FROM atlas_health()'),
	'f|0|0|t', 'not preloaded: no worker, nothing queued or failed');
sql("SELECT atlas_enqueue_remove_project_user('$group', '$_')") for @$ids[ 0 .. 2 ];
is(sql("SELECT queued, held, awaiting_approval, oldest_queued_age > '0' FROM atlas_health()"),
	'3|0|0|t', 'three queued rows, with their age');

emu_fault({ kind => 'status', status => 400, count => 1, match => "DELETE /groups/$group/users/" });
sql('SELECT atlas_process_queue(1)');
is(sql('SELECT queued, failed_24h, last_failure IS NOT NULL FROM atlas_health()'),
	'2|1|t', 'a removal Atlas refused is failed within 24 h');
sql('SELECT atlas_process_queue(10)');
is(sql('SELECT queued, failed_24h, last_success IS NOT NULL FROM atlas_health()'),
	'0|1|t', 'the others are done: the last success');

# not preloaded, the token cache is the backend's: read, then look, in one session
my $tokens = sql("SELECT count(*) > 0 FROM atlas_org_users('$org');"
	  . " SELECT t->>'state', (t->>'valid_until')::timestamptz > now(), t::text"
	  . " FROM atlas_health(), jsonb_array_elements(tokens) t");
like($tokens, qr/^t\nvalid\|t\|/, "the settings' token is valid until a time");
unlike($tokens, qr/token"|secret|Bearer/i, 'and the token itself is not shown');

sql('CREATE ROLE monitor LOGIN; GRANT EXECUTE ON FUNCTION atlas_health() TO monitor');
my ($rc, $out, $err) = psql_as($node, 'monitor', 'SELECT queued, failed_24h FROM atlas_health()');
is($out, '0|1', 'a role with EXECUTE on atlas_health() alone may call it') or diag $err;
$node->stop;

# preloaded: the worker runs; a 429 is seen by every session
my $pre = atlas_node('health_pre',
	extra_conf => "shared_preload_libraries = 'atlas_users'\natlas_users.retry_base_ms = 50\n");
ok($pre->poll_query_until('postgres', 'SELECT worker_running FROM atlas_health()'),
	'preloaded: the worker runs');
is($pre->safe_psql('postgres', 'SELECT last_429 IS NULL, tokens->0->>\'state\' FROM atlas_health()'),
	't|digest', 'no 429 yet; digest keys have no token');
emu_fault({ kind => 'status', status => 429, retry_after => 0, count => 1,
	match => "DELETE /groups/$group/users/" });
$pre->safe_psql('postgres', "SELECT atlas_remove_project_user('$group', '$ids->[3]')");
is($pre->safe_psql('postgres', "SELECT last_429 > now() - interval '1 minute' FROM atlas_health()"),
	't', 'the last 429, from another session');
$pre->stop;
done_testing();
