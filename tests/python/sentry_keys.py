"""Sends exceptions with the real sentry-sdk and reports the HTTP status its transport
got for each envelope (what the SDK itself sees of the agent's verdict on its key).

usage: sentry_keys.py DSN TAG COUNT

Prints a JSON line: {"sent": COUNT, "statuses": [200, ...]}
"""

import json
import sys

import sentry_sdk
from sentry_sdk.transport import HttpTransport

STATUSES = []


class RecordingTransport(HttpTransport):
    """The SDK's own HTTP transport, noting each response's status."""

    def _handle_response(self, response, envelope):
        STATUSES.append(response.status)
        return super()._handle_response(response=response, envelope=envelope)


def main():
    dsn, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sentry_sdk.init(dsn=dsn, release="calm-keys-test@1.0.0", environment="ci",
                    transport=RecordingTransport)
    for _ in range(count):
        try:
            raise ValueError(f"{tag} keyed failure")
        except ValueError:
            sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=30)
    print(json.dumps({"sent": count, "statuses": STATUSES}))


if __name__ == "__main__":
    main()
