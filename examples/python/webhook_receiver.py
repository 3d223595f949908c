"""A tiny webhook receiver: verifies each delivery with the Standard
Webhooks library, ignores deliveries it has already seen (same
`webhook-id`), and prints one JSON line per event.

    WEBHOOK_SECRET=whsec_... python3 webhook_receiver.py --port 8000

Answer 2xx only after the event is safely handled: the notifier retries
anything else (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). It delivers at
least once and in no particular order, so deduplicate on `webhook-id`.
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--max", type=int, default=0, help="exit after this many distinct events (0: never)"
    )
    args = parser.parse_args()
    verifier = Webhook(os.environ["WEBHOOK_SECRET"])
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            length = int(self.headers.get("content-length", "0"))
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = verifier.verify(body, headers)
            except WebhookVerificationError as error:
                print(f"rejected: {error}", file=sys.stderr)
                self.send_response(400)
                self.end_headers()
                return
            event_id = headers["webhook-id"]
            if event_id not in seen:
                seen.add(event_id)
                print(json.dumps({"id": event_id, "type": event["type"]}), flush=True)
            self.send_response(204)
            self.end_headers()
            if args.max and len(seen) >= args.max:
                # Answered already; stop after this request.
                server.done = True  # type: ignore[attr-defined]

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    server.done = False  # type: ignore[attr-defined]
    while not server.done:  # type: ignore[attr-defined]
        server.handle_request()


if __name__ == "__main__":
    main()
