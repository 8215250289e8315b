"""Sends exceptions with the real sentry-sdk and times each capture call and the flush.

usage: sentry_relay.py DSN TAG COUNT

Raises COUNT ValueErrors whose message starts with TAG, captures each with
capture_exception, then flushes. Prints a JSON line:
  {"sent": COUNT, "capture_ms": [...per call...], "flush_ms": F, "event_ids": [...]}
capture_ms is what the app's request path pays; flush_ms is how long the SDK's
background transport needed to hand everything to the DSN's host.
"""

import json
import sys
import time

import sentry_sdk


def main():
    dsn, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sentry_sdk.init(dsn=dsn, release="calm-relay-test@1.0.0", environment="ci",
                    transport_queue_size=1000)
    times, ids = [], []
    for i in range(count):
        try:
            raise ValueError(f"{tag} relayed failure")
        except ValueError:
            t0 = time.perf_counter()
            ids.append(sentry_sdk.capture_exception())
            times.append((time.perf_counter() - t0) * 1000.0)
    t0 = time.perf_counter()
    sentry_sdk.flush(timeout=30)
    flush_ms = (time.perf_counter() - t0) * 1000.0
    print(json.dumps({"sent": count, "capture_ms": times, "flush_ms": flush_ms, "event_ids": ids}))


if __name__ == "__main__":
    main()
