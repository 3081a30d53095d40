#!/usr/bin/env python3
"""test/proxy.py: a small HTTP CONNECT proxy for the tests, on loopback.

    proxy.py --port-file FILE --log FILE --capture FILE
             [--refuse] [--user USER --password PASSWORD]

Listens on 127.0.0.1 (a free port, written to --port-file) and serves
CONNECT tunnels to loopback hosts only; anything else gets 405 (another
method) or 403 (another host).  Every request head gets one JSON line in
--log: {"method", "target", "status", "proxy_auth"} (proxy_auth: whether
a Proxy-Authorization header came, never its value).  Every byte that goes
through a tunnel, both ways, is appended to --capture, so that a test can
check that nothing in it is readable: what a real proxy could see.

--refuse answers every CONNECT with 403, as a proxy whose policy forbids
the destination.  --user and --password make it want Basic proxy
credentials (407 without them or with others).
"""
import argparse
import base64
import json
import os
import select
import signal
import socket
import socketserver
import sys
import threading

LOCK = threading.Lock()


def log_line(path, entry):
    """Append one JSON line to the log."""
    with LOCK, open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def capture(path, data):
    """Append tunnel bytes to the capture file."""
    with LOCK, open(path, "ab") as f:
        f.write(data)


def read_head(sock):
    """The request head (up to the blank line), or None."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > 65536:
            return None
    return buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def loopback(host):
    """Is host a loopback name or address?"""
    return host in ("localhost", "[::1]", "::1") or host.startswith("127.")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        opts = self.server.opts
        head = read_head(self.request)
        if head is None:
            return
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        method, target = (parts + ["", ""])[:2]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        auth = headers.get("proxy-authorization")
        entry = {"method": method, "target": target, "proxy_auth": auth is not None}
        status = self.decide(opts, method, target, auth)
        entry["status"] = status
        log_line(opts.log, entry)
        if status != 200:
            extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
            reason = {403: "Forbidden", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
                      502: "Bad Gateway"}[status]
            self.request.sendall(("HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n"
                                  % (status, reason, extra)).encode())
            return
        host, port = target.rsplit(":", 1)
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.relay(opts, upstream)

    @staticmethod
    def decide(opts, method, target, auth):
        """The status a request head gets."""
        if method != "CONNECT":
            return 405
        if opts.refuse or ":" not in target or not loopback(target.rsplit(":", 1)[0]):
            return 403
        if opts.user is not None:
            want = "Basic " + base64.b64encode(("%s:%s" % (opts.user, opts.password)).encode()).decode()
            if auth != want:
                return 407
        return 200

    def relay(self, opts, upstream):
        """Copy bytes both ways until either side closes."""
        socks = [self.request, upstream]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    capture(opts.capture, data)
                    (upstream if s is self.request else self.request).sendall(data)
        finally:
            upstream.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--capture", required=True)
    ap.add_argument("--refuse", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--password")
    opts = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.opts = opts
    open(opts.log, "a").close()
    open(opts.capture, "ab").close()
    tmp = opts.port_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": srv.server_address[1], "pid": os.getpid()}, f)
    os.rename(tmp, opts.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    main()
