"""A stand-in for FCM and Google's token endpoint, for the end-to-end tests (APNs, which speaks
only HTTP/2, is `tests/src/apns.rs`).

Listens on 127.0.0.1 (a free port, printed as the first line of stdout). `POST /token` answers
an OAuth access token; every other POST answers 200. Each request is printed as one JSON line:
{"path", "headers": {lower-case name: value}, "body": parsed JSON or the form text}.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# Requests are handled on threads: one lock keeps each record on a line of its own (`print`
# writes the text and the newline separately).
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length).decode()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            sys.stdout.write(json.dumps({"path": self.path, "headers": headers, "body": body}) + "\n")
            sys.stdout.flush()
        answer = b"{}"
        if self.path == "/token":
            answer = json.dumps({"access_token": "ya29.test-token", "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
