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
    ncs = "%08x" % nc
    resp = hashlib.md5(("%s:%s:%s:%s:%s:%s" % (ha1, nonce, ncs, cnonce, qop, ha2)).encode()
                       ).hexdigest()
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", cnonce="%s", nc=%s, '
            'qop=%s, response="%s", algorithm=MD5' % (user, realm, nonce, uri, cnonce, ncs, qop,
                                                      resp))


class Client:
    """Persistent HTTP/1.1 connection with digest (nonce reuse, nc++) or bearer auth."""

    def __init__(self, port, tls_ctx=None, auth=("digest", PUB, PRIV), timeout=15):
        self.port = port
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
                                                       timeout=self.timeout)
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
              ctype="application/x-www-form-urlencoded"):
    c = Client(port, auth=None)
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
    c.close()


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
        t_versions(port)
        t_removal(port)
        t_envelope(port)
        t_lookup(port)
        t_faults(ports)
        t_latency_concurrency(port)
        t_keepalive(ports, tmp)
        t_control(port)
        t_emuctl(port)
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
