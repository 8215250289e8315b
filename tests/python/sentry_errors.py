"""Sends errors to a Calm collector with the real sentry-sdk.

usage: sentry_errors.py DSN storm|regress|gzip

storm:   5 kinds of exceptions from 5 code paths, 100 times each (a number in each
         message varies), 40 + 10 capture_message calls of two templates, and one
         exception with an explicit fingerprint. Prints a JSON summary.
regress: raises the ZeroDivisionError kind once more.
"""

import json
import sys

import sentry_sdk

RUNS = 100


class PaymentDeclined(Exception):
    """A domain error of the app."""


def parse_amount(n):
    raise ValueError(f"invalid amount {n}")


def lookup_user(n):
    users = {}
    return users[f"user-{n}"]


def compute_ratio(n):
    return n / 0


def charge_card(n):
    raise PaymentDeclined(f"card declined, attempt {n} of 0x{n * 4096:x}")


def load_config(n):
    try:
        open(f"/nonexistent/calm-{n}.conf", encoding="utf-8")
    except OSError as e:
        raise RuntimeError(f"config {n} missing") from e


KINDS = [parse_amount, lookup_user, compute_ratio, charge_card, load_config]


def capture(fn, n):
    try:
        fn(n)
    except Exception:  # noqa: BLE001 - every kind is reported
        sentry_sdk.capture_exception()


def storm():
    sent = 0
    for i in range(RUNS):
        for k, fn in enumerate(KINDS):
            sentry_sdk.set_user({"id": i % 7, "email": f"u{i % 7}@example.com"})
            sentry_sdk.set_tag("kind", fn.__name__)
            sentry_sdk.add_breadcrumb(category="calm.test", message=f"step {i}.{k}", level="info")
            capture(fn, i * 7 + k)
            sent += 1
        if i % 10 == 9:
            sentry_sdk.flush(timeout=60)
    for i in range(40):
        sentry_sdk.capture_message(f"Payment {i} failed for order {1000 + i}", level="warning")
    for i in range(10):
        sentry_sdk.capture_message(f"Queue length {i * 11} over limit", level="info")
    sentry_sdk.flush(timeout=60)
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["calm-explicit", "{{ default }}"]
        capture(parse_amount, 1)
    sentry_sdk.flush(timeout=60)
    print(json.dumps({"exceptions": sent, "messages": 50, "fingerprinted": 1}))


def regress():
    capture(compute_ratio, 4242)
    sentry_sdk.flush(timeout=60)
    print(json.dumps({"exceptions": 1}))


def main():
    dsn, mode = sys.argv[1], sys.argv[2]
    sentry_sdk.init(
        dsn=dsn,
        release="calm-test@1.0.0",
        environment="ci",
        default_integrations=True,
        max_breadcrumbs=20,
        transport_queue_size=1000,
    )
    {"storm": storm, "regress": regress}[mode]()
    sentry_sdk.flush(timeout=60)


if __name__ == "__main__":
    main()
