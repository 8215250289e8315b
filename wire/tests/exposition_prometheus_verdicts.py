"""Regenerates the Prometheus tables of wire/tests/exposition_conformance.rs.

    python3 wire/tests/exposition_prometheus_verdicts.py [/usr/bin/prometheus] > tables.rs

Serves every exposition fixture of $CALM_CONFORMANCE_DIR/exposition (default
../shared/conformance next to the workspace) over HTTP with the Content-Type of the
format it is read in, lets a real Prometheus scrape each as its own job for ~30 s, then
prints PROMETHEUS_2_42 (verdict: samples scraped, or its error) and
PROMETHEUS_2_42_STORED (series count and FNV-1a hash of what it stored) as Rust rows.
Case names are those of the test: om_<dir>, txt_<file>, txt_text, txtfile_<f>, omfile_<f>.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(
    os.environ.get("CALM_CONFORMANCE_DIR", os.path.join(ROOT, "..", "shared", "conformance")),
    "exposition",
)
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
REPORT = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}


def cases():
    out = {}
    om = os.path.join(BASE, "openmetrics-parsers")
    for c in sorted(os.listdir(om)):
        if os.path.isdir(os.path.join(om, c)):
            out["om_" + c] = (os.path.join(om, c, "metrics"), OM)
    corpus = os.path.join(BASE, "prometheus-common-expfmt", "corpus")
    for f in sorted(os.listdir(corpus)):
        out["txt_" + f] = (os.path.join(corpus, f), TEXT)
    out["txt_text"] = (os.path.join(BASE, "prometheus-common-expfmt", "text"), TEXT)
    tp = os.path.join(BASE, "prometheus-textparse")
    for f in sorted(os.listdir(tp)):
        if f.endswith(".txt") or f.endswith(".prom"):
            out["txtfile_" + f] = (os.path.join(tp, f), TEXT)
            out["omfile_" + f] = (os.path.join(tp, f), OM)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    prom_bin = sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/prometheus"
    all_cases = cases()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            name = urllib.parse.unquote(self.path.lstrip("/"))
            path, ctype = all_cases[name]
            body = open(path, "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    sport, pport = free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", sport), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="calm-verdicts-")
    cfg = "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n"
    for name in all_cases:
        cfg += "  - job_name: '%s'\n    metrics_path: '/%s'\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % (
            name, urllib.parse.quote(name), sport)
    open(os.path.join(tmp, "prometheus.yml"), "w").write(cfg)
    prom = subprocess.Popen(
        [prom_bin, "--config.file=" + os.path.join(tmp, "prometheus.yml"),
         "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % pport],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = "http://127.0.0.1:%d/api/v1/" % pport

    def get(path, **params):
        url = api + path + ("?" + urllib.parse.urlencode(params) if params else "")
        return json.load(urllib.request.urlopen(url, timeout=30))["data"]

    try:
        time.sleep(30)
        t = time.time()
        targets = {x["labels"]["job"]: x for x in get("targets")["activeTargets"]}
        scraped = {x["metric"]["job"]: x["value"][1]
                   for x in get("query", query="scrape_samples_scraped", time=t)["result"]}
        stored = {}
        for x in get("query", query='last_over_time({job!=""}[1m])', time=t)["result"]:
            m = dict(x["metric"])
            job = m.pop("job")
            m.pop("instance", None)
            if m.get("__name__") in REPORT:
                continue
            line = ",".join("%s=%s" % (k, json.dumps(v, ensure_ascii=False)) for k, v in sorted(m.items()))
            stored.setdefault(job, []).append(line + " " + x["value"][1])
    finally:
        prom.terminate()
        prom.wait()
        server.shutdown()
    print("// PROMETHEUS_2_42")
    for name in sorted(all_cases):
        tgt = targets[name]
        if tgt["health"] == "up":
            print('    ("%s", Ok(%s)),' % (name, scraped[name]))
        else:
            err = tgt["lastError"].replace("\\", "\\\\").replace('"', '\\"')
            print('    ("%s", Err("%s")),' % (name, err))
    print("// PROMETHEUS_2_42_STORED")
    for name in sorted(stored):
        lines = sorted(stored[name])
        text = "".join(l + "\n" for l in lines).encode()
        print('    ("%s", %d, 0x%016x),' % (name, len(lines), fnv1a(text)))


if __name__ == "__main__":
    main()
