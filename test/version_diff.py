#!/usr/bin/env python3
"""test/version_diff.py DIR TEST...: which failed pg_regress tests differ
from expected/ only by what another PostgreSQL major or libcurl prints.

expected/*.out is written on PostgreSQL 15 with Debian 12's libcurl.
test/matrix runs the same suite on 17 and 18, where PostgreSQL and libcurl
word a few messages differently and PostgreSQL 17 lists more objects; this
compares DIR/expected/TEST.out with DIR/results/TEST.out after taking out
exactly those differences (NORMALIZE below, each with why) and the column
widths they change.  Prints one line per test ("same TEST" or "differs
TEST" followed by a unified diff of the normalized texts) and, last,
"version_diff: N same, M differ".
"""
import difflib
import re
import sys

NORMALIZE = [
    # libcurl 8.x: "Could not connect to server" (7.88: "Couldn't")
    (re.compile(r"Couldn't connect to server"), "Could not connect to server"),
    # libcurl 8.1x: "Failed to connect to 127.0.0.1:PORT after" (7.88: "... port 1 after")
    (re.compile(r"Failed to connect to (\S+?)(?: port \d+|:\w+) after"), r"Failed to connect to \1:PORT after"),
    # libcurl 8.1x: "SSL certificate OpenSSL verify result: X (20)" (7.88:
    # "SSL certificate problem: X")
    (re.compile(r"SSL certificate (?:problem|OpenSSL verify result): ([^\n(]*?)(?: \(\d+\))?$", re.M),
     r"SSL certificate: \1"),
    # libcurl 8.1x: "error adding trust anchors from file" (7.88: "error
    # setting certificate file")
    (re.compile(r"error adding trust anchors from file:"), "error setting certificate file:"),
    # PostgreSQL 16 reworded the GUC read-privilege error
    (re.compile(r"must be superuser or have privileges of pg_read_all_settings to examine"),
     "permission denied to examine"),
    # PostgreSQL 16 prints the unit in a GUC's valid range: (1000 ms .. 86400000 ms)
    (re.compile(r"\((-?\d+)(?: [a-zA-Z]+)? \.\. (-?\d+)(?: [a-zA-Z]+)?\)"), r"(\1 .. \2)"),
    # PostgreSQL 17's MAINTAIN privilege (m) in every owner's ACL
    (re.compile(r"=arwdDxtm/"), "=arwdDxt/"),
    # PostgreSQL 17 lists the row types of an extension's tables and views
    # among its members
    (re.compile(r"^ type atlas_\w+(\[\])?\s*$\n?", re.M), ""),
    # the row counts of listings those rows change
    (re.compile(r"^\(\d+ rows?\)$", re.M), "(N rows)"),
]


def normalize(text):
    """The text without the known differences, spaces or table rules."""
    for pattern, repl in NORMALIZE:
        text = pattern.sub(repl, text)
    out = []
    for line in text.splitlines():
        if re.fullmatch(r"[-+ ]*", line):
            continue  # a table's rule, or a blank line
        out.append(re.sub(r"\s+", " ", line).strip())
    return out


def main():
    root, tests = sys.argv[1], sys.argv[2:]
    same = differ = 0
    for t in tests:
        try:
            exp = normalize(open("%s/expected/%s.out" % (root, t)).read())
            got = normalize(open("%s/results/%s.out" % (root, t)).read())
        except OSError as e:
            print("differs %s: %s" % (t, e))
            differ += 1
            continue
        if exp == got:
            print("same %s" % t)
            same += 1
        else:
            print("differs %s" % t)
            sys.stdout.writelines(
                l + "\n" for l in list(difflib.unified_diff(exp, got, "expected", "results", lineterm=""))[:80])
            differ += 1
    print("version_diff: %d same, %d differ" % (same, differ))


if __name__ == "__main__":
    main()
