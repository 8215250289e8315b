#!/usr/bin/env python3
"""Pushes a known set of metrics to an OTLP/HTTP endpoint with the real OpenTelemetry
Python SDK, then exits 0 only if every export was accepted.

    otlp_push.py http://127.0.0.1:PORT/v1/metrics [gzip]

With "gzip", request bodies are gzip-compressed (Content-Encoding: gzip), as the
OpenTelemetry Collector and many SDK configurations send them.

What it sends (cumulative temporality), resource service.name="otel-test",
service.instance.id="i-1", deployment.environment="ci":
  - counter   calm.test.requests (unit "1"): add 7 with {http.method="GET", route="/api"}
  - gauge     calm.test.memory (unit "By"): observable, 42.5 with {pool="heap"}
  - histogram calm.test.latency (unit "s"): 0.1, 0.7, 3 with {route="/api"},
              explicit boundaries [0.5, 1, 5]
  - histogram calm.test.payload (unit "By"): 0, 100, 100.5, 101 with {route="/api"},
              exponential buckets (the SDK picks scale 20 for so narrow a range)

By the OpenTelemetry → Prometheus compatibility rules these become
calm_test_requests_total, calm_test_memory_bytes, calm_test_latency_seconds_{bucket,sum,count},
the native histogram calm_test_payload_bytes and target_info, with job="otel-test" and
instance="i-1".
"""

import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource


class RecordingExporter(OTLPMetricExporter):
    """Remembers the result of every export, so a refused export fails the script."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.results = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        self.results.append(result)
        return result


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    compression = Compression.Gzip if "gzip" in sys.argv[2:] else Compression.NoCompression

    cumulative = {
        kind: AggregationTemporality.CUMULATIVE
        for kind in (
            Counter,
            UpDownCounter,
            Histogram,
            ObservableCounter,
            ObservableUpDownCounter,
            ObservableGauge,
        )
    }
    exporter = RecordingExporter(
        endpoint=endpoint,
        timeout=10,
        compression=compression,
        preferred_temporality=cumulative,
    )
    # A long interval: the explicit force_flush below does the export.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": "otel-test",
            "service.instance.id": "i-1",
            "deployment.environment": "ci",
        }
    )
    views = [
        View(
            instrument_name="calm.test.latency",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.5, 1.0, 5.0]),
        ),
        View(
            instrument_name="calm.test.payload",
            aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20),
        ),
    ]
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = provider.get_meter("calm-tests", "0.1.0")

    requests = meter.create_counter(
        "calm.test.requests", unit="1", description="Requests handled."
    )
    requests.add(7, {"http.method": "GET", "route": "/api"})

    def memory(_options: CallbackOptions):
        yield Observation(42.5, {"pool": "heap"})

    meter.create_observable_gauge(
        "calm.test.memory", callbacks=[memory], unit="By", description="Memory in use."
    )

    latency = meter.create_histogram(
        "calm.test.latency", unit="s", description="Request latency."
    )
    for v in (0.1, 0.7, 3.0):
        latency.record(v, {"route": "/api"})

    payload = meter.create_histogram(
        "calm.test.payload", unit="By", description="Request payload size."
    )
    for v in (0.0, 100.0, 100.5, 101.0):
        payload.record(v, {"route": "/api"})

    flushed = provider.force_flush(timeout_millis=15_000)
    provider.shutdown()

    failures = [r for r in exporter.results if r != MetricExportResult.SUCCESS]
    print(
        f"exports: {len(exporter.results)}, failed: {len(failures)}, flushed: {flushed}",
        file=sys.stderr,
    )
    if not exporter.results:
        print("nothing was exported", file=sys.stderr)
        return 1
    if failures:
        print("the endpoint refused an export (see the exporter's log above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
