"""Sends N events with the real sentry-sdk and prints which ones were acknowledged.

usage: sentry_ledger.py DSN N INTERVAL_SECONDS

Event i is `capture_message("ledger event <code>")` with its own fingerprint, where
<code> is two letters (aa, ab, ...: no digits, so no message templating merges them).
After each event the client is flushed, so the HTTP answer to event i is known before
event i+1 is sent. The transport records the HTTP status of every envelope it sent.
Last line: a JSON summary {"sent": N, "acked": [codes answered 2xx],
"refused": {"<status>": count}, "failed": count of requests without an answer}.
"""

import json
import sys
import time

import sentry_sdk
from sentry_sdk.transport import HttpTransport

STATUS = {}
FAILED = set()


class LedgerTransport(HttpTransport):
    """The SDK's own HTTP transport, noting the answer to each event."""

    def _handle_response(self, response, envelope):
        if envelope is not None:
            event_id = envelope.headers.get("event_id")
            if event_id:
                STATUS[str(event_id)] = response.status
        return super()._handle_response(response=response, envelope=envelope)

    def _handle_request_error(self, envelope=None, loss_reason="network", record_reason="network_error"):
        if envelope is not None and envelope.headers.get("event_id"):
            FAILED.add(str(envelope.headers.get("event_id")))
        return super()._handle_request_error(envelope=envelope, loss_reason=loss_reason, record_reason=record_reason)


def code(i):
    return chr(97 + i // 26) + chr(97 + i % 26)


def main():
    dsn, n, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sentry_sdk.init(
        dsn=dsn,
        transport=LedgerTransport,
        default_integrations=False,
        shutdown_timeout=30,
    )
    ids = {}
    for i in range(n):
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ledger", code(i)]
            ids[code(i)] = str(sentry_sdk.capture_message(f"ledger event {code(i)}", level="error"))
        sentry_sdk.flush(timeout=30)
        time.sleep(interval)
    acked, refused = [], {}
    for c, event_id in ids.items():
        status = STATUS.get(event_id)
        if status is not None and 200 <= status < 300:
            acked.append(c)
        elif status is not None:
            refused[str(status)] = refused.get(str(status), 0) + 1
    failed = sum(1 for e in ids.values() if e in FAILED and e not in STATUS)
    print(json.dumps({"sent": n, "acked": acked, "refused": refused, "failed": failed}))


if __name__ == "__main__":
    main()
