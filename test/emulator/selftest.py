#!/usr/bin/env python3
"""Self-test of the Atlas emulator (atlas_emulator.py, seed.json, ../emuctl).

Starts the emulator on free ports (http + https with certificates made here
with the openssl CLI), exercises every feature, and prints
"emulator selftest: N passed, M failed".  Exit status 1 on any failure.
Needs: python3 (stdlib), /usr/bin/curl, openssl; libcurl.so.4 for the
one-handle digest check (done through ctypes, as the C extension uses it).

  python3 test/emulator/selftest.py [-v] [-k SUBSTRING]
"""

import base64
import ctypes
import ctypes.util
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EMU = os.path.join(HERE, "atlas_emulator.py")
SEED = os.path.join(HERE, "seed.json")
EMUCTL = os.path.join(os.path.dirname(HERE), "emuctl")

ORG = "65f0a0000000000000000001"
PROD, STAGING, DEV = ("65f0b0000000000000000001", "65f0b0000000000000000002",
                      "65f0b0000000000000000003")
DBA, APP = "65f0c0000000000000000001", "65f0c0000000000000000002"
JANE, JOHN, ALICE, BOB, CAROL = ("65f0d0000000000000000001", "65f0d0000000000000000002",
                                 "65f0d0000000000000000003", "65f0d0000000000000000004",
                                 "65f0d0000000000000000005")
INVITED, DAVE, ERIN, OUTSIDER = ("65f0d0000000000000000006", "65f0d0000000000000000007",
                                 "65f0d0000000000000000008", "65f0d0000000000000000009")
EXPIRED, LEGACY = "65f0d000000000000000000a", "65f0d000000000000000000b"
OWNER = "65f0d000000000000000000c"       # owner@example.com: Acme's owner, kept by every test
NOBODY = "65f0dfffffffffffffffffff"
PUB, PRIV = "atlasemu", "6d9f0a3e-2b1c-4e8a-9f7d-3c5b1a2e4f60"
SA_ID = "mdb_sa_id_65f0e0000000000000000002"
SA_SECRET = "mdb_sa_sk_4f8e2a9c7b1d6e3f0a5c8b2d9e7f1a4c6b3d0e8f"
# the second organization, with its own key pair and service account
GLOBEX, GPROD, GTEAM = ("65f0a0000000000000000002", "65f0b0000000000000000004",
                        "65f0c0000000000000000003")
GOWNER, HANK = "65f0d000000000000000000d", "65f0d000000000000000000e"
GPUB, GPRIV = "globexak", "0b7e4c2d-91a3-4f56-8e0d-7a2c5b9f1e34"
GSA_ID = "mdb_sa_id_65f0e0000000000000000004"
GSA_SECRET = "mdb_sa_sk_9c1d7e3a5b0f2c8e6d4a1b9f7e3c5d0a2b8f6e4c"
V23, V25 = "application/vnd.atlas.2023-01-01+json", "application/vnd.atlas.2025-02-19+json"
CT23, CT25 = V23 + ";charset=utf-8", V25 + ";charset=utf-8"   # success content types
P2 = "/api/atlas/v2"
DEPRECATION = "Wed, 19 Feb 2025 00:00:00 GMT"
SUNSET = "Thu, 1 Jul 2027 00:00:00 GMT"     # real answers: the day is not zero-padded
CHALLENGE_RE = re.compile(r'^Digest realm="MMS Public API", domain="", nonce="([^"]+)", '
                          r'algorithm=MD5, qop="auth", stale=(true|false)$')
UNAUTH = {"error": 401, "reason": "Unauthorized",
          "detail": "You are not authorized for this resource.", "errorCode": "UNEXPECTED_ERROR"}

VERBOSE = "-v" in sys.argv
ONLY = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None


# --------------------------------------------------------------------------
# tiny test harness

class Results:
    passed = 0
    failed = 0
    section = ""


R = Results()


def check(name, cond, info=""):
    if cond:
        R.passed += 1
        if VERBOSE:
            print("  ok   %s: %s" % (R.section, name))
    else:
        R.failed += 1
        print("  FAIL %s: %s %s" % (R.section, name, info if info else ""))
    return cond


def eq(name, got, want):
    return check(name, got == want, "got %r, want %r" % (got, want))


# --------------------------------------------------------------------------
# clients

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def h(self, name):
        return self.headers.get(name)


def digest_header(user, pw, method, uri, nonce, nc, realm="MMS Public API", cnonce=None,
                  qop="auth"):
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = hashlib.md5(("%s:%s:%s" % (user, realm, pw)).encode()).hexdigest()
    ha2 = hashlib.md5(("%s:%s" % (method, uri)).encode()).hexdigest()
    if qop is None:   # RFC 2069: no qop, nc or cnonce
        resp = hashlib.md5(("%s:%s:%s" % (ha1, nonce, ha2)).encode()).hexdigest()
        return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
                'algorithm=MD5' % (user, realm, nonce, uri, resp))
    ncs = "%08x" % nc
    resp = hashlib.md5(("%s:%s:%s:%s:%s:%s" % (ha1, nonce, ncs, cnonce, qop, ha2)).encode()
                       ).hexdigest()
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", cnonce="%s", nc=%s, '
            'qop=%s, response="%s", algorithm=MD5' % (user, realm, nonce, uri, cnonce, ncs, qop,
                                                      resp))


class Client:
    """Persistent HTTP/1.1 connection with digest (nonce reuse, nc++) or bearer auth."""

    def __init__(self, port, tls_ctx=None, auth=("digest", PUB, PRIV), timeout=15, source=None):
        self.port = port
        self.source = (source, 0) if source else None
        self.tls_ctx = tls_ctx
        self.auth = auth
        self.timeout = timeout
        self.conn = None
        self.nonce = None
        self.nc = 0
        self.challenges = 0

    def _conn(self):
        if self.conn is None:
            if self.tls_ctx is not None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                                        timeout=self.timeout,
                                                        context=self.tls_ctx)
            else:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout,
                                                       source_address=self.source)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def raw(self, method, path, headers=None, body=None):
        c = self._conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        if r.will_close:
            self.close()
        return Resp(r.status, r.headers, data)

    def req(self, method, path, accept=V25, headers=None, body=None):
        hdrs = {"User-Agent": "emulator-selftest/1.0"}
        if accept is not None:
            hdrs["Accept"] = accept
        if headers:
            hdrs.update(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        kind = self.auth[0] if self.auth else None
        if kind == "bearer":
            hdrs["Authorization"] = "Bearer " + self.auth[1]
        sent_auth = False
        if kind == "digest" and self.nonce is not None:
            self.nc += 1
            hdrs["Authorization"] = digest_header(self.auth[1], self.auth[2], method, path,
                                                  self.nonce, self.nc)
            sent_auth = True
        r = self.raw(method, path, hdrs, body)
        if r.status == 401 and kind == "digest":
            m = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
            if m and (not sent_auth or m.group(2) == "true"):
                self.challenges += 1
                self.nonce, self.nc = m.group(1), 1
                hdrs["Authorization"] = digest_header(self.auth[1], self.auth[2], method, path,
                                                      self.nonce, self.nc)
                r = self.raw(method, path, hdrs, body)
        return r


def ctl(port, method, name, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d/__emulator/%s" % (port, name), data=data,
                                 method=method, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"_status": e.code, **json.loads(e.read() or b"{}")}


def counters(port):
    return ctl(port, "GET", "counters")


def route_count(c, key, status):
    return c["requests_by_route"].get(key, {}).get(str(status), 0)


def curl(*args, timeout=30):
    cmd = ["curl", "-sS", "--noproxy", "*"] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    return p


def curl_status(*args):
    p = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return p.stdout.decode().strip()


# --------------------------------------------------------------------------
# libcurl through ctypes: one easy handle for many requests

class LibCurl:
    CURLOPT_URL = 10002
    CURLOPT_USERPWD = 10005
    CURLOPT_HTTPHEADER = 10023
    CURLOPT_CUSTOMREQUEST = 10036
    CURLOPT_CAINFO = 10065
    CURLOPT_HTTPAUTH = 107
    CURLOPT_NOPROXY = 10177
    CURLOPT_WRITEFUNCTION = 20011
    CURLAUTH_DIGEST = 2
    CURLINFO_RESPONSE_CODE = 0x200000 + 2
    CURLINFO_NUM_CONNECTS = 0x200000 + 26
    WRITEFN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                               ctypes.c_size_t, ctypes.c_void_p)

    def __init__(self):
        name = ctypes.util.find_library("curl") or "libcurl.so.4"
        self.lib = ctypes.CDLL(name)
        self.lib.curl_easy_init.restype = ctypes.c_void_p
        self.lib.curl_slist_append.restype = ctypes.c_void_p
        self.lib.curl_slist_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib.curl_easy_perform.argtypes = [ctypes.c_void_p]
        self.lib.curl_easy_cleanup.argtypes = [ctypes.c_void_p]
        self.lib.curl_slist_free_all.argtypes = [ctypes.c_void_p]
        self._sink = self.WRITEFN(lambda ptr, size, n, ud: size * n)

    def session(self, userpwd, headers, cainfo=None):
        h = self.lib.curl_easy_init()
        setopt = self.lib.curl_easy_setopt
        setopt.restype = ctypes.c_int
        keep = []
        sl = None
        for line in headers:
            b = line.encode()
            keep.append(b)
            sl = self.lib.curl_slist_append(sl, b)
        setopt(ctypes.c_void_p(h), self.CURLOPT_HTTPAUTH, ctypes.c_long(self.CURLAUTH_DIGEST))
        for opt, val in ((self.CURLOPT_USERPWD, userpwd), (self.CURLOPT_NOPROXY, "*")) + (
                ((self.CURLOPT_CAINFO, cainfo),) if cainfo else ()):
            b = val.encode()
            keep.append(b)
            setopt(ctypes.c_void_p(h), opt, ctypes.c_char_p(b))
        setopt(ctypes.c_void_p(h), self.CURLOPT_HTTPHEADER, ctypes.c_void_p(sl))
        setopt(ctypes.c_void_p(h), self.CURLOPT_WRITEFUNCTION, self._sink)
        return {"h": h, "sl": sl, "keep": keep}

    def perform(self, s, method, url):
        h = s["h"]
        u = url.encode()
        m = method.encode()
        s["keep"] += [u, m]
        self.lib.curl_easy_setopt(ctypes.c_void_p(h), self.CURLOPT_URL, ctypes.c_char_p(u))
        self.lib.curl_easy_setopt(ctypes.c_void_p(h), self.CURLOPT_CUSTOMREQUEST,
                                  ctypes.c_char_p(m))
        rc = self.lib.curl_easy_perform(h)
        code = ctypes.c_long(0)
        self.lib.curl_easy_getinfo(ctypes.c_void_p(h), self.CURLINFO_RESPONSE_CODE,
                                   ctypes.byref(code))
        return rc, code.value

    def close(self, s):
        self.lib.curl_easy_cleanup(s["h"])
        self.lib.curl_slist_free_all(s["sl"])


# --------------------------------------------------------------------------
# setup

def make_certs(d):
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=atlas-emulator-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


def start_emulator(d, extra=()):
    pf = os.path.join(d, "ports.json")
    if os.path.exists(pf):
        os.unlink(pf)
    errlog = open(os.path.join(d, "emulator.stderr"), "ab")
    p = subprocess.Popen([sys.executable, EMU, "--host", "127.0.0.1", "--http-port", "0",
                          "--https-port", "0", "--cert", os.path.join(d, "server.crt"),
                          "--key", os.path.join(d, "server.key"), "--seed", SEED,
                          "--port-file", pf] + list(extra),
                         stdout=subprocess.DEVNULL, stderr=errlog)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if os.path.exists(pf):
            with open(pf) as f:
                return p, json.load(f), pf
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise SystemExit("emulator did not start; see %s" % errlog.name)


# --------------------------------------------------------------------------
# test sections

def section(name):
    R.section = name
    return ONLY is None or ONLY in name


def t_startup(ports, proc):
    if not section("startup"):
        return
    check("port file has http_port", isinstance(ports.get("http_port"), int) and ports["http_port"] > 0)
    check("port file has https_port", isinstance(ports.get("https_port"), int) and ports["https_port"] > 0)
    eq("port file pid", ports.get("pid"), proc.pid)
    eq("health", ctl(ports["http_port"], "GET", "health").get("ok"), True)


def t_digest(port):
    if not section("digest"):
        return
    ctl(port, "POST", "reset")
    c = Client(port, auth=None)
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("no credentials -> 401", r.status, 401)
    m = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
    check("challenge header format", m is not None, r.h("WWW-Authenticate"))
    check("challenge stale=false", m is not None and m.group(2) == "false")
    eq("401 content type", r.h("Content-Type"), "application/json")
    body = r.json()
    eq("401 body (exactly the real Atlas one)", body, UNAUTH)
    nonce = m.group(1)
    path = P2 + "/orgs/%s/users" % ORG
    r = c.raw("GET", path, {"Accept": V25,
                            "Authorization": digest_header(PUB, "wrong-password", "GET", path,
                                                           nonce, 1)})
    eq("wrong password -> 401", r.status, 401)
    m2 = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
    check("wrong password -> stale=false", m2 is not None and m2.group(2) == "false")
    r = c.raw("GET", path, {"Accept": V25,
                            "Authorization": digest_header("nosuchky", PRIV, "GET", path, nonce, 1)})
    eq("unknown key -> 401", r.status, 401)
    r = c.raw("GET", path, {"Accept": V25,
                            "Authorization": digest_header(PUB, PRIV, "GET", P2 + "/orgs", nonce, 1)})
    eq("uri not the request target -> 401", r.status, 401)
    r = c.raw("GET", path, {"Accept": V25,
                            "Authorization": digest_header(PUB, PRIV, "GET", path, nonce, 1,
                                                           realm="Other")})
    eq("wrong realm -> 401", r.status, 401)
    r = c.raw("GET", path, {"Accept": V25,
                            "Authorization": digest_header(PUB, PRIV, "GET", path, nonce, 1)})
    eq("valid digest -> 200", r.status, 200)
    r = c.raw("GET", path, {"Accept": V25, "Authorization": "Basic " +
                            base64.b64encode(("%s:%s" % (PUB, PRIV)).encode()).decode()})
    eq("basic auth on v2 -> 401", r.status, 401)
    c.close()

    ctl(port, "POST", "reset_counters")
    c = Client(port)
    codes = [c.req("GET", P2 + "/groups/%s/users" % g).status for g in (PROD, STAGING, DEV) * 20]
    eq("60 digest requests on one connection all 200", set(codes), {200})
    cn = counters(port)
    eq("one digest challenge for 60 requests (nonce reuse, nc++)", cn["digest_challenges"], 1)
    eq("one tcp connection", cn["tcp_connections"], 1)
    eq("requests_total counts the 401 too", cn["requests_total"], 61)

    # stale nonce
    ctl(port, "POST", "config", {"nonce_ttl_s": 0.5})
    time.sleep(0.7)
    path = P2 + "/groups/%s" % PROD
    c.nc += 1
    r = c.raw("GET", path, {"Accept": V25, "Authorization": digest_header(PUB, PRIV, "GET", path,
                                                                          c.nonce, c.nc)})
    eq("expired nonce -> 401", r.status, 401)
    m = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
    check("expired nonce -> stale=true", m is not None and m.group(2) == "true")
    check("fresh nonce offered", m is not None and m.group(1) != c.nonce)
    c.nc += 1
    r = c.raw("GET", path, {"Accept": V25, "Authorization": digest_header(PUB, "bad", "GET", path,
                                                                          c.nonce, c.nc)})
    m = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
    check("expired nonce + wrong password -> stale=false", m is not None and m.group(2) == "false")
    ctl(port, "POST", "config", {"nonce_ttl_s": 300})
    r = c.req("GET", path)
    eq("client recovers with a fresh nonce", r.status, 200)
    cn = counters(port)
    eq("stale challenges counted", cn["digest_stale_challenges"], 1)
    c.close()


def t_curl(ports, certdir):
    if not section("curl"):
        return
    port, sport = ports["http_port"], ports["https_port"]
    ctl(port, "POST", "reset")
    base = "http://127.0.0.1:%d" % port
    up = "%s:%s" % (PUB, PRIV)
    eq("curl --digest GET", curl_status("--digest", "-u", up, "-H", "Accept: " + V25,
                                        base + P2 + "/orgs/%s/users?username=jane%%40example.com" % ORG),
       "200")
    eq("curl --digest wrong password -> 401",
       curl_status("--digest", "-u", PUB + ":nope", "-H", "Accept: " + V25, base + P2 + "/orgs"),
       "401")
    eq("curl --digest DELETE (2025-02-19) -> 204",
       curl_status("--digest", "-u", up, "-X", "DELETE", "-H", "Accept: " + V25,
                   base + P2 + "/groups/%s/users/%s" % (STAGING, JANE)), "204")
    st = ctl(port, "GET", "state?user=" + JANE)
    check("jane removed from staging", STAGING not in st["projects"] and PROD in st["projects"])
    eq("curl --digest legacy v1.0 DELETE -> 204",
       curl_status("--digest", "-u", up, "-X", "DELETE", "-H", "Accept: application/json",
                   base + "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, JOHN)), "204")
    eq("curl --digest over TLS (CA-verified) -> 200",
       curl_status("--digest", "-u", up, "--cacert", os.path.join(certdir, "ca.crt"),
                   "-H", "Accept: " + V25, "https://127.0.0.1:%d%s/groups/%s" % (sport, P2, PROD)),
       "200")
    eq("curl over TLS with localhost name -> 200",
       curl_status("--digest", "-u", up, "--cacert", os.path.join(certdir, "ca.crt"),
                   "-H", "Accept: " + V25, "https://localhost:%d%s/orgs" % (sport, P2)), "200")
    rm = base + P2 + "/orgs/%s/teams/%s:removeUser" % (ORG, APP)
    p = curl("--digest", "-u", up, "-X", "POST", "-H", "Accept: " + V25, "-H", "Content-Type: " + V25,
             "--data", json.dumps({"id": BOB}), "-w", "\n%{http_code}", rm)
    out = p.stdout.decode().rsplit("\n", 1)
    eq("curl --digest POST :removeUser -> 200", out[-1], "200")
    check("curl POST answer is the org user", out[0].startswith("{") and json.loads(out[0])["id"] == BOB)
    eq("curl chunked request body",
       curl_status("--digest", "-u", up, "-X", "POST", "-H", "Accept: " + V25, "-H",
                   "Content-Type: " + V25, "-H", "Transfer-Encoding: chunked",
                   "--data", json.dumps({"id": INVITED}), rm), "200")
    big = json.dumps({"id": BOB, "padding": "x" * 5000})
    eq("curl Expect: 100-continue body (user already removed -> 404)",
       curl_status("--digest", "-u", up, "-X", "POST", "-H", "Accept: " + V25, "-H",
                   "Content-Type: " + V25, "-H", "Expect: 100-continue", "--data", big, rm), "404")
    p = curl("-o", "/dev/null", "https://127.0.0.1:%d%s/orgs" % (sport, P2))
    check("curl without the CA refuses the self-signed chain", p.returncode != 0)
    cn = counters(port)
    check("tls_connections counted", cn["tls_connections"] >= 2, cn["tls_connections"])
    eq("removal requests counted (401s included)", cn["removal_requests"], 10)


def t_libcurl(ports, certdir):
    if not section("libcurl"):
        return
    try:
        lc = LibCurl()
    except OSError as e:
        check("libcurl loadable", False, e)
        return
    port, sport = ports["http_port"], ports["https_port"]
    ctl(port, "POST", "reset")
    for label, base, cainfo in (("http", "http://127.0.0.1:%d" % port, None),
                                ("https", "https://127.0.0.1:%d" % sport,
                                 os.path.join(certdir, "ca.crt"))):
        ctl(port, "POST", "reset_counters")
        s = lc.session("%s:%s" % (PUB, PRIV), ["Accept: " + V25], cainfo)
        codes = []
        for i in range(300):
            codes.append(lc.perform(s, "GET", base + P2 + "/groups/%s/users?pageNum=%d" %
                                    ((PROD, STAGING, DEV)[i % 3], 1 + i % 2)))
        lc.close(s)
        eq("%s: 300 GETs on one handle all ok" % label, set(codes), {(0, 200)})
        cn = counters(port)
        eq("%s: exactly 1 digest challenge for one handle" % label, cn["digest_challenges"], 1)
        eq("%s: one connection" % label, cn["tcp_connections"], 1)
        if label == "https":
            eq("https: one TLS connection", cn["tls_connections"], 1)
    # removals with one handle (DELETE after GETs keeps the nonce too)
    ctl(port, "POST", "reset_counters")
    s = lc.session("%s:%s" % (PUB, PRIV), ["Accept: " + V25])
    base = "http://127.0.0.1:%d" % port
    r1 = lc.perform(s, "GET", base + P2 + "/orgs/%s/users?username=carol%%40example.com" % ORG)
    r2 = lc.perform(s, "DELETE", base + P2 + "/groups/%s/users/%s" % (PROD, CAROL))
    r3 = lc.perform(s, "DELETE", base + P2 + "/groups/%s/users/%s" % (DEV, CAROL))
    r4 = lc.perform(s, "DELETE", base + P2 + "/groups/%s/users/%s" % (DEV, CAROL))
    lc.close(s)
    eq("libcurl lookup + 2 removals + repeat", (r1, r2, r3, r4),
       ((0, 200), (0, 204), (0, 204), (0, 404)))
    eq("still one challenge", counters(port)["digest_challenges"], 1)


def get_token(port, cid=SA_ID, secret=SA_SECRET, body="grant_type=client_credentials",
              ctype="application/x-www-form-urlencoded", source=None):
    c = Client(port, auth=None, source=source)
    hdrs = {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (cid, secret)).encode()).decode(),
            "Content-Type": ctype, "Accept": "application/json"}
    r = c.raw("POST", "/api/oauth/token", hdrs, body.encode())
    c.close()
    return r


def revoke(port, token, cid=SA_ID, secret=SA_SECRET):
    c = Client(port, auth=None)
    hdrs = {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (cid, secret)).encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded"}
    r = c.raw("POST", "/api/oauth/revoke", hdrs,
              ("token=%s&token_type_hint=access_token" % token).encode())
    c.close()
    return r


def t_token_serials(port):
    """Token serial numbers in the request log, and secret rotation."""
    if not section("token serials and rotation"):
        return
    ctl(port, "POST", "reset")
    t1 = get_token(port).json()["access_token"]
    t2 = get_token(port).json()["access_token"]
    b = Client(port, auth=("bearer", t1))
    eq("first token works", b.req("GET", P2 + "/orgs/%s/users" % ORG).status, 200)
    log = ctl(port, "GET", "requests?limit=3")["requests"]
    first = log[0].get("token") if log else None
    eq("token serials: two grants, then a request with the first (serials count from the start)",
       [e.get("token") for e in log], [first, (first or 0) + 1, first])
    r = ctl(port, "POST", "service_accounts", {"client_id": SA_ID, "client_secret": "mdb_sa_sk_rotated0123456789"})
    check("rotation accepted", r.get("ok") is True, r)
    eq("old secret refused after rotation", get_token(port).status, 401)
    eq("new secret granted", get_token(port, secret="mdb_sa_sk_rotated0123456789").status, 200)
    b = Client(port, auth=("bearer", t2))
    eq("tokens issued before the rotation stay valid", b.req("GET", P2 + "/orgs").status, 200)
    ctl(port, "POST", "reset")


def t_oauth(port):
    if not section("oauth"):
        return
    ctl(port, "POST", "reset")
    r = get_token(port)
    eq("token grant 200", r.status, 200)
    tok = r.json()
    eq("token_type", tok.get("token_type"), "Bearer")
    eq("expires_in default", tok.get("expires_in"), 3600)
    check("access_token present", isinstance(tok.get("access_token"), str) and
          len(tok["access_token"]) > 100)
    b = Client(port, auth=("bearer", tok["access_token"]))
    r = b.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("bearer works on v2", r.status, 200)
    r = b.req("DELETE", P2 + "/groups/%s/users/%s" % (DEV, JANE))
    eq("bearer removal 204", r.status, 204)
    r = b.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, JANE), accept="application/json")
    eq("bearer on legacy v1.0 -> 401", r.status, 401)
    eq("wrong secret -> 401", get_token(port, secret="nope").status, 401)
    eq("wrong secret -> invalid_client", get_token(port, secret="nope").json().get("error"),
       "invalid_client")
    eq("bad grant_type -> 400", get_token(port, body="grant_type=password").status, 400)
    eq("wrong content type -> 400", get_token(port, ctype="application/json").status, 400)
    r = revoke(port, tok["access_token"])
    eq("revoke 200", r.status, 200)
    before = counters(port)
    r = b.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("revoked token -> 401", r.status, 401)
    check("bearer 401 carries the digest challenge", CHALLENGE_RE.match(r.h("WWW-Authenticate") or ""))
    eq("bearer 401 body", {k: r.json().get(k) for k in UNAUTH}, UNAUTH)
    after = counters(port)
    eq("bearer_rejections +1", after["bearer_rejections"] - before["bearer_rejections"], 1)
    eq("digest_challenges unchanged by bearer 401",
       after["digest_challenges"] - before["digest_challenges"], 0)
    eq("revocations", after["revocations"], 1)
    b = Client(port, auth=("bearer", "not-a-token"))
    eq("unknown token -> 401", b.req("GET", P2 + "/orgs").status, 401)
    # expiry
    ctl(port, "POST", "config", {"token_ttl_s": 1})
    t2 = get_token(port).json()
    eq("configured expires_in", t2["expires_in"], 1)
    b = Client(port, auth=("bearer", t2["access_token"]))
    eq("fresh short token works", b.req("GET", P2 + "/orgs").status, 200)
    time.sleep(1.2)
    eq("expired token -> 401 (same connection)", b.req("GET", P2 + "/orgs").status, 401)
    ctl(port, "POST", "config", {"token_ttl_s": 3600})
    t3 = get_token(port).json()["access_token"]
    ctl(port, "POST", "expire_tokens")
    eq("expire_tokens control", Client(port, auth=("bearer", t3)).req("GET", P2 + "/orgs").status,
       401)
    # rate limit: 50 per rolling minute
    ctl(port, "POST", "reset")
    codes = [get_token(port).status for _ in range(50)]
    eq("50 token requests granted", set(codes), {200})
    r = get_token(port)
    eq("51st token request -> 429", r.status, 429)
    body = r.json()
    eq("429 body detail", body.get("detail"),
       "Resource /api/oauth/token is limited to 50 requests every 1 minutes.")
    eq("429 errorCode", body.get("errorCode"), "RATE_LIMITED")
    eq("429 reason", body.get("reason"), "Too Many Requests")
    eq("429 error", body.get("error"), 429)
    check("429 Retry-After seconds", (r.h("Retry-After") or "").isdigit() and
          1 <= int(r.h("Retry-After")) <= 60, r.h("Retry-After"))
    cn = counters(port)
    eq("token_grants (rate-limited attempts do not grant)", cn["token_grants"], 50)
    eq("token_requests", cn["token_requests"], 51)
    ctl(port, "POST", "config", {"token_rate_window_s": 1})
    time.sleep(1.1)
    eq("window rolls over", get_token(port).status, 200)
    ctl(port, "POST", "reset")


def t_versions(port):
    if not section("versions"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)
    path = P2 + "/orgs/%s/users" % ORG
    r = c.req("GET", path, accept=V25)
    eq("2025 content type", r.h("Content-Type"), CT25)
    check("2025 not deprecated", r.h("Deprecation") is None and r.h("Sunset") is None)
    r = c.req("GET", path, accept="application/vnd.atlas.2024-08-05+json")
    eq("2024-08-05 resolves to 2023-01-01", r.h("Content-Type"), CT23)
    eq("deprecated version Deprecation header", r.h("Deprecation"), DEPRECATION)
    eq("deprecated version Sunset header", r.h("Sunset"), SUNSET)
    check("2023 shape is CloudAppUser (emailAddress, roles list)",
          all("emailAddress" in u and isinstance(u["roles"], list) for u in r.json()["results"]))
    check("2023 lists only ACTIVE users",
          {u["id"] for u in r.json()["results"]}.isdisjoint({INVITED, EXPIRED, LEGACY}))
    r = c.req("GET", path, accept="application/vnd.atlas.2030-01-01+json")
    eq("future date resolves to latest", r.h("Content-Type"), CT25)
    for label, acc in (("application/json", "application/json"), ("no Accept", None),
                       ("*/*", "*/*")):
        r = c.req("GET", path, accept=acc)
        eq("%s behaves as 2023-01-01" % label, r.h("Content-Type"), CT23)
    for label, acc in (("date before first version", "application/vnd.atlas.2022-12-31+json"),
                       ("malformed vnd type", "application/vnd.atlas.latest+json"),
                       ("impossible date", "application/vnd.atlas.2025-13-45+json"),
                       ("csv", "application/vnd.atlas.2025-02-19+csv"),
                       ("text/html", "text/html")):
        r = c.req("GET", path, accept=acc)
        eq("%s -> 406" % label, r.status, 406)
        eq("%s -> INVALID_VERSION_DATE" % label, r.json().get("errorCode"), "INVALID_VERSION_DATE")
    eq("406 body", r.json(), {"detail": "Invalid accept header or version date.", "error": 406,
                              "errorCode": "INVALID_VERSION_DATE", "parameters": [],
                              "reason": "Not Acceptable"})
    eq("406 content type", r.h("Content-Type"), "application/json")
    r = c.req("POST", P2 + "/orgs/%s/teams/%s:removeUser" % (ORG, APP), accept=V23,
              headers={"Content-Type": V23}, body={"id": BOB})
    eq(":removeUser has no 2023 version -> 406", r.status, 406)
    r = c.req("DELETE", P2 + "/orgs/%s/teams/%s/users/%s" % (ORG, APP, BOB), accept=V25)
    eq("team DELETE with 2025 Accept resolves to 2023 (deprecated)", r.status, 204)
    eq("team DELETE Deprecation", r.h("Deprecation"), DEPRECATION)
    eq("team DELETE Sunset", r.h("Sunset"), SUNSET)
    eq("team DELETE no body", (r.body, r.h("Content-Length")), (b"", "0"))
    # sunset
    ctl(port, "POST", "config", {"today": "2027-07-01"})
    r = c.req("DELETE", P2 + "/groups/%s/users/%s" % (PROD, JANE), accept=V23)
    eq("sunset version -> 410", r.status, 410)
    eq("410 VERSION_GONE", r.json().get("errorCode"), "VERSION_GONE")
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG, accept="application/json")
    eq("application/json after sunset -> 410", r.status, 410)
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG, accept=V25)
    eq("2025 still fine after 2027-07-01", r.status, 200)
    eq("Date follows today", r.h("Date")[:16], "Thu, 01 Jul 2027")
    for path in ("/orgs/%s/invites" % ORG, "/groups/%s/invites" % PROD,
                 "/orgs/%s/invites/%s" % (ORG, "0" * 24)):
        r = c.req("GET", P2 + path, accept=V25)
        eq("invitations after the sunset -> 410 VERSION_GONE " + path,
           (r.status, r.json().get("errorCode")), (410, "VERSION_GONE"))
    ctl(port, "POST", "config", {"today": "2027-06-30"})
    r = c.req("GET", P2 + "/groups/%s" % PROD, accept=V23)
    eq("day before sunset still served", r.status, 200)
    ctl(port, "POST", "config", {"today": None})
    st = ctl(port, "GET", "state?user=" + JANE)
    check("jane untouched by the 410", PROD in st["projects"])
    c.close()


def err_of(r):
    try:
        return r.json()
    except ValueError:
        return {}


def t_removal(port):
    if not section("removal"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)

    def expect(label, r, status, code=None, xerr=True):
        eq(label + " status", r.status, status)
        if code is not None:
            b = err_of(r)
            eq(label + " errorCode", b.get("errorCode"), code)
            eq(label + " error field", b.get("error"), status)
            eq(label + " reason", b.get("reason"), http.client.responses[status])
            check(label + " parameters is a list", isinstance(b.get("parameters"), list))
            eq(label + " content type", r.h("Content-Type"), "application/json")
            if status == 404 and xerr:
                eq(label + " X-Error-Code", r.h("X-Error-Code"), code)
        return err_of(r)

    gdel = lambda g, u, acc=V25: c.req("DELETE", P2 + "/groups/%s/users/%s" % (g, u), accept=acc)
    odel = lambda o, u, acc=V25: c.req("DELETE", P2 + "/orgs/%s/users/%s" % (o, u), accept=acc)
    tdel = lambda o, t, u: c.req("DELETE", P2 + "/orgs/%s/teams/%s/users/%s" % (o, t, u), accept=V23)
    tpost = lambda o, t, body, ct=V25: c.req("POST", P2 + "/orgs/%s/teams/%s:removeUser" % (o, t),
                                             accept=V25, headers={"Content-Type": ct}, body=body)

    b = expect("pending via 2023", gdel(DEV, INVITED, V23), 404, "USER_NOT_FOUND")
    eq("pending via 2023 detail", b.get("detail"), "No user with ID %s exists." % INVITED)
    expect("pending via 2023 (org)", odel(ORG, INVITED, V23), 404, "USER_NOT_FOUND")
    r = gdel(DEV, INVITED, V25)
    eq("pending via 2025 -> 204", r.status, 204)
    eq("204 has Content-Length: 0", r.h("Content-Length"), "0")
    eq("204 still carries the version's content type (as real answers)", r.h("Content-Type"),
       CT25)
    b = expect("unknown user", gdel(PROD, NOBODY), 404, "USER_NOT_FOUND")
    eq("unknown user detail", b.get("detail"), "No user with ID %s exists." % NOBODY)
    b = expect("user not in project", gdel(PROD, DAVE), 404, "USER_NOT_FOUND")
    check("not-in-project detail names user and project", DAVE in b.get("detail", "") and
          PROD in b.get("detail", ""), b.get("detail"))
    expect("outsider from project", gdel(PROD, OUTSIDER), 404, "USER_NOT_IN_ORG")
    expect("outsider from org", odel(ORG, OUTSIDER), 404, "USER_NOT_IN_ORG")
    b = expect("missing group", gdel("65f0b00000000000000000ff", JANE), 404, "GROUP_NOT_FOUND")
    eq("missing group detail", b.get("detail"), "No group with ID 65f0b00000000000000000ff exists.")
    b = expect("missing org", odel("65f0a00000000000000000ff", JANE), 404, "ORG_NOT_FOUND")
    eq("missing org detail", b.get("detail"),
       "No organization with ID 65f0a00000000000000000ff exists.")
    expect("missing team", tdel(ORG, "65f0c00000000000000000ff", JANE), 404, "TEAM_NOT_FOUND")
    expect("malformed group id", gdel("not-an-id", JANE), 400, "INVALID_GROUP_ID")
    expect("uppercase user id", gdel(PROD, JANE.upper()), 400, "VALIDATION_ERROR")
    expect("short org id", odel("65f0a", JANE), 400, "VALIDATION_ERROR")
    expect("legacy invite not removable", gdel(DEV, LEGACY), 404, "USER_NOT_FOUND")
    # team removal
    b = expect("user not in team", tdel(ORG, DBA, BOB), 404, "RESOURCE_NOT_FOUND")
    check("user id in detail", BOB in b.get("detail", ""), b.get("detail"))
    check("user id in parameters", BOB in b.get("parameters", []), b.get("parameters"))
    eq("team DELETE 2023 -> 204", tdel(ORG, DBA, JOHN).status, 204)
    r = tpost(ORG, DBA, {"id": ALICE})
    eq(":removeUser -> 200", r.status, 200)
    eq(":removeUser content type", r.h("Content-Type"), CT25)
    u = r.json()
    eq(":removeUser returns the org user", (u.get("id"), u.get("username"),
                                            u.get("orgMembershipStatus")),
       (ALICE, "alice@example.com", "ACTIVE"))
    check(":removeUser teamIds no longer has the team", DBA not in u.get("teamIds", [DBA]))
    check("OrgUserResponse roles shape", isinstance(u.get("roles", {}).get("orgRoles"), list) and
          isinstance(u["roles"].get("groupRoleAssignments"), list))
    # the seed's owner is in every team: remove it from dba-team so that jane is its last user
    eq("team DELETE of the seed owner", tdel(ORG, DBA, OWNER).status, 204)
    expect("last user of team (POST)", tpost(ORG, DBA, {"id": JANE}), 400,
           "CANNOT_REMOVE_LAST_USER_FROM_TEAM")
    expect("last user of team (DELETE)", tdel(ORG, DBA, JANE), 400,
           "CANNOT_REMOVE_LAST_USER_FROM_TEAM")
    r = tpost(ORG, APP, {"id": INVITED})
    eq(":removeUser removes a PENDING user", r.status, 200)
    check("pending OrgUserResponse fields", all(k in r.json() for k in
                                                ("invitationCreatedAt", "invitationExpiresAt",
                                                 "inviterUsername")) and "firstName" not in r.json())
    expect(":removeUser wrong content type", tpost(ORG, APP, {"id": BOB}, ct="text/plain"), 415,
           "UNSUPPORTED_MEDIA_TYPE")
    eq(":removeUser application/json accepted", tpost(ORG, APP, {"id": BOB},
                                                      ct="application/json").status, 200)
    r = c.req("POST", P2 + "/orgs/%s/teams/%s:removeUser" % (ORG, APP), accept=V25,
              headers={"Content-Type": V25}, body=b"{not json")
    expect(":removeUser malformed JSON", r, 400, "INVALID_JSON")
    expect(":removeUser without id", tpost(ORG, APP, {}), 400, "VALIDATION_ERROR")
    expect(":removeUser bad id", tpost(ORG, APP, {"id": "xyz"}), 400, "VALIDATION_ERROR")
    # org removal no longer empties a team silently: jane is dba-team's last user
    b = expect("org removal of a team's last user", odel(ORG, JANE), 400,
               "CANNOT_REMOVE_LAST_USER_FROM_TEAM")
    eq("last team user: parameters", b.get("parameters"), [JANE, DBA])
    check("jane still in the org", ORG in ctl(port, "GET", "state?user=" + JANE)["orgs"])
    # org removal cascades (a user in projects and teams that keep other members)
    (cas,) = ctl(port, "POST", "users", {"count": 1, "orgId": ORG, "groupIds": [PROD, DEV],
                                         "teamIds": [DBA, APP], "prefix": "cascade"})["ids"]
    r = odel(ORG, cas)
    eq("org removal -> 204", r.status, 204)
    st = ctl(port, "GET", "state")
    gone = [u for u in st["users"] if u["id"] == cas][0]
    eq("the user has no orgs left", gone["orgs"], {})
    eq("the user has no projects left", gone["projects"], {})
    check("the user is in no team", all(cas not in t["userIds"] for t in st["teams"]))
    expect("org removal again", odel(ORG, cas), 404, "USER_NOT_IN_ORG")
    expect("project removal after org removal", gdel(PROD, cas), 404, "USER_NOT_IN_ORG")
    # legacy
    r = c.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, CAROL), accept="application/json")
    eq("legacy v1.0 DELETE 204", r.status, 204)
    expect("legacy v1.0 DELETE again", c.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" %
                                             (PROD, CAROL), accept="application/json"),
           404, "USER_NOT_FOUND")
    # unknown route / method
    expect("unknown route", c.req("GET", P2 + "/nothing/here"), 404, "RESOURCE_NOT_FOUND")
    r = c.req("PUT", P2 + "/groups/%s/users/%s" % (PROD, JOHN))
    eq("wrong method -> 405", r.status, 405)
    check("405 Allow header", "DELETE" in (r.h("Allow") or ""))
    cn = counters(port)
    removal_keys = [k for k in cn["requests_by_route"] if any(
        s in k for s in ("/users/{userId}", ":removeUser", "{USER-ID}")) and not k.startswith(("GET", "PUT"))]
    total = sum(sum(v.values()) for k, v in cn["requests_by_route"].items() if k in removal_keys)
    eq("removal_requests == sum over the removal routes", cn["removal_requests"], total)
    c.close()


def t_envelope(port):
    if not section("envelope"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)
    r = c.req("DELETE", P2 + "/groups/%s/users/%s?envelope=true" % (PROD, NOBODY))
    eq("enveloped 404 -> HTTP 200", r.status, 200)
    b = r.json()
    eq("envelope status", b.get("status"), 404)
    eq("envelope content errorCode", b.get("content", {}).get("errorCode"), "USER_NOT_FOUND")
    r = c.req("DELETE", P2 + "/groups/%s/users/%s?envelope=true" % (PROD, JOHN))
    eq("enveloped 204 -> HTTP 200", r.status, 200)
    eq("enveloped 204 body", r.json(), {"content": {}, "status": 204})
    r = c.req("GET", P2 + "/groups/%s?envelope=true" % PROD)
    eq("enveloped single resource", (r.json().get("status"), r.json()["content"].get("name")),
       (200, "acme-prod"))
    r = c.req("GET", P2 + "/orgs/%s/users?envelope=true" % ORG)
    b = r.json()
    check("enveloped list keeps results and adds status", b.get("status") == 200 and "results" in b)
    r = Client(port, auth=None).req("GET", P2 + "/groups/%s?envelope=true" % PROD)
    eq("401 challenge is never enveloped", r.status, 401)
    r = c.req("GET", P2 + "/groups/%s?pretty=true" % PROD)
    check("pretty=true pretty-prints", b"\n" in r.body and b'"name" : "acme-prod"' in r.body)
    r = c.req("GET", P2 + "/groups/%s" % PROD)
    check("compact by default", b"\n" not in r.body)
    c.close()


def t_lookup(port):
    if not section("lookup"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    b = r.json()
    ids = [u["id"] for u in b["results"]]
    check("default statuses ACTIVE+PENDING", INVITED in ids and JANE in ids and EXPIRED not in ids)
    check("outsider and legacy invite not listed", OUTSIDER not in ids and LEGACY not in ids)
    eq("totalCount", b.get("totalCount"), len(ids))
    self_link = [l for l in b["links"] if l["rel"] == "self"]
    check("self link is a full URL", self_link and self_link[0]["href"].startswith(
        "http://127.0.0.1:%d%s/orgs/%s/users" % (port, P2, ORG)), b["links"])
    jane = [u for u in b["results"] if u["id"] == JANE][0]
    check("active user fields", all(k in jane for k in ("firstName", "lastName", "createdAt",
                                                        "lastAuth", "country")))
    eq("jane teamIds", sorted(jane["teamIds"]), sorted([DBA, APP]))
    eq("jane group roles", sorted(g["groupId"] for g in jane["roles"]["groupRoleAssignments"]),
       sorted([PROD, STAGING, DEV]))
    pending = [u for u in b["results"] if u["id"] == INVITED][0]
    eq("pending inviterUsername", pending.get("inviterUsername"), "alice@example.com")
    check("pending has no names", "firstName" not in pending)
    r = c.req("GET", P2 + "/orgs/%s/users?username=JANE%%40example.com" % ORG)
    eq("username filter (case-insensitive)", [u["id"] for u in r.json()["results"]], [JANE])
    r = c.req("GET", P2 + "/orgs/%s/users?username=nobody%%40example.com" % ORG)
    eq("username filter no match", (r.json()["results"], r.json()["totalCount"]), ([], 0))
    r = c.req("GET", P2 + "/orgs/%s/users?orgMembershipStatuses=INVITATION_EXPIRED" % ORG)
    eq("status filter", [u["id"] for u in r.json()["results"]], [EXPIRED])
    r = c.req("GET", P2 + "/orgs/%s/users?orgMembershipStatuses=PENDING&orgMembershipStatuses="
              "INVITATION_EXPIRED" % ORG)
    eq("repeated status param", sorted(u["id"] for u in r.json()["results"]), sorted([INVITED, EXPIRED]))
    r = c.req("GET", P2 + "/orgs/%s/users?orgMembershipStatuses=PENDING,INVITATION_EXPIRED" % ORG)
    eq("comma status list", sorted(u["id"] for u in r.json()["results"]), sorted([INVITED, EXPIRED]))
    eq("bad status -> 400", c.req("GET", P2 + "/orgs/%s/users?orgMembershipStatuses=NOPE" % ORG).status, 400)
    r = c.req("GET", P2 + "/orgs/%s/users?username=jane%%40example.com" % ORG, accept=V23)
    check("2023 ignores the username filter", len(r.json()["results"]) > 1)
    for bad in ("0", "501", "abc"):
        r = c.req("GET", P2 + "/orgs/%s/users?itemsPerPage=%s" % (ORG, bad))
        eq("itemsPerPage=%s -> 400" % bad, (r.status, err_of(r).get("errorCode")),
           (400, "INVALID_QUERY_PARAMETER"))
    eq("pageNum=0 -> 400", c.req("GET", P2 + "/orgs/%s/users?pageNum=0" % ORG).status, 400)
    r = c.req("GET", P2 + "/orgs/%s/users?includeCount=false" % ORG)
    check("includeCount=false omits totalCount", "totalCount" not in r.json())
    # group users (GroupUserResponse)
    r = c.req("GET", P2 + "/groups/%s/users" % DEV)
    b = r.json()
    eq("dev members", sorted(u["id"] for u in b["results"]), sorted([JANE, CAROL, INVITED, OWNER]))
    jane = [u for u in b["results"] if u["id"] == JANE][0]
    eq("GroupUserResponse roles is a flat list", jane["roles"], ["GROUP_OWNER"])
    check("GroupUserResponse has no teamIds", "teamIds" not in jane)
    r = c.req("GET", P2 + "/groups/%s/users?username=invited%%40example.com" % DEV)
    eq("group username filter finds pending", [u["orgMembershipStatus"] for u in r.json()["results"]],
       ["PENDING"])
    r = c.req("GET", P2 + "/groups/%s/users?includeOrgUsers=true" % STAGING)
    check("includeOrgUsers adds org owners", ALICE in [u["id"] for u in r.json()["results"]])
    # singles
    eq("getGroup name", c.req("GET", P2 + "/groups/%s" % STAGING).json().get("name"), "acme-staging")
    r = c.req("GET", P2 + "/groups/%s" % STAGING)
    eq("getGroup resolves to 2023-01-01", r.h("Content-Type"), CT23)
    check("getGroup not deprecated", r.h("Deprecation") is None)
    eq("getOrg name", c.req("GET", P2 + "/orgs/%s" % ORG).json().get("name"), "Acme Corp")
    r = c.req("GET", P2 + "/orgs/%s/teams" % ORG)
    eq("listOrgTeams", sorted((t["id"], t["name"]) for t in r.json()["results"]),
       [(DBA, "dba-team"), (APP, "app-team")])
    eq("getOrgTeam", c.req("GET", P2 + "/orgs/%s/teams/%s" % (ORG, APP)).json().get("name"), "app-team")
    eq("getOrgUser", c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, BOB)).json().get("username"),
       "bob@example.com")
    eq("getGroupUser", c.req("GET", P2 + "/groups/%s/users/%s" % (STAGING, BOB)).json().get("roles"),
       ["GROUP_DATA_ACCESS_READ_WRITE"])
    r = c.req("GET", P2 + "/orgs/%s/teams/%s/users" % (ORG, DBA))
    eq("team users", sorted(u["id"] for u in r.json()["results"]), sorted([JANE, JOHN, ALICE, OWNER]))
    r = c.req("GET", P2)
    eq("system status", (r.status, r.json().get("appName"), r.json()["apiKey"]["publicKey"]),
       (200, "MongoDB Atlas", PUB))
    r = c.req("GET", "/api/atlas/v1.0/users/byName/jane%40example.com", accept="application/json")
    eq("v1.0 user byName", (r.status, r.json().get("id")), (200, JANE))
    # pagination over 1,200 bulk members
    ids = ctl(port, "POST", "users", {"count": 1200, "orgId": ORG, "groupIds": [PROD],
                                      "teamIds": [DBA], "prefix": "bulk"})["ids"]
    eq("bulk created 1200", len(ids), 1200)
    check("bulk ids are 24 hex", all(re.fullmatch(r"[a-f0-9]{24}", i) for i in ids))
    eq("bulk ids unique", len(set(ids)), 1200)
    seen, page, links = [], 1, None
    while True:
        r = c.req("GET", P2 + "/groups/%s/users?itemsPerPage=500&pageNum=%d" % (PROD, page))
        b = r.json()
        seen += [u["id"] for u in b["results"]]
        rels = {l["rel"]: l["href"] for l in b["links"]}
        if page == 2:
            check("page 2 has previous and next links", "previous" in rels and "next" in rels, rels)
            check("next link points at page 3", "pageNum=3" in rels.get("next", ""), rels)
        if "next" not in rels:
            break
        page += 1
    eq("3 pages of 500", page, 3)
    eq("totalCount with bulk", b["totalCount"], 1200 + 5)
    eq("all members seen once", len(set(seen)), 1205)
    r = c.req("GET", P2 + "/groups/%s/users?itemsPerPage=500&pageNum=9" % PROD)
    eq("page past the end is empty", r.json()["results"], [])
    r = c.req("GET", P2 + "/orgs/%s/users?username=bulk00600%%40example.com" % ORG)
    eq("bulk user findable by username", [u["id"] for u in r.json()["results"]], [ids[599]])
    ctl(port, "POST", "reset")
    ids2 = ctl(port, "POST", "users", {"count": 3, "orgId": ORG})["ids"]
    eq("bulk ids deterministic after reset", ids2, ids[:3])
    c.close()


def t_faults(ports):
    if not section("faults"):
        return
    port = ports["http_port"]
    ctl(port, "POST", "reset")
    c = Client(port)
    grp = P2 + "/groups/%s" % PROD
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 503, "retry_after": 7}]})
    r = c.req("GET", grp)
    eq("503 fault", r.status, 503)
    eq("503 errorCode", err_of(r).get("errorCode"), "SERVICE_UNAVAILABLE")
    eq("503 Retry-After", r.h("Retry-After"), "7")
    eq("fault consumed (count 1)", c.req("GET", grp).status, 200)
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 429, "count": 2,
                                             "match": "DELETE /api/atlas/v2/groups/"}]})
    eq("GET not matched by DELETE rule", c.req("GET", grp).status, 200)
    r = c.req("DELETE", grp + "/users/" + JOHN)
    eq("429 fault", (r.status, err_of(r).get("errorCode")), (429, "RATE_LIMITED"))
    eq("429 fault #2", c.req("DELETE", grp + "/users/" + JOHN).status, 429)
    eq("after 2 hits the real answer", c.req("DELETE", grp + "/users/" + JOHN).status, 204)
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 500,
                                             "match": "DELETE /api/atlas/v2/groups/{groupId}/users/{userId}",
                                             "process": True}]})
    r = c.req("DELETE", grp + "/users/" + CAROL)
    eq("500 UNEXPECTED_ERROR", (r.status, err_of(r).get("errorCode")), (500, "UNEXPECTED_ERROR"))
    check("process=true applied the removal", PROD not in ctl(port, "GET", "state?user=" + CAROL)["projects"])
    eq("retry after processed failure -> 404", c.req("DELETE", grp + "/users/" + CAROL).status, 404)
    # forever + clear
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 500, "count": -1}]})
    eq("count -1 #1", c.req("GET", grp).status, 500)
    eq("count -1 #2", c.req("GET", grp).status, 500)
    ctl(port, "DELETE", "faults")
    eq("cleared", c.req("GET", grp).status, 200)
    # auth endpoints exempt unless auth:true
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 500, "count": -1}]})
    eq("oauth not hit by default rule", get_token(port).status, 200)
    ctl(port, "DELETE", "faults")
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 503, "auth": True}]})
    eq("oauth hit with auth:true", get_token(port).status, 503)
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 500,
                                             "match": "/api/oauth/token"}]})
    eq("oauth hit by explicit match", get_token(port).status, 500)
    # connection-level faults
    ctl(port, "POST", "faults", {"faults": [{"kind": "reset"}]})
    try:
        c.req("GET", grp)
        check("reset -> connection error", False)
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        check("reset -> connection error", True)
        check("reset is an RST or a close", isinstance(e, (ConnectionResetError,
                                                             http.client.RemoteDisconnected)), repr(e))
    eq("next request reconnects", c.req("GET", grp).status, 200)
    ctl(port, "POST", "faults", {"faults": [{"kind": "reset_mid_body"}]})
    try:
        c.req("GET", P2 + "/orgs/%s/users" % ORG)
        check("reset_mid_body -> incomplete read", False)
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        check("reset_mid_body -> incomplete read", True, repr(e))
    c.close()
    ctl(port, "POST", "faults", {"faults": [{"kind": "hang", "seconds": 3}]})
    h = Client(port, timeout=0.5)
    t0 = time.monotonic()
    try:
        h.req("GET", grp)
        check("hang -> client timeout", False)
    except (socket.timeout, TimeoutError):
        check("hang -> client timeout", True)
    h.close()
    other = Client(port)
    eq("other connections served during a hang", other.req("GET", grp).status, 200)
    check("hang did not block", time.monotonic() - t0 < 2.5)
    other.close()
    ctl(port, "POST", "faults", {"faults": [{"kind": "slow_body", "interval_ms": 2}]})
    c = Client(port)
    t0 = time.monotonic()
    r = c.req("GET", grp)
    dt = time.monotonic() - t0
    eq("slow_body delivers the real answer", (r.status, r.json().get("name")), (200, "acme-prod"))
    check("slow_body is slow", dt >= len(r.body) * 0.002 * 0.8, "%.3fs for %d bytes" % (dt, len(r.body)))
    ctl(port, "POST", "faults", {"faults": [{"kind": "malformed_json"}]})
    r = c.req("GET", grp)
    eq("malformed_json status", r.status, 500)
    eq("malformed_json content type", r.h("Content-Type"), "application/json")
    try:
        r.json()
        check("malformed_json does not parse", False)
    except ValueError:
        check("malformed_json does not parse", True)
    ctl(port, "POST", "faults", {"faults": [{"kind": "html"}]})
    r = c.req("GET", grp)
    check("html fault", r.status == 502 and r.h("Content-Type").startswith("text/html") and
          b"<html>" in r.body)
    ctl(port, "POST", "faults", {"faults": [{"kind": "empty", "status": 503}]})
    r = c.req("GET", grp)
    eq("empty fault", (r.status, r.body), (503, b""))
    ctl(port, "POST", "faults", {"faults": [{"kind": "invalid_utf8"}]})
    r = c.req("GET", grp)
    eq("invalid_utf8 status", r.status, 400)
    try:
        r.body.decode("utf-8")
        check("invalid_utf8 body is not UTF-8", False)
    except UnicodeDecodeError:
        check("invalid_utf8 body is not UTF-8", True)
    ctl(port, "POST", "faults", {"faults": [{"kind": "oversized", "size": 3 * 1024 * 1024}]})
    r = c.req("GET", grp)
    eq("oversized body length", (r.status, len(r.body)), (500, 3 * 1024 * 1024))
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 500, "latency_ms": 300}]})
    t0 = time.monotonic()
    r = c.req("GET", grp)
    check("per-rule latency", r.status == 500 and time.monotonic() - t0 >= 0.28)
    eq("connection still usable after faults", c.req("GET", grp).status, 200)
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 429, "retry_after": 55,
                                             "error_code": "RATE_LIMITED_TOKEN_BUCKET"}]})
    r = c.req("GET", grp)
    eq("token bucket 429", err_of(r), {
        "detail": "Rate limit exceeded for api/atlas/v2/groups. Please retry after 55 seconds. "
                  "Request capacity: 10. Refill rate: 5 per 60 seconds.",
        "error": 429, "errorCode": "RATE_LIMITED_TOKEN_BUCKET",
        "parameters": ["api/atlas/v2/groups", 55, 10, 5, 60], "reason": "Too Many Requests"})
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 404, "envelope": 1}]})
    r = c.req("GET", grp + "?envelope=true")
    eq("fault answers are enveloped too", (r.status, r.json().get("status")), (200, 404))
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 403}]})
    r = c.req("GET", grp)
    eq("403 default code", (r.status, err_of(r).get("errorCode")), (403, "IP_ADDRESS_NOT_ON_ACCESS_LIST"))
    # faults do not consume the digest handshake
    ctl(port, "POST", "faults", {"faults": [{"kind": "status", "status": 502}]})
    fresh = Client(port)
    r = fresh.req("GET", grp)
    eq("fault hits the authenticated request, not the challenge", (r.status, fresh.challenges), (502, 1))
    fresh.close()
    cn = counters(port)
    check("faults_triggered counted", cn["faults_triggered"] >= 15, cn["faults_triggered"])
    eq("reset status recorded", cn["requests_by_status"].get("reset"), 1)
    eq("hang status recorded", cn["requests_by_status"].get("hang"), 1)
    c.close()
    ctl(port, "POST", "reset")


def t_latency_concurrency(port):
    if not section("latency"):
        return
    ctl(port, "POST", "reset")
    ctl(port, "POST", "config", {"latency_ms": 300})
    results = []

    def worker():
        cl = Client(port)
        results.append(cl.req("GET", P2 + "/groups/%s" % PROD).status)
        cl.close()

    ctl(port, "POST", "reset_counters")
    t0 = time.monotonic()
    ths = [threading.Thread(target=worker) for _ in range(6)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    dt = time.monotonic() - t0
    eq("6 parallel requests ok", results, [200] * 6)
    check("latency applies per request, in parallel", 0.6 <= dt < 3.0, "%.2fs" % dt)
    cn = counters(port)
    check("max_concurrent_requests >= 6", cn["max_concurrent_requests"] >= 6, cn["max_concurrent_requests"])
    eq("6 connections", cn["tcp_connections"], 6)
    ctl(port, "POST", "reset")
    eq("reset restores latency 0", ctl(port, "GET", "config")["latency_ms"], 0)


def t_keepalive(ports, certdir):
    if not section("keepalive"):
        return
    port = ports["http_port"]
    ctl(port, "POST", "reset")
    # 2000 requests to 3 projects in a few seconds: more than the projects set's buckets
    # allow (100 a minute each); this section measures connection reuse, not rate limits
    ctl(port, "POST", "config", {"rate_limits": {"enabled": False}})
    tok = get_token(port).json()["access_token"]
    ctl(port, "POST", "reset_counters")
    c = Client(port, auth=("bearer", tok))
    n = 2000
    t0 = time.monotonic()
    ok = 0
    for i in range(n):
        ok += c.req("GET", P2 + "/groups/%s" % (PROD, STAGING, DEV)[i % 3]).status == 200
    dt = time.monotonic() - t0
    eq("%d keep-alive requests ok" % n, ok, n)
    cn = counters(port)
    eq("one tcp connection for %d requests" % n, cn["tcp_connections"], 1)
    eq("requests_total", cn["requests_total"], n)
    print("  info keepalive: %d requests in %.2fs (%.0f req/s, one connection)" % (n, dt, n / dt))
    c.close()
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.crt"))
    ctl(port, "POST", "reset_counters")
    s = Client(ports["https_port"], tls_ctx=ctx)
    codes = {s.req("GET", P2 + "/orgs/%s/users" % ORG).status for _ in range(200)}
    eq("200 TLS requests on one connection", codes, {200})
    cn = counters(port)
    eq("one TLS connection", (cn["tcp_connections"], cn["tls_connections"]), (1, 1))
    check("self links use https on the TLS listener",
          s.req("GET", P2 + "/orgs").json()["links"][0]["href"].startswith("https://"))
    s.close()
    eq("counters: active_connections back to 0", counters(port)["active_connections"], 0)


def t_control(port):
    if not section("control"):
        return
    ctl(port, "POST", "reset")
    before = counters(port)["requests_total"]
    for _ in range(5):
        ctl(port, "GET", "counters")
        ctl(port, "GET", "state")
    eq("control calls not counted", counters(port)["requests_total"], before)
    c = Client(port)
    c.req("GET", P2 + "/orgs/%s/users?username=jane%%40example.com" % ORG,
          headers={"User-Agent": "atlas_users/0.1 test"})
    c.req("POST", P2 + "/orgs/%s/teams/%s:removeUser" % (ORG, APP),
          headers={"Content-Type": V25}, body={"id": BOB})
    tok = get_token(port).json()["access_token"]
    revoke(port, tok)
    log = ctl(port, "GET", "requests?limit=10")["requests"]
    eq("request log length (incl. the digest challenge)", len(log), 5)
    lookup = [e for e in log if e["method"] == "GET" and e["status"] == "200"][0]
    eq("log Accept", lookup["headers"].get("Accept"), V25)
    eq("log User-Agent", lookup["headers"].get("User-Agent"), "atlas_users/0.1 test")
    eq("log Authorization scheme only", lookup["headers"].get("Authorization"), "Digest")
    eq("log route template", lookup["route"], P2 + "/orgs/{orgId}/users")
    eq("log resolved version", lookup["version"], "2025-02-19")
    post = [e for e in log if "removeUser" in e["path"] and e["status"] == "200"][0]
    eq("log POST body", json.loads(post["body"]), {"id": BOB})
    eq("log POST content type", post["headers"].get("Content-Type"), V25)
    dump = json.dumps(log)
    check("no secrets in the request log", PRIV not in dump and SA_SECRET not in dump and tok not in dump
          and base64.b64encode(("%s:%s" % (SA_ID, SA_SECRET)).encode()).decode() not in dump)
    check("revoke body masked", any("token=***" in (e.get("body") or "") for e in log))
    # state and seed
    st = ctl(port, "GET", "state")
    eq("state counts", (len(st["orgs"]), len(st["projects"]), len(st["teams"]), len(st["users"])),
       (2, 4, 3, 14))
    check("state has no secrets", PRIV not in json.dumps(st) and SA_SECRET not in json.dumps(st))
    # the org has Acme's id: the kept credentials stay valid for Acme only
    small = {"orgs": [{"id": ORG, "name": "Tiny"}],
             "projects": [{"id": "0123456789abcdef0123456a", "orgId": ORG,
                           "name": "tiny-p"}],
             "users": [{"id": "0123456789abcdef0123456b", "username": "t@example.com",
                        "projects": {"0123456789abcdef0123456a": ["GROUP_OWNER"]}}]}
    r = ctl(port, "POST", "seed", small)
    eq("seed accepted", r.get("ok"), True)
    r = c.req("GET", P2 + "/groups/0123456789abcdef0123456a/users")
    eq("seeded state served (credentials kept)", [u["username"] for u in r.json()["results"]],
       ["t@example.com"])
    eq("bad seed rejected", ctl(port, "POST", "seed", {"orgs": [{"id": "XYZ"}]}).get("_status"), 400)
    ctl(port, "POST", "reset")
    eq("reset reloads the seed file", len(ctl(port, "GET", "state")["users"]), 14)
    eq("unknown config key rejected", ctl(port, "POST", "config", {"nope": 1}).get("_status"), 400)
    eq("unknown fault kind rejected", ctl(port, "POST", "faults",
                                          {"faults": [{"kind": "nope"}]}).get("_status"), 400)
    c.close()


def t_emuctl(port):
    if not section("emuctl"):
        return
    env = dict(os.environ, ATLAS_EMULATOR_URL="http://127.0.0.1:%d" % port)

    def run(*args, env=env):
        p = subprocess.run([sys.executable, EMUCTL] + list(args), capture_output=True, env=env,
                           timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    eq("emuctl reset", run("reset")[:2], (0, ""))
    c = Client(port)
    c.req("DELETE", P2 + "/groups/%s/users/%s" % (PROD, JOHN))
    c.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, CAROL), accept="application/json")
    # 401 challenge + 204, then the v1.0 DELETE reuses the nonce: 3 requests
    eq("get requests_total", run("get", "requests_total")[1], "3\n")
    eq("get removal_requests", run("get", "removal_requests")[1], "3\n")
    eq("get nested route key", run("get", "requests_by_route.DELETE /api/atlas/v2/groups/"
                                   "{groupId}/users/{userId}.204")[1], "1\n")
    eq("get key containing v1.0", run("get", "requests_by_route.DELETE /api/atlas/v1.0/groups/"
                                      "{GROUP-ID}/users/{USER-ID}.204")[1], "1\n")
    eq("get absent -> 0", run("get", "requests_by_route.GET /nothing.200")[1], "0\n")
    code, out, _ = run("counters")
    check("counters prints JSON", code == 0 and json.loads(out)["requests_total"] == 3)
    eq("fault", run("fault", '{"kind": "status", "status": 503}')[:2], (0, ""))
    eq("fault applied", c.req("GET", P2 + "/orgs").status, 503)
    run("fault", '{"faults": [{"kind": "status", "status": 500, "count": -1}]}')
    eq("faults listing", len(json.loads(run("faults")[1])["faults"]), 2)
    eq("clear-faults", run("clear-faults")[:2], (0, ""))
    eq("after clear-faults", c.req("GET", P2 + "/orgs").status, 200)
    code, out, _ = run("config", '{"token_ttl_s": 120}')
    check("config", code == 0 and json.loads(out)["token_ttl_s"] == 120)
    code, out, _ = run("users", json.dumps({"count": 3, "orgId": ORG, "groupIds": [DEV]}))
    lines = out.split()
    check("users prints ids one per line", code == 0 and len(lines) == 3 and
          all(re.fullmatch(r"[a-f0-9]{24}", x) for x in lines), out)
    code, out, _ = run("state", "jane@example.com")
    check("state USER", code == 0 and json.loads(out)["id"] == JANE)
    code, out, _ = run("requests", "2")
    check("requests N", code == 0 and len(json.loads(out)) == 2)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"orgs": [{"id": ORG, "name": "Only"}]}, f)
    eq("seed FILE", run("seed", f.name)[0], 0)
    os.unlink(f.name)
    eq("seeded", len(ctl(port, "GET", "state")["orgs"][0]["name"]), 4)
    eq("reset-counters", run("reset-counters")[:2], (0, ""))
    eq("counters zero", run("get", "requests_total")[1], "0\n")
    code, out, err = run("get", "requests_total", env=dict(env, ATLAS_EMULATOR_URL="http://127.0.0.1:1"))
    check("unreachable -> non-zero exit, stderr message, no stdout", code != 0 and out == "" and
          "emuctl:" in err)
    code, out, err = run("fault", "{not json")
    check("bad JSON -> non-zero exit", code != 0 and out == "" and err)
    code, out, err = run("fault", '{"kind": "nope"}')
    check("rejected rule -> non-zero exit", code != 0 and "unknown fault kind" in err, err)
    eq("wait", run("wait", "5")[:2], (0, "ok\n"))
    run("reset")
    c.req("GET", P2 + "/groups/%s/users" % PROD)
    code, out, _ = run("rate-limits")
    check("rate-limits prints the buckets", code == 0 and [
        (b["set"], b["scope"]) for b in json.loads(out)["buckets"]] == [("project_users", PROD)],
        out)
    eq("clear-rate-limits", run("clear-rate-limits")[:2], (0, ""))
    eq("no buckets left", json.loads(run("rate-limits")[1])["buckets"], [])
    code, out, _ = run("scale", '{"users": 50, "projects": 2, "teams": 3, "prefix": "ctl"}')
    check("scale", code == 0 and json.loads(out)["users"] == 50 and
          len(json.loads(out)["teamIds"]) == 3, out)
    run("reset")
    c.close()


# --------------------------------------------------------------------------
# production behaviours (issue 11, parts of 12 and 13)

def statuses_of(rs):
    return [r.status for r in rs]


def t_rate_limits(ports):
    if not section("ratelimits"):
        return
    port = ports["http_port"]
    ctl(port, "POST", "reset")
    cfg = ctl(port, "GET", "config")["rate_limits"]
    eq("defaults: enabled, headers, Retry-After",
       (cfg["enabled"], cfg["headers"], cfg["retry_after_header"]), (True, True, True))
    eq("default capacities", {k: v["capacity"] for k, v in cfg["sets"].items()},
       {"org_users": 500, "project_users": 1200, "teams": 1200, "orgs": 500, "org_list": 300,
        "projects": 1200, "invites": 1200, "v1": 100})
    check("default refill: the whole capacity every 60 s",
          all(v["refill_rate"] == v["capacity"] and v["refill_seconds"] == 60
              for v in cfg["sets"].values()), cfg["sets"])
    c = Client(port)
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("Ratelimit-Limit on a 200", r.h("Ratelimit-Limit"), "500")
    eq("Ratelimit-Remaining after the first request", r.h("Ratelimit-Remaining"), "499")
    check("header names as real answers spell them",
          "Ratelimit-Limit" in r.headers.keys() and "Ratelimit-Remaining" in r.headers.keys(),
          r.headers.keys())
    check("no Retry-After when not exceeded", r.h("Retry-After") is None)
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    eq("headers on an error answer too", (r.status, r.h("Ratelimit-Limit"),
                                          r.h("Ratelimit-Remaining")), (404, "500", "498"))
    r = c.req("GET", P2 + "/groups/%s/users" % PROD)
    eq("project users: capacity 1200", r.h("Ratelimit-Limit"), "1200")
    r = c.req("GET", P2 + "/orgs/%s/teams" % ORG)
    eq("teams: capacity 1200", r.h("Ratelimit-Limit"), "1200")
    c.close()

    # a small bucket: capacity 3, 2 tokens back every 2 s
    ctl(port, "POST", "config", {"rate_limits": {"sets": {"project_users": {
        "capacity": 3, "refill_rate": 2, "refill_seconds": 2}}}})
    ctl(port, "POST", "reset_counters")
    n429 = 0
    fresh = Client(port)
    path = P2 + "/groups/%s/users" % PROD
    rs = [fresh.req("GET", path) for _ in range(3)]
    eq("3 requests within the capacity", statuses_of(rs), [200] * 3)
    eq("the digest challenge took no token: Remaining 2, 1, 0",
       [r.h("Ratelimit-Remaining") for r in rs], ["2", "1", "0"])
    eq("one digest challenge", fresh.challenges, 1)
    r = fresh.req("GET", path)
    n429 += 1
    eq("4th request -> 429", r.status, 429)
    ra = int(r.h("Retry-After") or 0)
    check("Retry-After: whole seconds to the next refill (1..2)", 1 <= ra <= 2, r.h("Retry-After"))
    sp = "api/atlas/v2/groups/{groupId}/users"
    eq("429 body in Atlas's shape", r.json(), {
        "detail": "Rate limit exceeded for %s. Please retry after %d seconds. Request capacity: "
                  "3. Refill rate: 2 per 2 seconds." % (sp, ra),
        "error": 429, "errorCode": "RATE_LIMITED_TOKEN_BUCKET",
        "parameters": [sp, ra, 3, 2, 2], "reason": "Too Many Requests"})
    eq("429 Ratelimit headers", (r.h("Ratelimit-Limit"), r.h("Ratelimit-Remaining")), ("3", "0"))
    eq("429 content type", r.h("Content-Type"), "application/json")
    check("integer period printed without .0", b"2.0" not in r.body)
    r = fresh.req("GET", P2 + "/groups/%s/users" % DEV)
    eq("another project has its own bucket", (r.status, r.h("Ratelimit-Remaining")), (200, "2"))
    eq("another endpoint set is unaffected", fresh.req("GET", P2 + "/orgs/%s/users" % ORG).status,
       200)
    r = fresh.req("DELETE", P2 + "/groups/%s/users/%s" % (PROD, JOHN))
    n429 += 1
    eq("a removal shares the set's bucket -> 429", r.status, 429)
    check("john not removed by a 429", PROD in ctl(port, "GET", "state?user=" + JOHN)["projects"])
    r = fresh.req("GET", path + "?envelope=true")
    n429 += 1
    eq("enveloped 429", (r.status, err_of(r).get("status")), (200, 429))
    bks = ctl(port, "GET", "rate_limits")["buckets"]
    bk = [b for b in bks if b["set"] == "project_users" and b["scope"] == PROD][0]
    eq("bucket view", (bk["capacity"], bk["refill_rate"], bk["refill_seconds"], bk["tokens"],
                       bk["rate_limited"], bk["path"]), (3, 2, 2, 0, 3, sp))
    check("bucket view: next refill within the period", 0 < bk["next_refill_ms"] <= 2000, bk)
    left = bk["next_refill_ms"] / 1000.0
    if left > 0.4:
        time.sleep(left - 0.3)
        r = fresh.req("GET", path)
        n429 += 1
        eq("no token before the period ends (discrete refill)", r.status, 429)
        left = 0.3
    time.sleep(left + 0.15)
    rs = [fresh.req("GET", path) for _ in range(3)]
    n429 += 1
    eq("at the period's end 2 tokens came back, not 3", statuses_of(rs), [200, 200, 429])
    cn = counters(port)
    eq("rate_limited counter", cn["rate_limited"], n429)
    eq("rate_limited_by_set", cn["rate_limited_by_set"], {"project_users": n429})
    log = ctl(port, "GET", "requests?limit=1000")["requests"]
    # the log records the HTTP status: the enveloped 429 is there as a 200
    eq("the request log has every 429", sum(1 for e in log if e["status"] == "429"), n429 - 1)
    check("log entries name their bucket", all(e["rate_limit"] and e["rate_limit"]["set"] ==
                                               "project_users" for e in log
                                               if e["status"] == "429"))
    unauth = Client(port, auth=None)
    eq("no credentials -> 401", unauth.req("GET", path).status, 401)
    bk2 = [b for b in ctl(port, "GET", "rate_limits")["buckets"]
           if b["set"] == "project_users" and b["scope"] == PROD][0]
    eq("a 401 takes no token", bk2["taken"], bk["taken"] + 2)

    # fractional period, no headers, no Retry-After
    ctl(port, "POST", "config", {"rate_limits": {
        "headers": False, "retry_after_header": False,
        "sets": {"projects": {"capacity": 1, "refill_rate": 1, "refill_seconds": 0.5}}}})
    r1 = fresh.req("GET", P2 + "/groups/%s" % PROD)
    r2 = fresh.req("GET", P2 + "/groups/%s" % PROD)
    eq("capacity 1", (r1.status, r2.status), (200, 429))
    check("headers: false sends no Ratelimit headers",
          r1.h("Ratelimit-Limit") is None and r2.h("Ratelimit-Remaining") is None)
    check("retry_after_header: false sends no Retry-After", r2.h("Retry-After") is None)
    b2 = err_of(r2)
    check("fractional period in the text", "Refill rate: 1 per 0.5 seconds." in b2.get("detail", ""),
          b2.get("detail"))
    eq("fractional period in the parameters", b2.get("parameters"), ["api/atlas/v2/groups", 1, 1,
                                                                     1, 0.5])
    time.sleep(0.6)
    eq("refilled after 0.5 s", fresh.req("GET", P2 + "/groups/%s" % PROD).status, 200)
    # scopes: the client IP for GET /orgs and /groups; v1 routes
    ctl(port, "POST", "config", {"rate_limits": {"headers": True}})
    fresh.req("GET", P2 + "/groups")
    fresh.req("GET", P2 + "/orgs")
    fresh.req("GET", "/api/atlas/v1.0/groups/%s/users" % DEV, accept="application/json")
    fresh.req("GET", "/api/atlas/v1.0/users/byName/jane%40example.com", accept="application/json")
    scopes = {(b["set"], b["scope"]) for b in ctl(port, "GET", "rate_limits")["buckets"]}
    check("GET /groups and GET /orgs: IP scope", {("projects", "ip:127.0.0.1"),
                                                  ("org_list", "ip:127.0.0.1")} <= scopes, scopes)
    r1 = fresh.req("GET", P2 + "/orgs/%s" % ORG)
    r2 = fresh.req("GET", P2 + "/orgs/%s/invites" % ORG)
    eq("GET /orgs/{orgId} and the org's invitations share a bucket",
       int(r1.h("Ratelimit-Remaining")) - int(r2.h("Ratelimit-Remaining")), 1)
    r = fresh.req("GET", P2 + "/groups/%s/users" % ("e" * 24), accept=V25)
    eq("unknown group: 404 without rate-limit headers", (r.status, r.h("Ratelimit-Limit"),
                                                         r.h("Ratelimit-Remaining")),
       (404, None, None))
    check("v1.0: GROUP-ID or IP scope", {("v1", DEV), ("v1", "ip:127.0.0.1")} <= scopes, scopes)
    r = fresh.req("GET", P2)
    check("GET /api/atlas/v2 is not metered", r.h("Ratelimit-Limit") is None)
    r = get_token(port)
    check("the token endpoint is not bucket-metered", r.status == 200 and
          r.h("Ratelimit-Limit") is None)
    # disabled
    ctl(port, "POST", "config", {"rate_limits": {"enabled": False, "sets": {"projects": {
        "capacity": 1}}}})
    rs = [fresh.req("GET", P2 + "/groups/%s" % PROD) for _ in range(5)]
    eq("disabled: no 429", statuses_of(rs), [200] * 5)
    check("disabled: no headers", all(r.h("Ratelimit-Limit") is None for r in rs))
    eq("disabled: no buckets", ctl(port, "GET", "rate_limits")["buckets"], [])
    eq("bad config rejected", ctl(port, "POST", "config", {"rate_limits": {"sets": {
        "nope": {"capacity": 1}}}}).get("_status"), 400)
    eq("bad capacity rejected", ctl(port, "POST", "config", {"rate_limits": {"sets": {
        "teams": {"capacity": 0}}}}).get("_status"), 400)
    ctl(port, "POST", "reset")
    rl = ctl(port, "GET", "rate_limits")
    eq("reset restores the defaults and forgets the buckets",
       (rl["enabled"], rl["sets"]["project_users"]["capacity"], rl["sets"]["projects"]["capacity"],
        rl["buckets"]), (True, 1200, 1200, []))
    # listRateLimits
    ctl(port, "POST", "config", {"rate_limits": {"sets": {"project_users": {
        "capacity": 20, "refill_rate": 20, "refill_seconds": 1}}}})
    r = fresh.req("GET", P2 + "/rateLimits", accept="application/vnd.atlas.2025-03-12+json")
    sets = {x["endpointSetId"]: x for x in r.json()["results"]}
    pu = sets.get("project_users_group", {})
    eq("listRateLimits: the configured set", (r.status, pu.get("scope"), pu.get("capacity"),
                                               pu.get("refillRate"),
                                               pu.get("refillDurationSeconds")),
       (200, "GROUP", {"value": 20}, {"value": 20}, {"value": 1}))
    check("listRateLimits: its endpoints", {"method": "DELETE",
                                            "path": P2 + "/groups/{groupId}/users/{userId}"}
          in pu.get("endpoints", []), pu)
    check("listRateLimits: orgs and GET /orgs", {"orgs_organization", "org_list_ip"} <= set(sets),
          sets)
    check("listRateLimits: not metered", r.h("Ratelimit-Limit") is None)
    ctl(port, "POST", "config", {"rate_limits": {"listed": False}})
    eq("listRateLimits: listed false -> 404", fresh.req(
        "GET", P2 + "/rateLimits", accept="application/vnd.atlas.2025-03-12+json").status, 404)
    ctl(port, "POST", "reset")
    fresh.close()


def raw_get(port, path, source=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15,
                                   source_address=(source, 0) if source else None)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r


def t_service_accounts(port):
    if not section("service accounts"):
        return
    ctl(port, "POST", "reset")
    eq("token_cap default", ctl(port, "GET", "config")["token_cap"], 100)
    ctl(port, "POST", "config", {"token_cap": 3})
    toks = [get_token(port) for _ in range(3)]
    eq("3 tokens within the cap", statuses_of(toks), [200] * 3)
    r = get_token(port)
    eq("4th active token -> 403", r.status, 403)
    eq("403 access_denied body", r.json(), {
        "error": "access_denied", "error_description": "Access Token limit reached. Please use "
        "the existing Access Tokens or create a new Service Account."})
    cn = counters(port)
    eq("token_cap_denied", (cn["token_cap_denied"], cn["token_grants"]), (1, 3))
    eq("active tokens of the account", cn["active_tokens_by_client"].get(SA_ID), 3)
    eq("another service account has its own cap",
       get_token(port, GSA_ID, GSA_SECRET).status, 200)
    eq("revoke", revoke(port, toks[0].json()["access_token"]).status, 200)
    eq("a revoked token frees a place", get_token(port).status, 200)
    eq("cap reached again", get_token(port).status, 403)
    ctl(port, "POST", "expire_tokens")
    eq("expired tokens free their places", get_token(port).status, 200)
    # reset forgets the accounting, issued tokens stay valid
    ctl(port, "POST", "config", {"token_ttl_s": 3600})
    kept = [get_token(port).json()["access_token"] for _ in range(2)]
    eq("cap reached", get_token(port).status, 403)
    ctl(port, "POST", "reset")
    ctl(port, "POST", "config", {"token_cap": 3})
    eq("after a reset the accounting starts again", get_token(port).status, 200)
    eq("tokens issued before the reset stay valid",
       Client(port, auth=("bearer", kept[0])).req("GET", P2 + "/orgs").status, 200)
    # 50 a minute per (client IP, client id)
    ctl(port, "POST", "reset")
    ctl(port, "POST", "config", {"token_rate_limit": 2})
    codes = [get_token(port).status for _ in range(3)]
    eq("2 a minute from 127.0.0.1: 3rd -> 429", codes, [200, 200, 429])
    eq("the same client from another IP address has its own limit",
       get_token(port, source="127.0.0.2").status, 200)
    eq("another client from the same address has its own limit",
       get_token(port, GSA_ID, GSA_SECRET).status, 200)
    eq("token_rate_limited", counters(port)["token_rate_limited"], 1)
    ctl(port, "POST", "reset")


def t_digest_prod(ports, certdir):
    if not section("digest production"):
        return
    port = ports["http_port"]
    ctl(port, "POST", "reset")
    c = Client(port, auth=None)
    path = P2 + "/groups/%s" % PROD
    r = c.raw("GET", path, {"Accept": V25})
    nonce = CHALLENGE_RE.match(r.h("WWW-Authenticate")).group(1)
    r = c.raw("GET", path, {"Accept": V25, "Authorization": digest_header(PUB, PRIV, "GET", path,
                                                                          nonce, 1, qop=None)})
    eq("digest without qop (RFC 2069) -> 401", r.status, 401)
    m = CHALLENGE_RE.match(r.h("WWW-Authenticate") or "")
    check("without qop: a fresh challenge, stale=false", m is not None and m.group(2) == "false"
          and m.group(1) != nonce)
    r = c.raw("GET", path, {"Accept": V25, "Authorization": digest_header(PUB, PRIV, "GET", path,
                                                                          nonce, 1)})
    eq("the same nonce with qop=auth -> 200", r.status, 200)
    eq("nonce_ttl_s default kept", ctl(port, "GET", "config")["nonce_ttl_s"], 300)
    c.close()
    # libcurl: exactly one extra 401 per nonce expiry
    try:
        lc = LibCurl()
    except OSError as e:
        check("libcurl loadable", False, e)
        return
    ctl(port, "POST", "config", {"nonce_ttl_s": 1})
    ctl(port, "POST", "reset_counters")
    s = lc.session("%s:%s" % (PUB, PRIV), ["Accept: " + V25])
    codes = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.4:
        codes.append(lc.perform(s, "GET", "http://127.0.0.1:%d%s/groups/%s/users" %
                                (port, P2, (PROD, STAGING, DEV)[len(codes) % 3])))
        time.sleep(0.05)
    lc.close(s)
    cn = counters(port)
    eq("libcurl: every call succeeds across nonce expiries", set(codes), {(0, 200)})
    stale = cn["digest_stale_challenges"]
    check("libcurl: the nonce expired 3 times in 3.4 s (1 s nonces)", 2 <= stale <= 4, stale)
    eq("libcurl: 401s = first challenge + one per expiry", cn["digest_challenges"], 1 + stale)
    log = ctl(port, "GET", "requests?limit=1000")["requests"]
    sts = [e["status"] for e in log]
    check("libcurl: each 401 is followed by a 200", all(
        sts[i + 1] == "200" for i in range(len(sts) - 1) if sts[i] == "401") and sts[-1] == "200",
        sts)
    ctl(port, "POST", "reset")


def t_shapes(port):
    if not section("shapes"):
        return
    ctl(port, "POST", "reset")
    c = Client(port, auth=None)
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("401 body pretty-printed as real answers", r.body,
       b'{\n  "error" : 401,\n  "reason" : "Unauthorized",\n  "detail" : "You are not authorized '
       b'for this resource.",\n  "errorCode" : "UNEXPECTED_ERROR"\n}')
    check("401 body has no parameters", b"parameters" not in r.body)
    ctl(port, "POST", "config", {"legacy_401_body": True})
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    eq("legacy_401_body: no errorCode", r.json(), {"error": 401, "reason": "Unauthorized",
                                                   "detail": "You are not authorized for this "
                                                             "resource."})
    c.close()
    ctl(port, "POST", "reset")
    c = Client(port)
    r = c.req("DELETE", P2 + "/groups/not-an-id/users/%s" % JANE)
    eq("X-Error-Code on 400", (r.status, r.h("X-Error-Code")), (400, "INVALID_GROUP_ID"))
    r = c.req("DELETE", P2 + "/groups/%s/users/%s" % (STAGING, OWNER))
    eq("X-Error-Code on 409", (r.status, r.h("X-Error-Code")),
       (409, "CANNOT_REMOVE_LAST_PROJECT_OWNER"))
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    eq("X-Error-Code on 404", (r.status, r.h("X-Error-Code")), (404, "USER_NOT_FOUND"))
    r = c.req("GET", P2 + "/orgs/%s" % ORG)
    check("no X-Error-Code on a 200", r.h("X-Error-Code") is None)
    r = c.req("DELETE", P2 + "/orgs/%s/teams/%s/users/%s" % (ORG, APP, BOB), accept=V23)
    eq("deprecated 204: content type, Deprecation, Sunset",
       (r.status, r.h("Content-Type"), r.h("Deprecation"), r.h("Sunset")),
       (204, CT23, "Wed, 19 Feb 2025 00:00:00 GMT", "Thu, 1 Jul 2027 00:00:00 GMT"))
    r = c.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, JOHN),
              accept="application/json")
    eq("v1.0 204 content type", (r.status, r.h("Content-Type")),
       (204, "application/json;charset=utf-8"))
    ctl(port, "POST", "config", {"today": "2027-07-02"})
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG, accept=V23)
    eq("410 Sunset header unpadded", (r.status, r.h("Sunset")),
       (410, "Thu, 1 Jul 2027 00:00:00 GMT"))
    ctl(port, "POST", "config", {"today": None, "null_parameters": True})
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG, accept="text/html")
    eq("null_parameters: [] becomes null", (r.status, "parameters" in r.json(),
                                            r.json().get("parameters")), (406, True, None))
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    eq("null_parameters: true keeps non-empty parameters", err_of(r).get("parameters"), [NOBODY])
    ctl(port, "POST", "config", {"null_parameters": "all"})
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    eq("null_parameters: all", err_of(r).get("parameters", []), None)
    ctl(port, "POST", "config", {"null_parameters": False})
    b = c.req("GET", P2 + "/orgs/%s/users" % ORG).json()
    users = {u["id"]: u for u in b["results"]}
    check("an ACTIVE user without a mobile number: mobileNumber null",
          "mobileNumber" in users[OWNER] and users[OWNER]["mobileNumber"] is None, users[OWNER])
    eq("an ACTIVE user's mobile number", users[JANE].get("mobileNumber"), "2125550101")
    check("a PENDING user has no mobileNumber", "mobileNumber" not in users[INVITED])
    g = Client(port, auth=("digest", GPUB, GPRIV))
    b = g.req("GET", P2 + "/orgs/%s/users" % GLOBEX).json()
    hank = [u for u in b["results"] if u["id"] == HANK][0]
    eq("a PENDING user invited by an API key: inviterUsername is the public key",
       (hank["orgMembershipStatus"], hank["inviterUsername"]), ("PENDING", GPUB))
    g.close()
    c.close()


def t_owners(port):
    if not section("owners"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)
    st = ctl(port, "GET", "state")
    for o in st["orgs"]:
        check("seed: org %s has an ACTIVE owner" % o["name"], any(
            u["status"] == "ACTIVE" and "ORG_OWNER" in u["orgs"].get(o["id"], [])
            for u in st["users"]))
    for p in st["projects"]:
        check("seed: project %s has an ACTIVE owner" % p["name"], any(
            u["status"] == "ACTIVE" and "GROUP_OWNER" in u["projects"].get(p["id"], [])
            for u in st["users"]))
    own = [u for u in st["users"] if u["id"] == OWNER][0]
    eq("owner@example.com", (own["username"], own["orgs"], sorted(own["projects"]),
                             sorted(own["teamIds"])),
       ("owner@example.com", {ORG: ["ORG_OWNER"]}, sorted([PROD, STAGING, DEV]), sorted([DBA, APP])))
    gdel = lambda g, u: c.req("DELETE", P2 + "/groups/%s/users/%s" % (g, u))
    odel = lambda o, u, cl=c: cl.req("DELETE", P2 + "/orgs/%s/users/%s" % (o, u))
    r = gdel(STAGING, OWNER)
    eq("last Project Owner (project removal) -> 409", (r.status, err_of(r).get("errorCode")),
       (409, "CANNOT_REMOVE_LAST_PROJECT_OWNER"))
    eq("409 parameters", err_of(r).get("parameters"), [OWNER, STAGING])
    r = c.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (STAGING, OWNER),
              accept="application/json")
    eq("last Project Owner (v1.0) -> 409", r.status, 409)
    eq("a project with another owner", gdel(PROD, OWNER).status, 204)
    r = gdel(PROD, ALICE)
    eq("now alice is acme-prod's last owner -> 409", (r.status, err_of(r).get("errorCode")),
       (409, "CANNOT_REMOVE_LAST_PROJECT_OWNER"))
    r = odel(ORG, ALICE)
    eq("org removal of a project's last owner -> 409 (guess)",
       (r.status, err_of(r).get("errorCode"), err_of(r).get("parameters")),
       (409, "CANNOT_REMOVE_LAST_PROJECT_OWNER", [ALICE, PROD]))
    a = ctl(port, "GET", "state?user=" + ALICE)
    check("nothing of alice removed", ORG in a["orgs"] and PROD in a["projects"] and
          DBA in a["teamIds"], a)
    r = odel(ORG, OWNER)
    eq("org removal of owner@ (acme-staging's last owner) -> 409",
       (r.status, err_of(r).get("errorCode")), (409, "CANNOT_REMOVE_LAST_PROJECT_OWNER"))
    (pend,) = ctl(port, "POST", "users", {"count": 1, "orgId": ORG, "groupIds": [STAGING],
                                          "status": "PENDING", "groupRoles": ["GROUP_OWNER"],
                                          "orgRoles": ["ORG_OWNER"], "prefix": "pendowner"})["ids"]
    eq("a PENDING owner is never blocked", odel(ORG, pend).status, 204)
    (o2,) = ctl(port, "POST", "users", {"count": 1, "orgId": ORG, "orgRoles": ["ORG_OWNER"],
                                        "prefix": "owner2"})["ids"]
    eq("an Organization Owner who is not the last", odel(ORG, o2).status, 204)
    g = Client(port, auth=("digest", GPUB, GPRIV))
    r = odel(GLOBEX, GOWNER, g)
    eq("last Organization Owner -> 409", (r.status, err_of(r).get("errorCode"),
                                          err_of(r).get("parameters")),
       (409, "CANNOT_REMOVE_LAST_ORG_OWNER", [GOWNER, GLOBEX]))
    eq("409 X-Error-Code", r.h("X-Error-Code"), "CANNOT_REMOVE_LAST_ORG_OWNER")
    check("the Globex owner stays", GLOBEX in ctl(port, "GET", "state?user=" + GOWNER)["orgs"])
    r = odel(GLOBEX, "65f0d0000000000000000007", g)
    eq("dave leaves Globex (globex-team keeps its owner)", r.status, 204)
    r = g.req("DELETE", P2 + "/orgs/%s/teams/%s/users/%s" % (GLOBEX, GTEAM, GOWNER), accept=V23)
    eq("the team's last user stays (team removal)", (r.status, err_of(r).get("errorCode")),
       (400, "CANNOT_REMOVE_LAST_USER_FROM_TEAM"))
    g.close()
    c.close()
    ctl(port, "POST", "reset")


def t_multi_org(port):
    if not section("organizations"):
        return
    ctl(port, "POST", "reset")
    a = Client(port)
    g = Client(port, auth=("digest", GPUB, GPRIV))
    eq("acme key lists Acme only", [o["id"] for o in a.req("GET", P2 + "/orgs").json()["results"]],
       [ORG])
    eq("globex key lists Globex only", [o["id"] for o in g.req("GET", P2 + "/orgs").json()
                                        ["results"]], [GLOBEX])
    eq("globex key lists globex-prod only", [p["id"] for p in g.req("GET", P2 + "/groups").json()
                                             ["results"]], [GPROD])
    eq("acme key: Acme's projects", sorted(p["id"] for p in a.req("GET", P2 + "/groups").json()
                                           ["results"]), sorted([PROD, STAGING, DEV]))
    eq("globex key on Globex -> 200", g.req("GET", P2 + "/orgs/%s/users" % GLOBEX).status, 200)
    ctl(port, "POST", "reset_counters")
    for label, cl, path in (("globex key on an Acme org", g, "/orgs/%s/users" % ORG),
                            ("globex key on an Acme project", g, "/groups/%s/users" % PROD),
                            ("acme key on Globex", a, "/orgs/%s/teams" % GLOBEX),
                            ("acme key on a Globex project", a, "/groups/%s" % GPROD)):
        r = cl.req("GET", P2 + path)
        eq(label + " -> 401", r.status, 401)
        eq(label + ": the standard 401 body", r.json(), UNAUTH)
        check(label + ": a challenge, stale=false",
              (CHALLENGE_RE.match(r.h("WWW-Authenticate") or "") or [0, 0, ""])[2] == "false")
    r = g.req("DELETE", P2 + "/groups/%s/users/%s" % (PROD, JOHN))
    eq("globex key cannot remove in Acme", r.status, 401)
    check("john still in acme-prod", PROD in ctl(port, "GET", "state?user=" + JOHN)["projects"])
    r = g.req("DELETE", "/api/atlas/v1.0/groups/%s/users/%s" % (PROD, JOHN),
              accept="application/json")
    eq("nor through v1.0", r.status, 401)
    r = g.req("GET", P2 + "/orgs/65f0a00000000000000000ff/users")
    eq("an unknown org still answers 404", (r.status, err_of(r).get("errorCode")),
       (404, "ORG_NOT_FOUND"))
    cn = counters(port)
    eq("org_scope_rejections", cn["org_scope_rejections"], 6)
    eq("those 401s are not digest challenges", cn["digest_challenges"], 0)
    r = g.req("GET", P2)
    eq("system status: the key's roles in its org only", [x["orgId"] for x in
                                                          r.json()["apiKey"]["roles"]], [GLOBEX])
    gt = get_token(port, GSA_ID, GSA_SECRET).json()["access_token"]
    b = Client(port, auth=("bearer", gt))
    eq("globex service account on Globex", b.req("GET", P2 + "/orgs/%s/users" % GLOBEX).status, 200)
    eq("globex service account on Acme -> 401",
       b.req("GET", P2 + "/orgs/%s/users" % ORG).status, 401)
    at = get_token(port).json()["access_token"]
    b2 = Client(port, auth=("bearer", at))
    eq("acme service account on Globex -> 401",
       b2.req("GET", P2 + "/groups/%s/users" % GPROD).status, 401)
    eq("acme service account on Acme", b2.req("GET", P2 + "/groups/%s/users" % PROD).status, 200)
    cn = counters(port)
    bp = cn["requests_by_principal"]
    eq("requests_by_principal", bp, {"digest:" + PUB: 2, "digest:" + GPUB: 6,
                                     "bearer:" + GSA_ID: 2, "bearer:" + SA_ID: 2})
    log = ctl(port, "GET", "requests?limit=3")["requests"]
    eq("the request log names the principal", log[-1]["principal"], "bearer:" + SA_ID)
    for cl in (a, g, b, b2):
        cl.close()


def t_listings(port):
    if not section("listings"):
        return
    ctl(port, "POST", "reset")
    c = Client(port)
    r = c.req("GET", P2 + "/orgs/%s/groups" % ORG)
    b = r.json()
    eq("org projects", [p["name"] for p in b["results"]], ["acme-prod", "acme-staging", "acme-dev"])
    eq("org projects: totalCount and content type", (b["totalCount"], r.h("Content-Type")),
       (3, CT23))
    check("org projects: Group shape", all(k in b["results"][0] for k in
                                           ("clusterCount", "created", "id", "name", "orgId")))
    r = c.req("GET", P2 + "/orgs/%s/groups?name=ACME-S" % ORG)
    eq("org projects: name prefix filter", [p["id"] for p in r.json()["results"]], [STAGING])
    r = c.req("GET", P2 + "/orgs/%s/groups?itemsPerPage=2" % ORG)
    check("org projects: paginated", any(l["rel"] == "next" for l in r.json()["links"]))
    r = c.req("GET", P2 + "/groups/%s/teams" % STAGING)
    eq("project teams (TeamRole)", [(t["teamId"], t["roleNames"]) for t in r.json()["results"]],
       [(DBA, ["GROUP_DATA_ACCESS_ADMIN"])])
    check("project teams: links", r.json()["results"][0]["links"][0]["rel"] == "self")
    r = c.req("GET", P2 + "/groups/%s/teams" % DEV)
    eq("project teams of acme-dev", [t["teamId"] for t in r.json()["results"]], [APP])

    def members(q, gid=STAGING, acc=V25):
        b = c.req("GET", P2 + "/groups/%s/users%s" % (gid, q), accept=acc).json()
        return {u["id"]: u.get("roles") for u in b["results"]}

    direct = members("")
    eq("direct members only by default", sorted(direct), sorted([JANE, BOB, ERIN, OWNER]))
    flat = members("?flattenTeams=true")
    eq("flattenTeams adds the team's users", sorted(flat), sorted([JANE, BOB, ERIN, OWNER, JOHN,
                                                                   ALICE]))
    eq("team-reached user: the team's roles (guess)", flat[JOHN], ["GROUP_DATA_ACCESS_ADMIN"])
    eq("direct member keeps its direct roles", flat[JANE], ["GROUP_READ_ONLY"])
    orgu = members("?includeOrgUsers=true")
    eq("includeOrgUsers adds ORG_OWNER and ORG_READ_ONLY users", sorted(orgu),
       sorted([JANE, BOB, ERIN, OWNER, ALICE]))
    eq("org owner: GROUP_OWNER (guess)", orgu[ALICE], ["GROUP_OWNER"])
    both = members("?flattenTeams=true&includeOrgUsers=true")
    eq("both: union of roles", both[ALICE], ["GROUP_DATA_ACCESS_ADMIN", "GROUP_OWNER"])
    eq("flattenTeams=false and includeOrgUsers=false", sorted(members(
        "?flattenTeams=false&includeOrgUsers=false")), sorted(direct))
    check("2023 version: flattenTeams too", JOHN in members("?flattenTeams=true", acc=V23) and
          JOHN not in members("", acc=V23))
    eq("bad flag -> 400", c.req("GET", P2 + "/groups/%s/users?flattenTeams=yes" % STAGING).status,
       400)
    # invitations
    r = c.req("GET", P2 + "/orgs/%s/invites" % ORG, accept=V25)
    inv = r.json()
    eq("org invitations: the PENDING users, not the legacy project invitee",
       sorted(i["username"] for i in inv), ["invited@example.com"])
    eq("org invitations: deprecated 2023-01-01",
       (r.h("Content-Type"), r.h("Deprecation"), r.h("Sunset")), (CT23, DEPRECATION, SUNSET))
    check("org invitations: a JSON array", isinstance(inv, list))
    oi = [i for i in inv if i["username"] == "invited@example.com"][0]
    eq("OrganizationInvitation", (sorted(oi), oi["orgName"], oi["roles"], oi["inviterUsername"]),
       (sorted(["createdAt", "expiresAt", "groupRoleAssignments", "id", "inviterUsername",
                "orgId", "orgName", "roles", "teamIds", "username"]),
        "Acme Corp", ["ORG_MEMBER"], "alice@example.com"))
    eq("org invitation id = its PENDING user's id - 1", int(INVITED, 16) - int(oi["id"], 16), 1)
    eq("OrganizationInvitation project roles", oi["groupRoleAssignments"],
       [{"groupId": DEV, "groupRoles": ["GROUP_READ_ONLY"]}])
    eq("org invitations: username filter", [i["id"] for i in c.req(
        "GET", P2 + "/orgs/%s/invites?username=INVITED%%40example.com" % ORG).json()], [oi["id"]])
    eq("org invitation by id", c.req("GET", P2 + "/orgs/%s/invites/%s" % (ORG, oi["id"])).json()
       ["username"], "invited@example.com")
    r = c.req("GET", P2 + "/groups/%s/invites" % DEV)
    gi = r.json()
    eq("project invitations: the legacy invitee only", [(i["username"], i["roles"], i["groupName"])
                                                        for i in gi],
       [("legacy.invite@example.com", ["GROUP_READ_ONLY"], "acme-dev")])
    eq("project invitation shape", sorted(gi[0]), sorted([
        "createdAt", "expiresAt", "groupId", "groupName", "id", "inviterUsername",
        "roles", "username"]))
    eq("project invitations: Deprecation: Wed, 4 Oct 2023",
       (r.h("Deprecation"), r.h("Sunset")), ("Wed, 4 Oct 2023 00:00:00 GMT", SUNSET))
    check("project and org invitation ids differ", gi[0]["id"] not in [i["id"] for i in inv])
    eq("no invitations in acme-prod", c.req("GET", P2 + "/groups/%s/invites" % PROD).json(), [])
    r = c.req("DELETE", P2 + "/groups/%s/invites/%s" % (DEV, gi[0]["id"]))
    eq("delete a project invitation", (r.status, r.h("Content-Type")), (204, CT23))
    eq("project invitation gone", c.req("GET", P2 + "/groups/%s/invites" % DEV).json(), [])
    check("deleting a project invitation leaves the org invitation",
          "invited@example.com" in [i["username"] for i in c.req(
              "GET", P2 + "/orgs/%s/invites" % ORG).json()])
    r = c.req("GET", P2 + "/groups/%s/invites/%s" % (DEV, gi[0]["id"]))
    eq("deleted invitation -> 404", (r.status, err_of(r).get("errorCode"), r.h("X-Error-Code")),
       (404, "INVITATION_NOT_FOUND", "INVITATION_NOT_FOUND"))
    eq("delete an org invitation", c.req("DELETE", P2 + "/orgs/%s/invites/%s" %
                                         (ORG, oi["id"])).status, 204)
    st = ctl(port, "GET", "state?user=" + INVITED)
    eq("the invitee left the org", (st["orgs"], st["projects"], st["teamIds"]), ({}, {}, []))
    r = c.req("GET", P2 + "/orgs/%s/users?orgMembershipStatuses=PENDING" % ORG)
    eq("no PENDING user left in the org users", r.json()["results"], [])
    # federation
    r = c.req("GET", P2 + "/orgs/%s/federationSettings" % ORG)
    f = r.json()
    eq("no identity provider: 200 INACTIVE (the real answer)",
       (r.status, f["identityProviderStatus"], f["identityProviderId"], f["federatedDomains"],
        f["hasRoleMappings"]), (200, "INACTIVE", None, [], False))
    r = c.req("GET", P2 + "/federationSettings/%s/connectedOrgConfigs/%s/roleMappings" %
              (f["id"], ORG))
    eq("INACTIVE: no connected org config", r.status, 404)
    g = Client(port, auth=("digest", GPUB, GPRIV))
    r = g.req("GET", P2 + "/orgs/%s/federationSettings" % GLOBEX)
    f = r.json()
    eq("federated org: OrgFederationSettings", (r.status, sorted(f)), (200, sorted([
        "federatedDomains", "hasRoleMappings", "id", "identityProviderId",
        "identityProviderStatus"])))
    check("identityProviderId: 20 hex digits", re.fullmatch(r"[a-f0-9]{20}",
                                                             f["identityProviderId"]), f)
    eq("federated org: ACTIVE", f["identityProviderStatus"], "ACTIVE")
    ctl(port, "POST", "federation", {"orgId": GLOBEX, "roleMappings": [
        {"externalGroupName": "idp-admins", "roleAssignments": [{"orgId": GLOBEX,
                                                                 "role": "ORG_OWNER"}]},
        {"externalGroupName": "idp-devs", "roleAssignments": [{"groupId": GLOBEX,
                                                               "role": "GROUP_READ_ONLY"}]}]})
    base = P2 + "/federationSettings/%s/connectedOrgConfigs/%s" % (f["id"], GLOBEX)
    r = g.req("GET", base + "/roleMappings")
    eq("role mappings: both groups", (r.status, [m["externalGroupName"] for m in
                                                 r.json()["results"]]),
       (200, ["idp-admins", "idp-devs"]))
    r = g.req("GET", base)
    eq("connected org config", (r.status, r.json()["orgId"],
                                len(r.json()["roleMappings"])), (200, GLOBEX, 2))
    eq("another federation id -> 404", g.req("GET", P2 + "/federationSettings/%s/"
                                             "connectedOrgConfigs/%s" % ("0" * 24, GLOBEX)).status,
       404)
    g.close()
    # scale
    ctl(port, "POST", "reset")
    t0 = time.monotonic()
    sc = ctl(port, "POST", "scale", {"users": 20000, "projects": 200, "teams": 300,
                                     "prefix": "big"})
    dt = time.monotonic() - t0
    check("scale: 20,000 users, 200 projects, 300 teams in seconds", dt < 15 and
          (sc.get("users"), len(sc.get("projectIds", [])), len(sc.get("teamIds", []))) ==
          (20000, 200, 300), (dt, {k: v for k, v in sc.items() if not k.endswith("Ids")}))
    print("  info scale: 20,000 users built in %.2fs" % dt)
    oid = sc["orgId"]
    eq("scale: deterministic ids", (oid, sc["ownerId"], sc["firstUserId"], sc["lastUserId"]),
       ("5ca1e0%018x" % 1, "5ca1e3%06x%012x" % (1, 0), "5ca1e4%06x%012x" % (1, 1),
        "5ca1e4%06x%012x" % (1, 19999)))
    ctl(port, "POST", "config", {"rate_limits": {"enabled": False}})
    pages, seen, url = 0, set(), P2 + "/orgs/%s/users?itemsPerPage=500" % oid
    t0 = time.monotonic()
    while url and pages < 100:
        r = c.req("GET", url)
        b = r.json()
        pages += 1
        seen.update(u["id"] for u in b["results"])
        nxt = [l["href"] for l in b["links"] if l["rel"] == "next"]
        url = nxt[0].split(str(port), 1)[1] if nxt else None
    dt = time.monotonic() - t0
    eq("scale: 20,000 org users at 500 a page = 40 pages", (pages, len(seen), b["totalCount"]),
       (40, 20000, 20000))
    print("  info scale: 40 pages of 500 org users in %.2fs" % dt)
    r = c.req("GET", P2 + "/groups/%s/users" % sc["projectIds"][7])
    eq("scale: users spread over the projects (100 each, the owner too)", r.json()["totalCount"],
       101)
    r = c.req("GET", P2 + "/orgs/%s/teams/%s/users?itemsPerPage=500" % (oid, sc["teamIds"][5]))
    check("scale: users spread over the teams", 60 <= r.json()["totalCount"] <= 70,
          r.json()["totalCount"])
    r = c.req("DELETE", P2 + "/orgs/%s/users/%s" % (oid, sc["ownerId"]))
    eq("scale: the owner is kept (last Organization Owner)", r.status, 409)
    eq("scale: a second call with the same prefix is refused",
       ctl(port, "POST", "scale", {"users": 2, "prefix": "big"}).get("_status"), 400)
    c.close()
    ctl(port, "POST", "reset")


def t_hostile(port):
    if not section("hostile"):
        return
    ctl(port, "POST", "reset")
    ctl(port, "POST", "config", {"reflect_headers": True})
    c = Client(port)
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    d = err_of(r).get("detail", "")
    check("reflect_headers: an API error echoes the Authorization header",
          'Authorization: Digest username="%s"' % PUB in d and "User-Agent: emulator-selftest" in d,
          d)
    bad = Client(port, auth=("digest", PUB, "wrong"))
    r = bad.req("GET", P2 + "/orgs")
    check("reflect_headers: a 401 echoes it too", r.status == 401 and
          "Authorization: Digest" in r.json()["detail"], r.body[:300])
    r = get_token(port, secret="nope")
    basic = base64.b64encode(("%s:nope" % SA_ID).encode()).decode()
    check("reflect_headers: the token endpoint's error echoes the Basic credentials",
          r.status == 401 and "Authorization: Basic " + basic in r.json()["error_description"],
          r.body[:300])
    ctl(port, "POST", "config", {"reflect_headers": False})
    r = c.req("GET", P2 + "/orgs/%s/users/%s" % (ORG, NOBODY))
    check("reflect_headers off: no headers in errors", "Authorization" not in err_of(r)["detail"])
    bad.close()
    # endless pages
    ctl(port, "POST", "config", {"endless_pages": {"enabled": True, "page_bytes": 20000,
                                                   "delay_ms": 100,
                                                   "match": "/orgs/%s/users" % ORG}})
    url = P2 + "/orgs/%s/users?itemsPerPage=100" % ORG
    ids, sizes, t0 = set(), [], time.monotonic()
    ok = True
    for page in range(1, 6):
        r = c.req("GET", url)
        b = r.json()
        sizes.append(len(r.body))
        nxt = [l["href"] for l in b["links"] if l["rel"] == "next"]
        ok = ok and r.status == 200 and nxt and "pageNum=%d" % (page + 1) in nxt[0]
        ok = ok and all(re.fullmatch(r"[a-f0-9]{24}", u["id"]) and "@" in u["username"]
                        for u in b["results"])
        ids.update(u["id"] for u in b["results"])
        url = nxt[0].split(str(port), 1)[1]
    dt = time.monotonic() - t0
    check("endless: 5 pages, each with a next link to pageNum+1 and valid results", ok)
    check("endless: pages padded to about page_bytes", all(20000 <= x <= 24000 for x in sizes),
          sizes)
    check("endless: new ids on every page", len(ids) == sum(1 for _ in ids) and
          len(ids) >= 5 * 30, len(ids))
    check("endless: delay_ms per page", dt >= 0.5, dt)
    check("endless: totalCount beyond what was sent", b["totalCount"] > 5 * len(b["results"]))
    r = c.req("GET", P2 + "/groups/%s/users" % PROD)
    check("endless: other routes answer normally",
          not any(l["rel"] == "next" for l in r.json()["links"]))
    ctl(port, "POST", "config", {"endless_pages": {"next_host": "other.example", "delay_ms": 0,
                                                   "page_bytes": 1048576}})
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    nxt = [l["href"] for l in r.json()["links"] if l["rel"] == "next"][0]
    check("endless: next_host", nxt.startswith("http://other.example/api/atlas/v2/orgs/%s/users?" %
                                               ORG), nxt)
    check("endless: 1 MiB pages", 1048576 <= len(r.body) <= 1100000, len(r.body))
    ctl(port, "POST", "config", {"endless_pages": {"enabled": False}})
    r = c.req("GET", P2 + "/orgs/%s/users" % ORG)
    check("endless off: the last page has no next link",
          not any(l["rel"] == "next" for l in r.json()["links"]))
    c.close()
    ctl(port, "POST", "reset")


def t_shutdown(proc, ports, pf):
    if not section("shutdown"):
        return
    port = ports["http_port"]
    ctl(port, "POST", "faults", {"faults": [{"kind": "hang", "seconds": 600}]})
    h = Client(port, timeout=30)
    th = threading.Thread(target=lambda: _swallow(lambda: h.req("GET", P2 + "/orgs")), daemon=True)
    th.start()
    time.sleep(0.5)
    idle = Client(port)
    idle.req("GET", P2 + "/orgs")  # leaves an idle keep-alive connection open
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
        proc.kill()
    check("SIGTERM exits promptly despite a hanging request", rc is not None and
          time.monotonic() - t0 < 5, time.monotonic() - t0)
    eq("exit status 0", rc, 0)
    check("port file removed on exit", not os.path.exists(pf))
    log = os.path.join(os.path.dirname(pf), "emulator.stderr")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    eq("emulator wrote nothing to stderr (no --verbose, no tracebacks)", text, "")


def t_verbose_plain(tmp):
    """Second instance: no certificate (no TLS listener), --verbose, SIGINT."""
    if not section("plain"):
        return
    pf = os.path.join(tmp, "plain-ports.json")
    errp = os.path.join(tmp, "plain.stderr")
    with open(errp, "wb") as err:
        p = subprocess.Popen([sys.executable, EMU, "--http-port", "0", "--https-port", "0",
                              "--seed", SEED, "--port-file", pf, "--verbose",
                              "--latency-ms", "50"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(pf) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        ports = json.load(open(pf))
        eq("no TLS listener without --cert/--key", ports.get("https_port"), None)
        c = Client(ports["http_port"])
        t0 = time.monotonic()
        eq("plain instance serves", c.req("GET", P2 + "/groups/%s" % PROD).status, 200)
        check("--latency-ms applies", time.monotonic() - t0 >= 0.1)  # challenge + request
        eq("config shows the command-line latency", ctl(ports["http_port"], "GET", "config")
           ["latency_ms"], 50)
        ctl(ports["http_port"], "POST", "reset")
        eq("reset keeps the command-line latency", ctl(ports["http_port"], "GET", "config")
           ["latency_ms"], 50)
        c.close()
        p.send_signal(signal.SIGINT)
        eq("SIGINT exit status", p.wait(timeout=10), 0)
        lines = [l for l in open(errp, errors="replace").read().splitlines()
                 if "/api/atlas/v2/groups/" in l]
        eq("--verbose logs one line per API request", len(lines), 2)
    finally:
        if p.poll() is None:
            p.kill()


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass


def main():
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            print("emulator selftest: 0 passed, 1 failed (%s not found)" % tool)
            return 1
    tmp = tempfile.mkdtemp(prefix="atlas-emu-selftest-")
    proc = None
    try:
        make_certs(tmp)
        proc, ports, pf = start_emulator(tmp)
        port = ports["http_port"]
        t_startup(ports, proc)
        t_digest(port)
        t_curl(ports, tmp)
        t_libcurl(ports, tmp)
        t_oauth(port)
        t_token_serials(port)
        t_versions(port)
        t_removal(port)
        t_envelope(port)
        t_lookup(port)
        t_faults(ports)
        t_latency_concurrency(port)
        t_keepalive(ports, tmp)
        t_control(port)
        t_emuctl(port)
        t_rate_limits(ports)
        t_service_accounts(port)
        t_digest_prod(ports, tmp)
        t_shapes(port)
        t_owners(port)
        t_multi_org(port)
        t_listings(port)
        t_hostile(port)
        t_shutdown(proc, ports, pf)
        t_verbose_plain(tmp)
    except Exception as e:
        import traceback
        traceback.print_exc()
        R.section = "harness"
        check("no unexpected exception", False, repr(e))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if R.failed:
            log = os.path.join(tmp, "emulator.stderr")
            if os.path.exists(log) and os.path.getsize(log):
                print("---- emulator stderr ----")
                with open(log, errors="replace") as f:
                    print(f.read()[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)
    print("emulator selftest: %d passed, %d failed" % (R.passed, R.failed))
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
