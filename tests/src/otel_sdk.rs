//! The real OpenTelemetry Python SDK as an OTLP/HTTP client: `tests/python/otlp_push.py`
//! exports a known counter, gauge and histogram once (protobuf; gzip bodies if asked);
//! its docstring lists them and the Prometheus names they must get.

use crate::process::{remove_env_prefix, run_bounded};
use crate::require_python_modules;
use std::process::Command;
use std::time::Duration;

/// Pushes the SDK's metrics to `endpoint` (`…/v1/metrics`). Returns `None` after a skip
/// notice when the SDK is not installed; panics with the SDK's stderr and `context()`
/// (e.g. the receiving program's log) when the export fails.
pub fn python_sdk_push(endpoint: &str, gzip: bool, context: impl FnOnce() -> String) -> Option<()> {
    let python = require_python_modules(&[
        "opentelemetry.sdk.metrics",
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    ])?;
    let mut cmd = Command::new(&python);
    cmd.arg(crate::workspace_root().join("tests/python/otlp_push.py"))
        .arg(endpoint);
    if gzip {
        cmd.arg("gzip");
    }
    // The user's OTEL_* settings (headers, compression, temporality) must not leak in.
    remove_env_prefix(&mut cmd, "OTEL_");
    let out = run_bounded(cmd, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "the OTel SDK's export to {endpoint} (gzip: {gzip}) failed ({:?}):\n{}\n{}",
        out.status,
        out.stderr,
        context()
    );
    Some(())
}
