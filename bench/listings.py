#!/usr/bin/env python3
"""bench/listings.py: the listing and reconciliation figures of issue 13.

Run by bench/run after bench.py, against the same emulator and cluster (the
environment of test/lib.sh).  Measures, on an emulated organization of
BENCH_LIST_USERS users (20,000), 200 projects and 300 teams:
  - atlas_org_users with BENCH_LIST_LATENCY_MS (100) of latency added to every
    answer: pages read, time, and time / (pages x latency) (target <= 1.15),
    and time / the emulator's own time serving the pages (latency plus its
    own work, from its request log: what is left is ours); the backend's
    peak memory growth (VmHWM, target < 20 MiB);
  - atlas_reconcile_org removing BENCH_RECONCILE_N (2,000) of them under a
    rate limit of 100 requests a second (capacity 100, refilled every
    second): time, answers 429 and the most in one refill period (target <= 1),
    and the share of the bucket's allowance used;
  - atlas_offboard_user of one person with the same latency: requests and time.
Prints a table and appends it to BENCH_OUT (bench/results-latest.txt).
"""
import math
import subprocess
import sys

from bench import append_table, emu, env, log   # bench.py, beside this file


QUICK = env("BENCH_QUICK", "0") not in ("0", "")
USERS = int(env("BENCH_LIST_USERS", "20000"))
LAT_MS = float(env("BENCH_LIST_LATENCY_MS", "100"))
RECONCILE_N = int(env("BENCH_RECONCILE_N", "500" if QUICK else "2000"))


def psql(sql):
    """Run sql in one psql session; returns the stdout lines."""
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres"],
                       input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode("utf-8", "replace")[-4000:])
        raise SystemExit("bench/listings: psql failed")
    return p.stdout.decode("utf-8", "replace").splitlines()


HWM = "SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\\s+(\\d+)'))[1];\n"


def route_count(counters, route, status):
    return counters.get("requests_by_route", {}).get(route, {}).get(status, 0)


def listing(org):
    emu("POST", "config", {"latency_ms": LAT_MS, "rate_limits": {"enabled": False}})
    emu("POST", "reset_counters")
    lines = psql("SELECT count(*) FROM atlas_org_teams('%s') \\gset\n" % org   # load, connect
                 + HWM
                 + "SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset\n"
                 "SELECT count(*) AS n FROM atlas_org_users('%s') \\gset\n" % org
                 + "SELECT extract(epoch FROM clock_timestamp()) - :t0, :n;\n"
                 + HWM)
    hwm0, timing, hwm1 = lines
    secs, n = timing.split("|")
    c = emu("GET", "counters")
    in_flight = c.get("max_concurrent_requests", 0)
    pages = route_count(c, "GET /api/atlas/v2/orgs/{orgId}/users", "200")
    # the emulator's own time per page (the latency and its own work)
    served = sum(r["duration_ms"] for r in emu("GET", "requests?limit=50000")["requests"]
                 if r["status"] == "200" and r["route"].endswith("/users")) / 1000.0
    return int(n), pages, float(secs), (int(hwm1) - int(hwm0)) / 1024.0, served, in_flight


def offboard(org, username):
    emu("POST", "reset_counters")
    t = psql("SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset\n"
             "SELECT count(*) AS n FROM atlas_offboard_user('%s', '%s', dry_run => true) \\gset\n"
             % (org, username)
             + "SELECT extract(epoch FROM clock_timestamp()) - :t0, :n;\n")
    secs, rows = t[-1].split("|")
    return int(rows), emu("GET", "counters")["requests_total"], float(secs)


def reconcile(org):
    emu("POST", "config", {"latency_ms": 0, "rate_limits": {
        "enabled": True, "sets": {"org_users": {"capacity": 100, "refill_rate": 100,
                                                "refill_seconds": 1}}}})
    psql("SELECT atlas_reset_rate_limits();\n"
         "DROP TABLE IF EXISTS bench_keep;\n"
         "CREATE TABLE bench_keep AS SELECT username FROM atlas_org_users('%s') "
         "WHERE NOT (username ~ '^scale0[0-9]{5}@' AND substr(username, 6, 6)::int BETWEEN 1 AND %d);\n"
         % (org, RECONCILE_N))
    emu("POST", "reset_counters")
    t = psql("SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset\n"
             "SELECT count(*) FILTER (WHERE outcome = 'removed') AS n FROM atlas_reconcile_org('%s', "
             "ARRAY(SELECT username FROM bench_keep), dry_run => false, max_removals => %d) \\gset\n"
             % (org, RECONCILE_N)
             + "SELECT extract(epoch FROM clock_timestamp()) - :t0, :n;\n")
    secs, removed = t[-1].split("|")
    log_ = emu("GET", "requests?limit=50000")["requests"]
    per = {}
    first = None
    requests = 0
    for r in log_:
        if "/orgs/{orgId}/users" not in (r.get("route") or "") or r["status"] == "401":
            continue
        requests += 1
        first = first if first is not None else r["time"]
        if r["status"] == "429":
            k = int(r["time"] - first)
            per[k] = per.get(k, 0) + 1
    emu("POST", "config", {"rate_limits": {"enabled": False}})
    secs = float(secs)
    # the bucket allows 100 at once and 100 a second after
    allowance = 100 + 100 * math.floor(secs)
    return int(removed), secs, sum(per.values()), max(per.values() or [0]), requests / allowance


def main():
    emu("POST", "reset")
    psql("CREATE EXTENSION IF NOT EXISTS atlas_users;\n")
    log("an emulated organization of %d users, 200 projects, 300 teams" % USERS)
    sc = emu("POST", "scale", {"users": USERS, "projects": 200, "teams": 300})
    org = sc["orgId"]
    log("atlas_org_users with %g ms of latency" % LAT_MS)
    n, pages, secs, grew, served, in_flight = listing(org)
    concurrency = int(psql("SHOW atlas_users.max_concurrency;\n")[0])
    floor_s = pages * LAT_MS / 1000.0
    log("atlas_offboard_user (dry run) of one person, %g ms of latency" % LAT_MS)
    rows, reqs, off_s = offboard(org, "scale000007@example.com")
    log("atlas_reconcile_org removing %d under 100 requests a second" % RECONCILE_N)
    removed, rsecs, n429, worst, share = reconcile(org)
    emu("POST", "config", {"latency_ms": 0})
    table = [
        "",
        "listings and reconciliation (issue 13): %d users, 200 projects, 300 teams" % USERS,
        "| figure | measured | target |",
        "|---|---|---|",
        "| atlas_org_users: rows, pages of 500 | %d rows, %d pages | %d pages |"
        % (n, pages, math.ceil(USERS / 500)),
        "| atlas_org_users at %g ms latency, pages side by side: time, / (pages x latency) | %.2f s, %.3f | <= 0.35 |"
        % (LAT_MS, secs, secs / floor_s if floor_s else 0),
        "| atlas_org_users: most pages in flight at once (the emulator's peak) | %d | <= max_concurrency (%d) |"
        % (in_flight, concurrency),
        "| atlas_org_users: time / the emulator's own time serving the pages (%.2f s, summed) | %.3f | - |"
        % (served, secs / served if served else 0),
        "| atlas_org_users: backend peak memory growth | %.1f MiB | < 20 MiB |" % grew,
        "| atlas_offboard_user dry run at %g ms: rows, requests, time | %d, %d, %.2f s | - |"
        % (LAT_MS, rows, reqs, off_s),
        "| atlas_reconcile_org: %d removals at 100/s: time | %d removed, %.1f s | - |"
        % (RECONCILE_N, removed, rsecs),
        "| atlas_reconcile_org: answers 429, most in one refill period | %d, %d | <= 1 per refill |"
        % (n429, worst),
        "| atlas_reconcile_org: requests / the bucket's allowance | %.2f | >= 0.9 |" % share,
    ]
    append_table(table)


if __name__ == "__main__":
    main()
