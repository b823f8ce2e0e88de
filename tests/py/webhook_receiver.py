"""A Standard Webhooks receiver for the end-to-end tests.

Listens on 127.0.0.1 (a free port, printed as the first line of stdout), answers the first
`--fail` requests for each `webhook-id` with 503, and verifies every later one with the `standardwebhooks` library,
answering 204 when the signature holds and 400 when it does not. Each request it sees is printed
as one JSON line: {"verified": bool, "id": ..., "body": {...} | null, "error": ...}.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument(
        "--fail", type=int, default=0, help="answer this many requests per webhook-id with 503"
    )
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    seen = {}
    # Requests are handled on threads: one lock keeps the counts right and each record on a
    # line of its own (`print` writes the text and the newline separately).
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            message = self.headers.get("webhook-id")
            with lock:
                seen[message] = seen.get(message, 0) + 1
                tries = seen[message]
            record = {"id": message, "verified": False, "body": None}
            if tries <= args.fail:
                record["error"] = "failing on purpose"
                status = 503
            else:
                try:
                    record["body"] = webhook.verify(body, dict(self.headers.items()))
                    record["verified"] = True
                    status = 204
                except WebhookVerificationError as e:
                    record["error"] = str(e)
                    status = 400
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            with lock:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
