"""Sends the UI test's errors to a Calm collector with the real sentry-sdk.

usage: sentry_ui.py DSN

Three exception kinds from three in-app functions (3, 5 and 7 events, 2 users, tags,
breadcrumbs, environment "ui", a release), and hostile text in a message, an exception
value, a tag value, a breadcrumb and a user name. Prints a JSON summary (what was sent,
for the browser test's expectations) as its last line.
"""

import json
import sys

import sentry_sdk

HOSTILE = '<img src=x onerror="window.__xss=1;alert(1)"><script>alert(2)</script>'


def parse_amount(n):
    raise ValueError(f"invalid amount {n}")


def lookup_user(n):
    users = {}
    return users[f"user-{n}"]


def compute_ratio(n):
    return n / 0


KINDS = [(parse_amount, 3, "ValueError"), (lookup_user, 5, "KeyError"), (compute_ratio, 7, "ZeroDivisionError")]


def main():
    dsn = sys.argv[1]
    sentry_sdk.init(dsn=dsn, environment="ui", release="calm-ui@1.0.0", default_integrations=False, in_app_include=["__main__"])
    sent = []
    for fn, times, kind in KINDS:
        for i in range(times):
            sentry_sdk.set_user({"id": f"u{i % 2}"})
            sentry_sdk.set_tag("kind", fn.__name__)
            sentry_sdk.add_breadcrumb(category="calm.ui", message=f"step {i} of {fn.__name__}", level="info")
            try:
                fn(i)
            except Exception:  # noqa: BLE001
                sentry_sdk.capture_exception()
        sent.append({"title_prefix": kind, "count": times})
    # Hostile text: a message, an exception value, a tag, a breadcrumb, a user name.
    sentry_sdk.set_user({"id": "h", "username": HOSTILE})
    sentry_sdk.set_tag("payload", HOSTILE)
    sentry_sdk.add_breadcrumb(category="hostile", message=HOSTILE, level="warning", data={"html": HOSTILE})
    for _ in range(2):
        sentry_sdk.capture_message("hostile " + HOSTILE, level="error")
    try:
        raise RuntimeError("hostile value " + HOSTILE)
    except RuntimeError:
        sentry_sdk.capture_exception()
    sent.append({"title_prefix": "hostile <img", "count": 2})
    sent.append({"title_prefix": "RuntimeError: hostile value", "count": 1})
    flushed = sentry_sdk.flush(timeout=30)
    print(json.dumps({"issues": sent, "hostile": HOSTILE, "flushed": flushed is not False}))


if __name__ == "__main__":
    main()
