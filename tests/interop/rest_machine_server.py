"""A machine controller's REST API over HTTPS, as its own process so a test can kill it like a
controller losing power. Python's standard library only; the test makes the certificates.

usage: python rest_machine_server.py PORT CERT_FILE KEY_FILE

  GET  /health                          200 "ok" (the gateway's probe)
  GET  /api/v1/machine/state            {"mode": "auto", "cycle": n}, n counting requests;
                                        401 without "Authorization: Bearer t0ken"
  GET  /api/v1/machine/counters?shift=  {"parts": 42, "shift": <shift>}
  PUT  /api/v1/machine/setpoint         200 {"accepted": <the JSON body>}
  GET  /api/v1/machine/broken           500 "spindle overheated"
  GET  /api/v1/machine/slow             200 after 5 s
"""

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

cycle = 0
lock = threading.Lock()


class Machine(BaseHTTPRequestHandler):
    def answer(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.answer(200, "ok", "text/plain")

    def do_GET(self):
        global cycle
        url = urlsplit(self.path)
        if url.path == "/health":
            return self.answer(200, "ok", "text/plain")
        if url.path == "/api/v1/machine/state":
            if self.headers.get("Authorization") != "Bearer t0ken":
                return self.answer(401, {"error": "no token"})
            with lock:
                cycle += 1
                return self.answer(200, {"mode": "auto", "cycle": cycle})
        if url.path == "/api/v1/machine/counters":
            shift = parse_qs(url.query).get("shift", [None])[0]
            return self.answer(200, {"parts": 42, "shift": shift})
        if url.path == "/api/v1/machine/broken":
            return self.answer(500, "spindle overheated", "text/plain")
        if url.path == "/api/v1/machine/slow":
            time.sleep(5)
            return self.answer(200, "late", "text/plain")
        return self.answer(404, {"error": "no such resource"})

    def do_PUT(self):
        if urlsplit(self.path).path != "/api/v1/machine/setpoint":
            return self.answer(404, {"error": "no such resource"})
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        return self.answer(200, {"accepted": body})

    def log_message(self, *args):
        pass


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", port), Machine)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
