"""Sends tagged errors to a Calm collector with the real sentry-sdk.

usage: sentry_tags.py DSN

240 events of one exception kind, each with tags `color` (uneven), `shard` and
`request_id` (a new value each time) and one of 5 users; then one event each of three
other exception kinds (issues to triage in bulk). Prints a JSON summary with the exact
count per tag value sent.
"""

import json
import sys
from collections import Counter

import sentry_sdk

RUNS = 240
COLORS = ["red", "red", "green", "blue"]


def tagged_failure(n):
    raise LookupError(f"tagged failure {n}")


def bulk_a(n):
    raise KeyError(f"bulk-a {n}")


def bulk_b(n):
    raise TypeError(f"bulk-b {n}")


def bulk_c(n):
    raise IndexError(f"bulk-c {n}")


def capture(fn, n):
    try:
        fn(n)
    except Exception:  # noqa: BLE001 - every kind is reported
        sentry_sdk.capture_exception()


def main():
    dsn = sys.argv[1]
    sentry_sdk.init(
        dsn=dsn,
        release="calm-tags@2.0.0",
        environment="staging",
        default_integrations=True,
        transport_queue_size=1000,
    )
    counts = {"color": Counter(), "shard": Counter(), "user": Counter()}
    for i in range(RUNS):
        with sentry_sdk.new_scope() as scope:
            color, shard, user = COLORS[i % 4], f"s{i % 7}", f"u{i % 5}"
            scope.set_tag("color", color)
            scope.set_tag("shard", shard)
            scope.set_tag("request_id", f"req-{i}")
            scope.set_user({"id": user})
            counts["color"][color] += 1
            counts["shard"][shard] += 1
            counts["user"][f"id:{user}"] += 1
            capture(tagged_failure, i)
        if i % 40 == 39:
            sentry_sdk.flush(timeout=60)
    for k, fn in enumerate([bulk_a, bulk_b, bulk_c]):
        capture(fn, k)
    sentry_sdk.flush(timeout=60)
    print(json.dumps({"tagged": RUNS, "bulk": 3, "counts": counts}))


if __name__ == "__main__":
    main()
