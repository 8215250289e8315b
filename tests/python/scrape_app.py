"""A scrape target for tests/tests/agent_scrape*.rs, built on the real prometheus_client.

    python3 scrape_app.py PORT [--text-only]

GET /metrics serves counters, gauges, a histogram, summaries (with quantiles), an info
metric, a series with a timestamp, label values with escapes and a label that clashes
with the scraper's `job`, through prometheus_client's own encoders: OpenMetrics or
the text format as the Accept header asks (prometheus_client.exposition.choose_encoder),
or always the text format with --text-only.

Values are a function of how many times *this client* (told apart by User-Agent:
Prometheus vs calm-agent) has scraped, so the N-th scrape by each scraper sees the same
body whatever the moment, and the test can compare value sequences strictly. Values
stop changing after FREEZE_AT scrapes. One series (app_session_active) exists only in
the first 3 scrapes, to check stale markers.

Misbehaving paths for the bad-target tests:
    /garbage  a body that is not exposition format
    /huge     100 MB of valid samples, streamed without Content-Length
    /endless  samples streamed forever
    /hang     accepts the connection and never answers
    /many     5000 samples (for sample_limit)
GET /stats answers JSON {client: scrapes}.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import CollectorRegistry

FREEZE_AT = 8
START = float(int(time.time()))
lock = threading.Lock()
scrapes = {}


class Deterministic:
    """Families whose values depend only on the scrape number n (1, 2, ...)."""

    def __init__(self, n):
        self.n = min(n, FREEZE_AT)
        self.seen = n

    def collect(self):
        n = self.n
        c = CounterMetricFamily(
            "app_requests", "Requests served.", labels=["method", "code"]
        )
        c.add_metric(["GET", "200"], 10.0 * n, created=1700000000.5)
        c.add_metric(["POST", "500"], float(n // 2), created=1700000001.25)
        yield c
        g = GaugeMetricFamily(
            "app_temperature_celsius", "Temperature.", labels=["room", "note"]
        )
        g.add_metric(["kitchen", 'say "hi"\\ back\nslash'], 20.5 - n * 0.25)
        g.add_metric(["cellar", ""], -3.0 * n)
        g.add_metric(["attic", "odd"], float("nan") if n % 2 else float("inf"))
        yield g
        clash = GaugeMetricFamily("app_clash", "A label named job.", labels=["job"])
        clash.add_metric(["inner"], float(n))
        yield clash
        h = HistogramMetricFamily(
            "app_latency_seconds", "Latency.", labels=["path"]
        )
        b1, b2, b3 = n, 2 * n + 1, 3 * n + 2
        h.add_metric(
            ["/api"],
            [("0.1", float(b1)), ("0.5", float(b2)), ("+Inf", float(b3))],
            sum_value=0.07 * n + 0.3,
        )
        yield h
        s = Metric("app_payload_bytes", "Payload sizes.", "summary")
        for q, v in (("0.5", 100.0 + n), ("0.99", 900.0 + 3 * n)):
            s.add_sample("app_payload_bytes", {"route": "/up", "quantile": q}, v)
        s.add_sample("app_payload_bytes_sum", {"route": "/up"}, 1000.0 * n)
        s.add_sample("app_payload_bytes_count", {"route": "/up"}, float(4 * n))
        yield s
        i = InfoMetricFamily("app_build", "Build information.")
        i.add_metric([], {"version": "1.2.3", "commit": "abc"})
        yield i
        t = GaugeMetricFamily("app_batch_size", "Last batch, with its own timestamp.")
        t.add_metric([], float(n * 7), timestamp=START + n)
        yield t
        if self.seen <= 3:
            a = GaugeMetricFamily(
                "app_session_active", "Only in the first 3 scrapes.", labels=["user"]
            )
            a.add_metric(["ann"], 1.0)
            yield a


def render(n, accept, text_only):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Deterministic(n))
    if text_only:
        return generate_latest(reg), "text/plain; version=0.0.4; charset=utf-8"
    encoder, ctype = choose_encoder(accept)
    return encoder(reg), ctype


def client_of(headers):
    ua = headers.get("User-Agent", "")
    if ua.startswith("Prometheus/"):
        return "prometheus"
    if ua.startswith("calm-agent/"):
        return "calm-agent"
    return ua or "unknown"


def sample_lines(count):
    for i in range(count):
        yield ('big_metric{i="%d",pad="%s"} %d\n' % (i, "x" * 60, i)).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close after each response: bodies end at close
    text_only = False

    def log_message(self, *args):
        pass

    def send_body_head(self, ctype="text/plain; version=0.0.4"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        try:
            if path == "/metrics":
                who = client_of(self.headers)
                with lock:
                    scrapes[who] = scrapes.get(who, 0) + 1
                    n = scrapes[who]
                body, ctype = render(n, self.headers.get("Accept"), self.text_only)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif path == "/stats":
                with lock:
                    body = json.dumps(scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)
            elif path == "/garbage":
                self.send_body_head()
                self.wfile.write(b"<html><body>this is not { exposition format</body></html>\n")
            elif path == "/huge":
                self.send_body_head()
                chunk = b"".join(sample_lines(10000))  # ~1 MB
                for _ in range(100):
                    self.wfile.write(chunk)
            elif path == "/endless":
                self.send_body_head()
                chunk = b"".join(sample_lines(1000))
                while True:
                    self.wfile.write(chunk)
                    time.sleep(0.01)
            elif path == "/hang":
                time.sleep(3600)
            elif path == "/many":
                self.send_body_head()
                self.wfile.write(b"".join(sample_lines(5000)))
            else:
                self.send_response(404)
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper gave up, as it should


def main():
    port = int(sys.argv[1])
    Handler.text_only = "--text-only" in sys.argv[2:]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("scrape_app listening on 127.0.0.1:%d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
