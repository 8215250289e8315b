//! Remote-write senders: build a `WriteRequest`, snappy it, POST it, report the answer.

use anyhow::{Context as _, Result};
use calm_wire::prompb::{Label, Sample, TimeSeries, WriteRequest};
use std::time::Duration;

/// The answer to a POST: status and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The response said `Connection: close`.
    pub connection_close: bool,
}

impl Answer {
    /// True for 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A series from a name, extra labels and samples `(ts ms, value)`.
pub fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut l = vec![Label::new("__name__", name)];
    l.extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
    TimeSeries {
        labels: l,
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

/// A request of the given series.
pub fn request(timeseries: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

/// A remote-write client for one URL.
#[derive(Clone)]
pub struct RemoteWriter {
    url: String,
    client: reqwest::blocking::Client,
}

impl RemoteWriter {
    /// A client for `url` (…/api/v1/write) with a 10 s timeout per request.
    pub fn new(url: &str) -> RemoteWriter {
        RemoteWriter::with_timeout(url, Duration::from_secs(10))
    }

    /// A client with another per-request timeout.
    pub fn with_timeout(url: &str, timeout: Duration) -> RemoteWriter {
        RemoteWriter {
            url: url.to_string(),
            client: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        }
    }

    /// Encodes and sends a request. Transport errors are `Err`.
    pub fn send(&self, req: &WriteRequest) -> Result<Answer> {
        self.send_raw(calm_wire::remote_write::encode(req))
    }

    /// Sends a body as is, with the remote-write headers.
    pub fn send_raw(&self, body: Vec<u8>) -> Result<Answer> {
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .with_context(|| format!("POST {}", self.url))?;
        let status = resp.status().as_u16();
        let connection_close = says_close(&resp);
        let body = resp.text().unwrap_or_default();
        Ok(Answer {
            status,
            body,
            connection_close,
        })
    }
}

/// POSTs any body with a content type (for OTLP): status and body text.
pub fn post(url: &str, content_type: &str, body: Vec<u8>) -> Result<Answer> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let resp = client
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let connection_close = says_close(&resp);
    Ok(Answer {
        status,
        body: resp.text().unwrap_or_default(),
        connection_close,
    })
}

fn says_close(resp: &reqwest::blocking::Response) -> bool {
    resp.headers()
        .get_all(reqwest::header::CONNECTION)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
        })
}
