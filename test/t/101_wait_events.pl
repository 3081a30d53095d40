# 101_wait_events.pl: a backend that waits on Atlas says so in
# pg_stat_activity: wait_event_type 'Extension' (and, from PostgreSQL 17
# on, the named events AtlasRequest, AtlasRateLimit and AtlasToken).
#
# - waiting for an answer that hangs;
# - waiting out a 429's Retry-After;
# - waiting while another backend fetches the service-account token.
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
my $node = atlas_node('waits',
	auth_method => 'service_account',
	extra_conf => "shared_preload_libraries = 'atlas_users'\n");
my $v17 = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000;
my $ids = emu_users(count => 4, orgId => $org, groupIds => [$group], prefix => 'wait');

# A session and its backend's pid.
sub session
{
	my $s = psql_session($node);
	my ($pid) = session_run($s, 'SELECT pg_backend_pid()');
	return ($s, $pid);
}

# Wait until the backend $pid reports a wait of type Extension, named $name
# on 17 and later; true if it did within 10 s.
sub waits_on
{
	my ($pid, $name) = @_;
	my $cond = "wait_event_type = 'Extension'" . ($v17 ? " AND wait_event = '$name'" : '');
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND $cond");
}

sub remove_sql { return "SELECT atlas_remove_project_user('$group', '$_[0]')"; }

# a token first, so that the next waits are the removals'
$node->safe_psql('postgres', remove_sql($ids->[0]));

# 1. an answer that hangs
emu_fault({ kind => 'hang', seconds => 2, count => 1, match => "DELETE /groups/$group/users/" });
my ($s, $pid) = session();
my $m = session_send($s, remove_sql($ids->[1]));
ok(waits_on($pid, 'AtlasRequest'), 'waiting for a hanging answer: wait_event_type Extension');
ok(defined session_wait($s, 'out', qr/^\Q$m\E$/m, 30), 'the removal ends once the answer comes');

# 2. a 429 whose Retry-After is waited out
emu_fault({ kind => 'status', status => 429, retry_after => 2, count => 1,
	match => "DELETE /groups/$group/users/" });
$m = session_send($s, remove_sql($ids->[2]));
ok(waits_on($pid, 'AtlasRateLimit'), "waiting out a 429's Retry-After: Extension");
ok(defined session_wait($s, 'out', qr/^\Q$m\E$/m, 30), 'the removal ends after the wait');

# 3. another backend fetches the token
$node->safe_psql('postgres', 'SELECT atlas_forget_tokens()');
emu_fault({ kind => 'hang', seconds => 2, count => 1, auth => JSON::PP::true, match => 'oauth' });
my ($fetcher, $fpid) = session();
my $fm = session_send($fetcher, remove_sql($ids->[3]));
ok(waits_on($fpid, 'AtlasRequest'), 'the backend fetching the token waits for its answer');
$m = session_send($s, "SELECT atlas_remove_project_user('$group', '$ids->[3]', missing_ok => true)");
ok(waits_on($pid, 'AtlasToken'), 'another backend waits for that token: Extension');
ok(defined session_wait($fetcher, 'out', qr/^\Q$fm\E$/m, 30)
	  && defined session_wait($s, 'out', qr/^\Q$m\E$/m, 30),
	'both end once the token comes');
session_close($_) for ($s, $fetcher);

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension'"
		  . " AND backend_type = 'client backend'"),
	'0', 'no backend waits once the work is done');
$node->stop;
done_testing();
