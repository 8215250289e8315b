//! Pre-generated remote-write load: node_exporter-like series on many hosts, their
//! samples over a time range, cut into requests the way a Prometheus remote-write
//! sender cuts them.
//!
//! ```text
//! host h = instance="host-{h:05}:9100", job="node", ~180 series (TEMPLATE below)
//! series are sorted by instance; host h belongs to connection h % concurrency
//! connection c, scrape round k: its series' samples at round k, in requests of
//!           ≤ batch samples (one sample per series per request), requests in round order
//! round k of host h: ts = end - interval + offset(h) - (rounds-1-k)*interval ± 2 ms
//! ```
//!
//! Everything is a pure function of (series, rounds, interval, end, seed): the same
//! arguments give byte-identical bodies, so each target can get the same load.

use bytes::Bytes;
use calm_wire::prompb::{Label, Sample, TimeSeries, WriteRequest};

/// A small, fast, seedable PRNG (SplitMix64). One per series, so a series' values do
/// not depend on how series are spread over connections.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng::new(a ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// How a series' value moves from one scrape to the next.
#[derive(Clone, Copy, Debug)]
enum Model {
    /// Never changes (MemTotal, filesystem size, boot time, up).
    Constant,
    /// A seconds counter growing by ~interval × frac per scrape, 2 decimals
    /// (node_cpu_seconds_total, node_disk_io_time_seconds_total).
    SecondsCounter { frac: f64 },
    /// An integer counter growing by ~rate × interval per scrape; `p_idle` of the
    /// scrapes see no increment (bytes, packets, errors, interrupts).
    IntCounter { rate: f64, p_idle: f64 },
    /// A gauge that mostly stays put and sometimes moves by a multiple of `step`
    /// (memory and filesystem bytes, file handles).
    Sticky {
        p_change: f64,
        step: f64,
        max_steps: f64,
    },
    /// A small non-negative integer gauge (procs running, established sockets).
    SmallInt { max: f64 },
    /// A load average: a random walk with 2 decimals; `smooth` damps it (load5, load15).
    Load { smooth: f64 },
    /// The scrape time in seconds with µs digits (node_time_seconds).
    Clock,
    /// A duration of a few ms with full float precision (scrape_duration_seconds).
    Duration,
    /// A classic-histogram bucket counter (`…_bucket{le}` or `…_count` with `cdf` 1):
    /// each scrape adds `floor(requests × cdf)`, where `requests` is drawn once per
    /// (host, handler, scrape) so the buckets of one histogram stay cumulative in `le`.
    Bucket { handler: u64, cdf: f64 },
    /// The `…_sum` of that histogram: each scrape adds `requests × mean latency`
    /// (3 decimals).
    BucketSum { handler: u64 },
}

/// Requests one histogram saw in one scrape, the same for all its bucket series:
/// a pure function of (host, handler, scrape time).
fn histogram_requests(host: usize, handler: u64, ts_ms: i64) -> f64 {
    50.0 + (mix((host as u64) << 8 | handler, ts_ms as u64) % 100) as f64
}

/// A series of the per-host template before the host labels are added.
struct Template {
    name: String,
    labels: Vec<(&'static str, String)>,
    model: Model,
    /// Starting value range.
    start: (f64, f64),
}

fn t(name: &str, labels: Vec<(&'static str, String)>, model: Model, start: (f64, f64)) -> Template {
    Template {
        name: name.to_string(),
        labels,
        model,
        start,
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Upper bounds and cumulative shares of the request-latency histogram
/// ([`host_template`] with histograms).
const LATENCY_BUCKETS: [(&str, f64); 12] = [
    ("0.005", 0.05),
    ("0.01", 0.12),
    ("0.025", 0.30),
    ("0.05", 0.50),
    ("0.1", 0.70),
    ("0.25", 0.85),
    ("0.5", 0.93),
    ("1", 0.97),
    ("2.5", 0.99),
    ("5", 0.995),
    ("10", 0.999),
    ("+Inf", 1.0),
];

/// The series one node_exporter host exposes here (179), plus, with `histograms`, a
/// classic request-latency histogram of an app on that host for two handlers
/// (`http_request_duration_seconds_{bucket,sum,count}{handler}`: 28 series), for
/// query benchmarks that need `histogram_quantile`.
fn host_template(histograms: bool) -> Vec<Template> {
    let mut v = Vec::new();
    // CPU: 8 cpus × 8 modes, seconds counters with 2 decimals.
    let modes = [
        ("idle", 0.78),
        ("iowait", 0.01),
        ("irq", 0.002),
        ("nice", 0.001),
        ("softirq", 0.006),
        ("steal", 0.003),
        ("system", 0.06),
        ("user", 0.14),
    ];
    for cpu in 0..8 {
        for (mode, frac) in modes {
            v.push(t(
                "node_cpu_seconds_total",
                vec![("cpu", cpu.to_string()), ("mode", mode.to_string())],
                Model::SecondsCounter { frac },
                (0.0, 2.0e6 * frac),
            ));
        }
    }
    // Memory: gauges in bytes, mostly constant.
    let mem: [(&str, f64, f64); 24] = [
        ("MemTotal", 0.0, 64.0),
        ("MemFree", 0.3, 12.0),
        ("MemAvailable", 0.3, 40.0),
        ("Buffers", 0.1, 1.0),
        ("Cached", 0.2, 24.0),
        ("SwapCached", 0.01, 0.01),
        ("Active", 0.2, 20.0),
        ("Inactive", 0.2, 18.0),
        ("Active_anon", 0.2, 10.0),
        ("Inactive_anon", 0.1, 2.0),
        ("Active_file", 0.2, 10.0),
        ("Inactive_file", 0.2, 16.0),
        ("Dirty", 0.5, 0.01),
        ("Writeback", 0.05, 0.001),
        ("AnonPages", 0.2, 12.0),
        ("Mapped", 0.05, 1.5),
        ("Shmem", 0.02, 0.5),
        ("Slab", 0.1, 2.0),
        ("SReclaimable", 0.1, 1.5),
        ("SUnreclaim", 0.05, 0.5),
        ("KernelStack", 0.02, 0.02),
        ("PageTables", 0.05, 0.1),
        ("SwapTotal", 0.0, 8.0),
        ("SwapFree", 0.005, 7.9),
    ];
    for (field, p, gib) in mem {
        let model = if p == 0.0 {
            Model::Constant
        } else {
            Model::Sticky {
                p_change: p,
                step: 4096.0,
                max_steps: 2048.0,
            }
        };
        let base = (gib * GIB / 4096.0).round() * 4096.0;
        v.push(t(
            &format!("node_memory_{field}_bytes"),
            vec![],
            model,
            (base, base),
        ));
    }
    // Network: integer counters per device.
    let devices = [
        ("eth0", 2.0e6),
        ("eth1", 2.0e5),
        ("lo", 5.0e4),
        ("docker0", 1.0e4),
    ];
    for dir in ["receive", "transmit"] {
        for (device, bps) in devices {
            for (what, rate, p_idle) in [
                ("bytes", bps, 0.0),
                ("packets", bps / 900.0, 0.0),
                ("errs", 0.001, 0.995),
                ("drop", 0.01, 0.97),
            ] {
                v.push(t(
                    &format!("node_network_{dir}_{what}_total"),
                    vec![("device", device.to_string())],
                    Model::IntCounter { rate, p_idle },
                    (0.0, (rate * 1.0e6).round()),
                ));
            }
        }
    }
    // Filesystems.
    let mounts = [
        ("/dev/sda1", "ext4", "/", 100.0),
        ("/dev/sda2", "ext4", "/var", 200.0),
        ("/dev/nvme0n1p1", "xfs", "/data", 2000.0),
        ("tmpfs", "tmpfs", "/run", 3.2),
    ];
    for (device, fstype, mountpoint, gib) in mounts {
        let labels = vec![
            ("device", device.to_string()),
            ("fstype", fstype.to_string()),
            ("mountpoint", mountpoint.to_string()),
        ];
        let size = (gib * GIB / 4096.0).round() * 4096.0;
        let sticky = Model::Sticky {
            p_change: 0.3,
            step: 4096.0,
            max_steps: 256.0,
        };
        for (name, model, start) in [
            ("node_filesystem_size_bytes", Model::Constant, size),
            (
                "node_filesystem_avail_bytes",
                sticky,
                (size * 0.4 / 4096.0).round() * 4096.0,
            ),
            (
                "node_filesystem_free_bytes",
                sticky,
                (size * 0.45 / 4096.0).round() * 4096.0,
            ),
            (
                "node_filesystem_files",
                Model::Constant,
                (size / 16384.0).round(),
            ),
            (
                "node_filesystem_files_free",
                Model::Sticky {
                    p_change: 0.1,
                    step: 1.0,
                    max_steps: 20.0,
                },
                (size / 20000.0).round(),
            ),
            ("node_filesystem_readonly", Model::Constant, 0.0),
        ] {
            v.push(t(name, labels.clone(), model, (start, start)));
        }
    }
    // Disks.
    for device in ["sda", "nvme0n1"] {
        for (name, model) in [
            (
                "node_disk_reads_completed_total",
                Model::IntCounter {
                    rate: 40.0,
                    p_idle: 0.05,
                },
            ),
            (
                "node_disk_writes_completed_total",
                Model::IntCounter {
                    rate: 120.0,
                    p_idle: 0.0,
                },
            ),
            (
                "node_disk_read_bytes_total",
                Model::IntCounter {
                    rate: 4.0e5,
                    p_idle: 0.05,
                },
            ),
            (
                "node_disk_written_bytes_total",
                Model::IntCounter {
                    rate: 2.0e6,
                    p_idle: 0.0,
                },
            ),
            (
                "node_disk_io_time_seconds_total",
                Model::SecondsCounter { frac: 0.05 },
            ),
            (
                "node_disk_read_time_seconds_total",
                Model::SecondsCounter { frac: 0.01 },
            ),
            (
                "node_disk_write_time_seconds_total",
                Model::SecondsCounter { frac: 0.08 },
            ),
        ] {
            v.push(t(
                name,
                vec![("device", device.to_string())],
                model,
                (0.0, 1.0e6),
            ));
        }
    }
    // Load averages.
    for (name, smooth) in [
        ("node_load1", 1.0),
        ("node_load5", 0.4),
        ("node_load15", 0.15),
    ] {
        v.push(t(name, vec![], Model::Load { smooth }, (0.2, 3.0)));
    }
    // Assorted host-level series.
    for (name, model, start) in [
        (
            "node_context_switches_total",
            Model::IntCounter {
                rate: 9000.0,
                p_idle: 0.0,
            },
            (1.0e9, 9.0e9),
        ),
        (
            "node_intr_total",
            Model::IntCounter {
                rate: 6000.0,
                p_idle: 0.0,
            },
            (1.0e9, 9.0e9),
        ),
        (
            "node_forks_total",
            Model::IntCounter {
                rate: 12.0,
                p_idle: 0.0,
            },
            (1.0e6, 9.0e6),
        ),
        (
            "node_procs_running",
            Model::SmallInt { max: 6.0 },
            (1.0, 1.0),
        ),
        (
            "node_procs_blocked",
            Model::SmallInt { max: 1.0 },
            (0.0, 0.0),
        ),
        ("node_boot_time_seconds", Model::Constant, (1.70e9, 1.71e9)),
        ("node_time_seconds", Model::Clock, (0.0, 0.0)),
        (
            "node_entropy_available_bits",
            Model::Constant,
            (256.0, 256.0),
        ),
        (
            "node_filefd_allocated",
            Model::Sticky {
                p_change: 0.4,
                step: 32.0,
                max_steps: 4.0,
            },
            (2000.0, 9000.0),
        ),
        (
            "node_netstat_Tcp_CurrEstab",
            Model::SmallInt { max: 60.0 },
            (10.0, 10.0),
        ),
        (
            "node_netstat_Tcp_ActiveOpens",
            Model::IntCounter {
                rate: 3.0,
                p_idle: 0.1,
            },
            (1.0e5, 1.0e6),
        ),
        (
            "node_netstat_Tcp_PassiveOpens",
            Model::IntCounter {
                rate: 5.0,
                p_idle: 0.1,
            },
            (1.0e5, 1.0e6),
        ),
        (
            "node_sockstat_TCP_inuse",
            Model::SmallInt { max: 80.0 },
            (20.0, 20.0),
        ),
        (
            "node_vmstat_pgfault",
            Model::IntCounter {
                rate: 20000.0,
                p_idle: 0.0,
            },
            (1.0e9, 9.0e9),
        ),
        (
            "node_vmstat_pgmajfault",
            Model::IntCounter {
                rate: 0.2,
                p_idle: 0.8,
            },
            (1.0e3, 1.0e4),
        ),
    ] {
        v.push(t(name, vec![], model, start));
    }
    // What Prometheus adds to every scrape.
    v.push(t("up", vec![], Model::Constant, (1.0, 1.0)));
    v.push(t(
        "scrape_duration_seconds",
        vec![],
        Model::Duration,
        (0.0, 0.0),
    ));
    v.push(t(
        "scrape_samples_scraped",
        vec![],
        Model::Constant,
        (1000.0, 1000.0),
    ));
    if histograms {
        for (handler, path) in ["/api/v1/query", "/api/v1/write"].into_iter().enumerate() {
            let handler = handler as u64;
            let labels = || vec![("handler", path.to_string())];
            for (le, cdf) in LATENCY_BUCKETS {
                let mut l = labels();
                l.push(("le", le.to_string()));
                let start = (1.0e5 * cdf).floor();
                v.push(t(
                    "http_request_duration_seconds_bucket",
                    l,
                    Model::Bucket { handler, cdf },
                    (start, start),
                ));
            }
            v.push(t(
                "http_request_duration_seconds_count",
                labels(),
                Model::Bucket { handler, cdf: 1.0 },
                (1.0e5, 1.0e5),
            ));
            v.push(t(
                "http_request_duration_seconds_sum",
                labels(),
                Model::BucketSum { handler },
                (8.0e3, 8.0e3),
            ));
        }
    }
    v
}

/// The number of series one host has.
pub fn series_per_host(histograms: bool) -> usize {
    host_template(histograms).len()
}

/// One series: its labels (sorted by name, `__name__` first) and value state.
struct Series {
    host: usize,
    labels: Vec<Label>,
    model: Model,
    value: f64,
    rng: Rng,
}

impl Series {
    /// The value at this scrape (`ts_ms` is the scrape time).
    fn step(&mut self, interval_s: f64, ts_ms: i64, first: bool) -> f64 {
        let r = &mut self.rng;
        if first {
            return match self.model {
                Model::Clock => ts_ms as f64 / 1000.0 + r.range(0.0, 0.001),
                Model::Duration => r.range(0.002, 0.05),
                _ => self.value,
            };
        }
        self.value = match self.model {
            Model::Constant => self.value,
            Model::SecondsCounter { frac } => {
                round2(self.value + interval_s * frac * r.range(0.6, 1.4))
            }
            Model::IntCounter { rate, p_idle } => {
                if r.chance(p_idle) {
                    self.value
                } else {
                    self.value + (rate * interval_s * r.range(0.5, 1.5)).round().max(1.0)
                }
            }
            Model::Sticky {
                p_change,
                step,
                max_steps,
            } => {
                if r.chance(p_change) {
                    let k = (r.range(1.0, max_steps + 1.0)).floor();
                    let sign = if r.chance(0.5) { 1.0 } else { -1.0 };
                    (self.value + sign * k * step).max(0.0)
                } else {
                    self.value
                }
            }
            Model::SmallInt { max } => {
                if r.chance(0.5) {
                    (r.range(0.0, max + 1.0)).floor()
                } else {
                    self.value
                }
            }
            Model::Load { smooth } => round2((self.value + smooth * r.range(-0.3, 0.3)).max(0.0)),
            Model::Clock => ts_ms as f64 / 1000.0 + r.range(0.0, 0.001),
            Model::Duration => r.range(0.002, 0.05),
            Model::Bucket { handler, cdf } => {
                self.value + (histogram_requests(self.host, handler, ts_ms) * cdf).floor()
            }
            Model::BucketSum { handler } => {
                let requests = histogram_requests(self.host, handler, ts_ms);
                ((self.value + requests * 0.08) * 1000.0).round() / 1000.0
            }
        };
        self.value
    }
}

/// Builds the series list: `n` series over as many hosts as needed, sorted by instance.
fn build_series(n: usize, seed: u64, histograms: bool) -> Vec<Series> {
    let tmpl = host_template(histograms);
    let mut out = Vec::with_capacity(n);
    let mut host = 0;
    while out.len() < n {
        let instance = format!("host-{host:05}:9100");
        for (i, tp) in tmpl.iter().enumerate() {
            if out.len() == n {
                break;
            }
            let mut pairs: Vec<(&str, String)> = vec![
                ("__name__", tp.name.clone()),
                ("instance", instance.clone()),
                ("job", "node".to_string()),
            ];
            pairs.extend(tp.labels.iter().cloned());
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let labels = pairs.into_iter().map(|(k, v)| Label::new(k, v)).collect();
            let mut rng = Rng::new(mix(seed, ((host as u64) << 16) | i as u64));
            let value = rng.range(tp.start.0, tp.start.1);
            let value = match tp.model {
                Model::SecondsCounter { .. } | Model::Load { .. } => round2(value),
                _ => value.round(),
            };
            out.push(Series {
                host,
                labels,
                model: tp.model,
                value,
                rng,
            });
        }
        host += 1;
    }
    out
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub series: usize,
    pub rounds: usize,
    pub interval_ms: i64,
    /// No sample is later than this (ms since the epoch).
    pub end_ms: i64,
    pub batch: usize,
    pub concurrency: usize,
    pub seed: u64,
    /// Add the request-latency histogram to every host ([`host_template`]).
    pub histograms: bool,
}

/// One pre-encoded request.
pub struct Body {
    pub bytes: Bytes,
    pub samples: u32,
    pub raw_len: u32,
}

/// The requests of one connection, in the order they must be sent.
pub struct Lane {
    pub bodies: Vec<Body>,
}

/// The generated load.
pub struct Load {
    pub lanes: Vec<Lane>,
    pub hosts: usize,
    pub series_per_host: usize,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
}

/// The scrape timestamp of `host` at round `k`.
fn scrape_ts(spec: &Spec, host: usize, k: usize) -> i64 {
    let iv = spec.interval_ms;
    // A fixed offset per host in [iv/10, 9iv/10), plus ±2 ms of scrape jitter.
    let offset =
        iv / 10 + (mix(spec.seed ^ 0x5eed, host as u64) % (iv as u64 * 8 / 10).max(1)) as i64;
    let jitter = (mix(spec.seed ^ host as u64, k as u64) % 5) as i64 - 2;
    spec.end_ms - iv + offset - (spec.rounds - 1 - k) as i64 * iv + jitter
}

/// Generates every body. Lanes are generated in parallel on `threads` threads.
pub fn generate(spec: &Spec, threads: usize) -> Load {
    let all = build_series(spec.series, spec.seed, spec.histograms);
    let hosts = all.last().map(|s| s.host + 1).unwrap_or(0);
    let conc = spec.concurrency.max(1);
    let mut per_lane: Vec<Vec<Series>> = (0..conc).map(|_| Vec::new()).collect();
    for s in all {
        per_lane[s.host % conc].push(s);
    }
    let mut first_ts = i64::MAX;
    let mut last_ts = i64::MIN;
    for h in 0..hosts {
        first_ts = first_ts.min(scrape_ts(spec, h, 0));
        last_ts = last_ts.max(scrape_ts(spec, h, spec.rounds - 1));
    }
    let threads = threads.clamp(1, conc);
    let mut lanes: Vec<Option<Lane>> = (0..conc).map(|_| None).collect();
    let mut work: Vec<(usize, Vec<Series>)> = per_lane.into_iter().enumerate().collect();
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..threads {
            let take: Vec<(usize, Vec<Series>)> = {
                let n = work.len().div_ceil(threads - handles.len());
                work.drain(..n.min(work.len())).collect()
            };
            handles.push(scope.spawn(move || {
                take.into_iter()
                    .map(|(i, series)| (i, generate_lane(spec, series)))
                    .collect::<Vec<_>>()
            }));
        }
        for h in handles {
            for (i, lane) in h.join().expect("generator thread panicked") {
                lanes[i] = Some(lane);
            }
        }
    });
    Load {
        lanes: lanes
            .into_iter()
            .map(|l| l.expect("every lane generated"))
            .collect(),
        hosts,
        series_per_host: series_per_host(spec.histograms),
        first_ts_ms: first_ts,
        last_ts_ms: last_ts,
    }
}

fn generate_lane(spec: &Spec, mut series: Vec<Series>) -> Lane {
    let interval_s = spec.interval_ms as f64 / 1000.0;
    let n = series.len();
    let mut bodies = Vec::new();
    if n == 0 {
        return Lane { bodies };
    }
    // Split the lane's series into equal slices of at most `batch`.
    let parts = n.div_ceil(spec.batch.max(1));
    let per = n.div_ceil(parts);
    // One reusable request per slice: labels set once, the sample rewritten per round.
    let mut reqs: Vec<WriteRequest> = series
        .chunks(per)
        .map(|chunk| WriteRequest {
            timeseries: chunk
                .iter()
                .map(|s| TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![Sample::default()],
                    exemplars: vec![],
                    histograms: vec![],
                })
                .collect(),
            metadata: vec![],
        })
        .collect();
    let mut buf = Vec::new();
    let mut enc = snap::raw::Encoder::new();
    for k in 0..spec.rounds {
        for (slice, req) in series.chunks_mut(per).zip(reqs.iter_mut()) {
            for (s, ts) in slice.iter_mut().zip(req.timeseries.iter_mut()) {
                let ts_ms = scrape_ts(spec, s.host, k);
                ts.samples[0] = Sample {
                    value: s.step(interval_s, ts_ms, k == 0),
                    timestamp: ts_ms,
                };
            }
            buf.clear();
            prost::Message::encode(req, &mut buf).expect("a Vec grows as needed");
            // Same bytes as calm_wire::remote_write::encode, without a second copy.
            let z = enc
                .compress_vec(&buf)
                .expect("snappy into a Vec cannot fail");
            bodies.push(Body {
                bytes: Bytes::from(z),
                samples: slice.len() as u32,
                raw_len: buf.len() as u32,
            });
        }
    }
    Lane { bodies }
}

/// The samples the load carries, host by host, for checking what a target stored.
pub struct Expectation {
    spec: Spec,
    hosts: Vec<Vec<Series>>,
}

/// One series as a target should return it: its labels as `name=value` joined by
/// `\x1f` in name order, and its samples (ms, value) in time order.
pub struct ExpectedSeries {
    pub key: String,
    pub samples: Vec<(i64, f64)>,
}

/// The key of a label set, as [`ExpectedSeries::key`].
pub fn label_key<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut v: Vec<(&str, &str)> = labels.into_iter().collect();
    v.sort();
    v.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\x1f")
}

impl Expectation {
    pub fn new(spec: &Spec) -> Expectation {
        let mut hosts: Vec<Vec<Series>> = Vec::new();
        for s in build_series(spec.series, spec.seed, spec.histograms) {
            if hosts.len() <= s.host {
                hosts.resize_with(s.host + 1, Vec::new);
            }
            hosts[s.host].push(s);
        }
        Expectation {
            spec: spec.clone(),
            hosts,
        }
    }

    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The instance label of a host.
    pub fn instance(host: usize) -> String {
        format!("host-{host:05}:9100")
    }

    /// The series of one host with all their samples (consumes that host's state).
    pub fn host(&mut self, host: usize) -> Vec<ExpectedSeries> {
        let interval_s = self.spec.interval_ms as f64 / 1000.0;
        let series = std::mem::take(&mut self.hosts[host]);
        series
            .into_iter()
            .map(|mut s| {
                let key = label_key(s.labels.iter().map(|l| (l.name_str(), l.value_str())));
                let samples = (0..self.spec.rounds)
                    .map(|k| {
                        let ts = scrape_ts(&self.spec, host, k);
                        (ts, s.step(interval_s, ts, k == 0))
                    })
                    .collect();
                ExpectedSeries { key, samples }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            series: 1000,
            rounds: 5,
            interval_ms: 15_000,
            end_ms: 1_700_000_000_000,
            batch: 200,
            concurrency: 3,
            seed: 7,
            histograms: false,
        }
    }

    #[test]
    fn bodies_decode_and_keep_per_series_time_order() {
        let load = generate(&spec(), 2);
        let mut last: std::collections::HashMap<Vec<Label>, i64> = Default::default();
        let mut samples = 0;
        let mut lane_of: std::collections::HashMap<Vec<Label>, usize> = Default::default();
        for (li, lane) in load.lanes.iter().enumerate() {
            for b in &lane.bodies {
                assert_eq!(
                    b.bytes,
                    calm_wire::remote_write::encode(
                        &calm_wire::remote_write::decode(&b.bytes, 1 << 24).unwrap()
                    )
                );
                let req = calm_wire::remote_write::decode(&b.bytes, 1 << 24).unwrap();
                assert!(req.timeseries.len() <= 200);
                assert_eq!(req.timeseries.len(), b.samples as usize);
                for ts in req.timeseries {
                    let t = ts.samples[0].timestamp;
                    assert!(t <= spec().end_ms && t > spec().end_ms - 5 * 15_000);
                    if let Some(prev) = last.insert(ts.labels.clone(), t) {
                        assert!(prev < t, "time order");
                    }
                    assert_eq!(
                        *lane_of.entry(ts.labels).or_insert(li),
                        li,
                        "one lane per series"
                    );
                    samples += 1;
                }
            }
        }
        assert_eq!(last.len(), 1000);
        assert_eq!(samples, 5000);
        assert!(load.first_ts_ms > spec().end_ms - 5 * 15_000);
        assert!(load.last_ts_ms <= spec().end_ms);
    }

    #[test]
    fn histogram_buckets_stay_cumulative() {
        let spec = Spec {
            histograms: true,
            series: 2 * series_per_host(true),
            rounds: 40,
            ..spec()
        };
        let mut exp = Expectation::new(&spec);
        for host in 0..exp.hosts() {
            let series = exp.host(host);
            for handler in ["/api/v1/query", "/api/v1/write"] {
                let of = |name: &str, le: Option<&str>| -> &Vec<(i64, f64)> {
                    let mut key = vec![
                        ("__name__", name),
                        ("handler", handler),
                        ("instance", ""),
                        ("job", "node"),
                    ];
                    let instance = Expectation::instance(host);
                    key[2].1 = &instance;
                    if let Some(le) = le {
                        key.push(("le", le));
                    }
                    let key = label_key(key);
                    &series
                        .iter()
                        .find(|s| s.key == key)
                        .expect("series")
                        .samples
                };
                let buckets: Vec<_> = LATENCY_BUCKETS
                    .iter()
                    .map(|(le, _)| of("http_request_duration_seconds_bucket", Some(le)))
                    .collect();
                let count = of("http_request_duration_seconds_count", None);
                for k in 0..spec.rounds {
                    for w in buckets.windows(2) {
                        assert!(w[0][k].1 <= w[1][k].1, "cumulative in le");
                    }
                    assert_eq!(buckets[11][k].1, count[k].1, "+Inf bucket = count");
                    if k > 0 {
                        assert!(count[k].1 > count[k - 1].1, "a counter");
                    }
                }
            }
        }
    }

    #[test]
    fn deterministic_whatever_the_threads() {
        let a = generate(&spec(), 1);
        let b = generate(&spec(), 3);
        let flat = |l: &Load| -> Vec<Bytes> {
            l.lanes
                .iter()
                .flat_map(|x| x.bodies.iter().map(|b| b.bytes.clone()))
                .collect()
        };
        assert_eq!(flat(&a), flat(&b));
    }

    #[test]
    fn labels_are_sorted_and_realistic() {
        let s = build_series(400, 1, false);
        assert_eq!(s[0].labels[0].name_str(), "__name__");
        for x in &s {
            let names: Vec<&str> = x.labels.iter().map(|l| l.name_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
        }
        assert_eq!(
            s[0].labels
                .iter()
                .find(|l| l.name_str() == "instance")
                .unwrap()
                .value_str(),
            "host-00000:9100"
        );
        assert_eq!(s.last().unwrap().host, 400 / series_per_host(false));
    }

    #[test]
    fn expectation_matches_the_bodies() {
        let load = generate(&spec(), 2);
        let mut from_bodies: std::collections::HashMap<String, Vec<(i64, f64)>> =
            Default::default();
        for b in load.lanes.iter().flat_map(|l| l.bodies.iter()) {
            let req = calm_wire::remote_write::decode(&b.bytes, 1 << 24).unwrap();
            for ts in req.timeseries {
                let key = label_key(ts.labels.iter().map(|l| (l.name_str(), l.value_str())));
                let s = ts.samples[0];
                from_bodies
                    .entry(key)
                    .or_default()
                    .push((s.timestamp, s.value));
            }
        }
        let mut exp = Expectation::new(&spec());
        let mut n = 0;
        for h in 0..exp.hosts() {
            for e in exp.host(h) {
                assert_eq!(from_bodies[&e.key], e.samples, "{}", e.key);
                n += 1;
            }
        }
        assert_eq!(n, 1000);
    }
}
