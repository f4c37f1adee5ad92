#!/usr/bin/python3
"""Loopback HTTP server for fable's download tests (tests/cli/data_download.sh).

usage: data_http_server.py ROOT PORTFILE LOGFILE
Serves the files under ROOT on 127.0.0.1 at a free port (written to PORTFILE once
listening). Every request is logged to LOGFILE as "<path> <Range header or ->".
Paths:
  /NAME            the file, honouring "Range: bytes=N-" (206 + Content-Range; 416 past the end)
  /norange/NAME    the file, ignoring Range (always 200 with the whole body)
  /truncate/NAME   announces the whole length but sends only the first half, then closes
"""
import http.server
import os
import re
import sys

root, portfile, logfile = sys.argv[1], sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        rng = self.headers.get("Range")
        with open(logfile, "a") as f:
            f.write("%s %s\n" % (self.path, rng or "-"))
        mode, name = "plain", self.path.lstrip("/")
        for m in ("norange", "truncate"):
            if name.startswith(m + "/"):
                mode, name = m, name[len(m) + 1:]
        path = os.path.join(root, os.path.basename(name))
        if not os.path.isfile(path):
            self.send_error(404, "no such file")
            return
        with open(path, "rb") as f:
            data = f.read()
        n = len(data)
        start = 0
        if rng and mode == "plain":
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m:
                start = int(m.group(1))
                if start >= n:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % n)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, n - 1, n))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "truncate":
            self.send_header("Connection", "close")
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up early (fable restarting a download) are expected


server = Server(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
