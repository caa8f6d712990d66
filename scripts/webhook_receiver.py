"""A minimal webhook receiver for the review desk's decisions, as a platform would write one.

    WEBHOOK_SECRET=whsec_... python scripts/webhook_receiver.py [--port 9000]

It verifies each request's Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) with the ``standardwebhooks`` package, answers 401 to a bad one, skips an
event id it already applied (delivery is at least once) and an event older than the last one it
applied for the same post (``seq``), and prints one line per event it applies. Stdlib otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

applied_ids: set[str] = set()  # a real receiver keeps these two in its database
last_seq: dict[tuple[str, str], int] = {}


class Receiver(BaseHTTPRequestHandler):
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = self.webhook.verify(body, dict(self.headers))  # the raw bytes, as sent
        except WebhookVerificationError as exc:
            self.send_response(401)
            self.end_headers()
            print(f"refused: {exc}", flush=True)
            return
        data = event["data"]
        post = (data["post"]["source"], data["post"]["external_id"])
        if data["event_id"] in applied_ids or data["seq"] <= last_seq.get(post, 0):
            print(f"already applied: {data['event_id']}", flush=True)
        else:
            applied_ids.add(data["event_id"])
            last_seq[post] = data["seq"]
            # here the platform acts: remove, restrict, label or restore the post
            print(json.dumps({"type": event["type"], "post": post, "policy_action": data["policy_action"],
                              "final": data["final"], "label": data["label"]}), flush=True)  # fmt: skip
        self.send_response(204)  # any 2xx within the timeout counts as delivered
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    HTTPServer((args.host, args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
