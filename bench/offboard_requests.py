#!/usr/bin/env python3
"""bench/offboard_requests.py: the offboarding requests of issue 22.

Run by bench/run after listings.py, against the same emulator and cluster (the
environment of test/lib.sh).  On an emulated organization of
BENCH_OFFBOARD_PROJECTS (200) projects, as many teams and BENCH_OFFBOARD_USERS
(1,000) users (the emulator's scale seed), offboards one person (a member of one
project and one team, which has a role in that project):
  - a dry run of scope 'org': the requests, by route;
  - a real run of scope 'org': the requests, by route (the removal included),
and the teams listings of projects each made (a real 'org' run needs none: its
rows of access through teams would only say dropped_with_org).
Prints a table and appends it to BENCH_OUT (bench/results-latest.txt).
Measured on the same organization (requests, of which 8 digest 401s):
before issue 22, a dry run 412 and a real run 413, each with 200 teams
listings; after, a dry run 414 (it shows the access through teams) and a real
run 215, with no teams listing (each with 2 reads for the names the plan
shows: the organization's, and its teams' listing).
"""

from bench import append_table, emu, env, log   # bench.py, beside this file
from listings import psql         # listings.py, beside this file


PROJECTS = int(env("BENCH_OFFBOARD_PROJECTS", "200"))
USERS = int(env("BENCH_OFFBOARD_USERS", "1000"))
TEAMS_ROUTE = "GET /api/atlas/v2/groups/{groupId}/teams"


def offboard(org, username, dry_run):
    """Offboard username from org; returns (rows, requests, digest challenges,
    teams listings, answered requests by route)."""
    emu("POST", "reset_counters")
    rows = psql("SELECT count(*) FROM atlas_offboard_user('%s', '%s', 'org', %s);\n"
                % (org, username, "true" if dry_run else "false"))
    c = emu("GET", "counters")
    by_route = {r: sum(n for st, n in s.items() if st != "401")
                for r, s in c.get("requests_by_route", {}).items()}
    return (int(rows[-1]), c["requests_total"], c.get("digest_challenges", 0),
            by_route.get(TEAMS_ROUTE, 0), {r: n for r, n in by_route.items() if n})


def main():
    emu("POST", "reset")
    emu("POST", "config", {"rate_limits": {"enabled": False}})
    psql("CREATE EXTENSION IF NOT EXISTS atlas_users;\n")
    log("offboarding requests: an organization of %d projects, %d teams, %d users"
        % (PROJECTS, PROJECTS, USERS))
    sc = emu("POST", "scale", {"users": USERS, "projects": PROJECTS, "teams": PROJECTS,
                               "prefix": "offb"})
    org = sc["orgId"]
    who = "offb000007@example.com"
    dry = offboard(org, who, True)
    real = offboard(org, who, False)
    table = [
        "",
        "offboarding requests (issue 22): one person in an organization of %d projects" % PROJECTS,
        "| figure | rows | requests | of which digest 401s | teams listings of projects |",
        "|---|---|---|---|---|",
        "| atlas_offboard_user scope 'org', dry run | %d | %d | %d | %d |" % dry[:4],
        "| atlas_offboard_user scope 'org', real run | %d | %d | %d | %d |" % real[:4],
    ]
    for name, fig in (("dry run", dry), ("real run", real)):
        table.append("| %s, answered, by route: %s | | | | |"
                     % (name, ", ".join("%s %d" % (r, n) for r, n in sorted(fig[4].items()))))
    append_table(table)


if __name__ == "__main__":
    main()
