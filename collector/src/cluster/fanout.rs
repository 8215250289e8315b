//! Query fan-out: [`FanoutReader`] reads raw series from one ready owner of every
//! partition (this collector itself where it is one, else over
//! `POST /internal/calm/v1/select` on another collector), and merges them before
//! PromQL sees them (never per-owner aggregates). A partition without a ready owner is
//! a Prometheus warning in the answer (`storage::reader::warn`), or a 503 when
//! `[cluster] strict_reads` is on.
//!
//! The internal endpoint answers only for partitions whose lease this collector holds
//! and has caught up on, on its own clock ([`Node::serves`]): a fenced owner stops
//! answering, and the reader asks the partition's other owner.
//!
//! Sample values travel as their IEEE bits (stale markers are a NaN payload). Native
//! histograms are not read through the fan-out yet: the owners store them, queries in
//! cluster mode see float samples only.

use super::owner::Node;
use super::{partition_of_encoded, POSITION_METRIC};
use crate::storage::reader::{
    MatchOp, Matcher, SeriesData, SeriesHandle, SeriesReader, SeriesSamples,
};
use crate::storage::{ErrorKind, StorageError};
use crate::tsdb::Db;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The internal endpoint's path.
pub const SELECT_PATH: &str = "/internal/calm/v1/select";

/// A matcher on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireMatcher {
    pub name: String,
    /// `=`, `!=`, `=~`, `!~`.
    pub op: String,
    pub value: String,
}

/// What the reader asks an owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelectRequest {
    pub partitions: Vec<u32>,
    #[serde(default)]
    pub matchers: Vec<WireMatcher>,
    pub mint: i64,
    pub maxt: i64,
    /// Labels only (no samples), of every series known in the retention.
    #[serde(default)]
    pub labels_only: bool,
    /// Exactly these series (label pairs) instead of `matchers`.
    #[serde(default)]
    pub series: Option<Vec<Vec<(String, String)>>>,
}

/// One series on the wire: label pairs sorted by name, samples as `[t, f64 bits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSeries {
    pub labels: Vec<(String, String)>,
    #[serde(default)]
    pub samples: Vec<(i64, u64)>,
}

/// An owner's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelectResponse {
    pub series: Vec<WireSeries>,
    /// Partitions asked for that this collector does not serve (now).
    pub not_served: Vec<u32>,
}

fn to_wire(m: &Matcher) -> WireMatcher {
    let op = match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex(_) => "=~",
        MatchOp::NotRegex(_) => "!~",
    };
    WireMatcher {
        name: m.name.clone(),
        op: op.into(),
        value: m.value.clone(),
    }
}

fn from_wire(w: &WireMatcher) -> Result<Matcher, String> {
    match w.op.as_str() {
        "=" => Ok(Matcher::equal(&w.name, &w.value)),
        "!=" => Ok(Matcher {
            name: w.name.clone(),
            value: w.value.clone(),
            op: MatchOp::NotEqual,
        }),
        "=~" | "!~" => Matcher::regex(&w.name, &w.value, w.op == "!~")
            .map_err(|e| format!("bad regex {:?}: {e}", w.value)),
        other => Err(format!("unknown matcher op {other:?}")),
    }
}

fn pairs(labels: &[u8]) -> Vec<(String, String)> {
    crate::tsdb::labels::to_pairs(labels)
}

fn encode(pairs: &[(String, String)]) -> Box<[u8]> {
    crate::tsdb::labels::encode_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .into_boxed_slice()
}

/// Answers a select from the local TSDB for the partitions this node serves
/// (blocking). Series of other partitions and the position series are left out.
pub fn serve_select(node: &Node, db: &Db, req: &SelectRequest) -> Result<SelectResponse, String> {
    let n = node.gen.partitions;
    let mut served = BTreeSet::new();
    let mut not_served = Vec::new();
    for &p in &req.partitions {
        if node.serves(p) {
            served.insert(p);
        } else {
            not_served.push(p);
        }
    }
    let keep = |labels: &[u8]| {
        crate::tsdb::labels::get(labels, "__name__") != Some(POSITION_METRIC)
            && served.contains(&partition_of_encoded(labels, n))
    };
    let mut out = Vec::new();
    if served.is_empty() {
        return Ok(SelectResponse {
            series: out,
            not_served,
        });
    }
    if let Some(list) = &req.series {
        // Exact series, grouped by metric name: one index look-up per name.
        let mut by_name: HashMap<String, Vec<Box<[u8]>>> = HashMap::new();
        for s in list {
            let name = s
                .iter()
                .find(|(k, _)| k == "__name__")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            by_name.entry(name).or_default().push(encode(s));
        }
        for (name, wanted) in by_name {
            let found = db.select_labels(&[Matcher::equal("__name__", &name)]);
            let hits: Vec<(u32, Box<[u8]>)> = found
                .into_iter()
                .filter(|(_, l)| keep(l) && wanted.iter().any(|w| **w == **l))
                .collect();
            let refs: Vec<u32> = hits.iter().map(|h| h.0).collect();
            let mut total = 0;
            let data = db
                .read_samples(
                    &refs,
                    req.mint,
                    req.maxt,
                    &mut total,
                    crate::tsdb::querier::Decode::Values,
                )
                .map_err(|e| e.to_string())?;
            for ((_, l), (samples, _)) in hits.iter().zip(data) {
                out.push(WireSeries {
                    labels: pairs(l),
                    samples: samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                });
            }
        }
    } else {
        let matchers: Vec<Matcher> = req
            .matchers
            .iter()
            .map(from_wire)
            .collect::<Result<_, _>>()?;
        if req.labels_only {
            for (_, l) in db.select_labels(&matchers) {
                if keep(&l) {
                    out.push(WireSeries {
                        labels: pairs(&l),
                        samples: Vec::new(),
                    });
                }
            }
        } else {
            for s in db
                .select(&matchers, req.mint, req.maxt)
                .map_err(|e| e.to_string())?
            {
                if keep(&s.labels) {
                    out.push(WireSeries {
                        labels: pairs(&s.labels),
                        samples: s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                    });
                }
            }
        }
    }
    Ok(SelectResponse {
        series: out,
        not_served,
    })
}

#[derive(Clone)]
struct RouteState {
    node: Arc<Node>,
    db: Arc<Db>,
}

/// `POST /internal/calm/v1/select` (read scope, as every unnamed route),
/// `GET /api/calm/v1/cluster` and the rules' read-after-write endpoint
/// (`read_after_write.rs`).
pub fn routes(node: Arc<Node>, db: Arc<Db>) -> Router {
    Router::new()
        .route(SELECT_PATH, post(select_handler))
        .route("/api/calm/v1/cluster", get(status_handler))
        .with_state(RouteState {
            node: node.clone(),
            db,
        })
        .merge(super::read_after_write::routes(node))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
}

async fn select_handler(State(s): State<RouteState>, body: axum::body::Bytes) -> Response {
    let req: SelectRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("bad select request: {e}\n"),
            )
                .into_response()
        }
    };
    let r = tokio::task::spawn_blocking(move || serve_select(&s.node, &s.db, &req)).await;
    match r {
        Ok(Ok(resp)) => axum::Json(resp).into_response(),
        Ok(Err(e)) => (axum::http::StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("select failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn status_handler(State(s): State<RouteState>) -> Response {
    axum::Json(serde_json::json!({"status": "success", "data": s.node.status()})).into_response()
}

/// Handles handed out by [`FanoutReader::select_labels`]: the series' labels, found
/// again by [`FanoutReader::read_samples`]. Bounded: past [`MAX_HANDLES`] the table
/// starts again (a query still holding old handles then fails and can be retried).
#[derive(Default)]
struct Handles {
    next: u32,
    map: HashMap<u32, Box<[u8]>>,
}

const MAX_HANDLES: usize = 4_000_000;

thread_local! {
    /// A strict read's failure in `select_labels`, for the next `read_samples`.
    static STRICT_FAILURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The fan-out [`SeriesReader`].
pub struct FanoutReader {
    node: Arc<Node>,
    db: Arc<Db>,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
    token: Option<String>,
    strict: bool,
    max_query_samples: usize,
    max_series_per_query: usize,
    handles: Mutex<Handles>,
    /// Owners whose last answer failed (no answer, an error), and when.
    suspects: Mutex<HashMap<String, std::time::Instant>>,
}

/// How long an owner that failed to answer is asked last.
const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(10);

impl FanoutReader {
    /// A reader over `node`'s partitions; `db` is the local TSDB; `token` a read token
    /// for the other collectors' internal endpoint (when auth is on). Call inside the
    /// runtime (it keeps its handle for the HTTP calls).
    pub fn new(
        node: Arc<Node>,
        db: Arc<Db>,
        token: Option<String>,
        max_query_samples: usize,
        max_series_per_query: usize,
    ) -> anyhow::Result<FanoutReader> {
        // A partitioned owner drops packets: connecting must not take the whole
        // fan-out timeout (an unreachable owner is skipped for a while, `suspects`).
        let timeout = node.cfg.fanout_timeout.get();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(3)))
            .build()?;
        Ok(FanoutReader {
            strict: node.cfg.strict_reads,
            node,
            db,
            http,
            rt: tokio::runtime::Handle::current(),
            token,
            max_query_samples,
            max_series_per_query,
            handles: Mutex::new(Handles::default()),
            suspects: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client of the fan-out (also the rules' read-after-write requests).
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The token the fan-out sends to the other collectors' internal endpoints.
    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The owners of each partition in the order the fan-out asks them, those that
    /// failed lately moved last (a partitioned owner would cost every query the
    /// fan-out timeout until its lease expires from the views).
    pub(super) fn owners(&self) -> Vec<Vec<super::owner::Owner>> {
        let mut owners = self.node.owners();
        let mut sus = self.suspects.lock();
        sus.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        if !sus.is_empty() {
            for list in &mut owners {
                list.sort_by_key(|o| sus.contains_key(&o.node));
            }
        }
        owners
    }

    /// Asks one ready owner of every partition (`make` builds the request for a list
    /// of partitions); returns the merged series, sorted by labels and deduplicated.
    fn gather(
        &self,
        make: &dyn Fn(Vec<u32>) -> SelectRequest,
        only: Option<&BTreeSet<u32>>,
    ) -> Result<Vec<WireSeries>, StorageError> {
        let owners = self.owners();
        let me = &self.node.cfg.node_id;
        let mut pending: Vec<u32> = (0..self.node.gen.partitions)
            .filter(|p| only.is_none_or(|o| o.contains(p)))
            .collect();
        let mut tried: HashMap<u32, usize> = HashMap::new();
        let mut out: Vec<WireSeries> = Vec::new();
        let mut missing = Vec::new();
        // A partition whose chosen owner failed or does not serve it (yet, or any
        // more) is asked of the next one: its other holders, ready ones first.
        for _round in 0..(2 * self.node.cfg.owners_per_partition + 2) {
            if pending.is_empty() {
                break;
            }
            let mut by_owner: HashMap<(String, String), Vec<u32>> = HashMap::new();
            for p in pending.drain(..) {
                let i = tried.entry(p).or_insert(0);
                match owners.get(p as usize).and_then(|o| o.get(*i)) {
                    Some(o) => by_owner
                        .entry((o.node.clone(), o.url.clone()))
                        .or_default()
                        .push(p),
                    None => missing.push(p),
                }
                *i += 1;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            let mut asked = 0;
            for ((node, url), parts) in by_owner {
                let req = make(parts.clone());
                if &node == me {
                    let r = serve_select(&self.node, &self.db, &req);
                    let _ = tx.send((node, parts, r));
                    continue;
                }
                asked += 1;
                let tx = tx.clone();
                let http = self.http.clone();
                let token = self.token.clone();
                self.rt.spawn(async move {
                    let mut rq = http.post(format!("{url}{SELECT_PATH}")).json(&req);
                    if let Some(t) = token {
                        rq = rq.bearer_auth(t);
                    }
                    let r = async {
                        let resp = rq.send().await.map_err(|e| e.to_string())?;
                        if !resp.status().is_success() {
                            return Err(format!("{url}: HTTP {}", resp.status()));
                        }
                        resp.json::<SelectResponse>()
                            .await
                            .map_err(|e| e.to_string())
                    }
                    .await;
                    let _ = tx.send((node, parts, r));
                });
            }
            drop(tx);
            let _ = asked;
            for (node, parts, r) in rx.iter() {
                match r {
                    Ok(resp) => {
                        pending.extend(resp.not_served.iter().copied());
                        out.extend(resp.series);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, owner = %node, partitions = ?parts, "cluster: an owner did not answer; asking another");
                        self.suspects.lock().insert(node, std::time::Instant::now());
                        pending.extend(parts);
                    }
                }
            }
        }
        missing.extend(pending);
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            self.node
                .stats
                .partial_answers
                .fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "cluster: partitions {missing:?} of {} have no ready owner; the answer may be incomplete",
                self.node.gen.partitions
            );
            if self.strict {
                return Err(StorageError::new(ErrorKind::Unavailable, msg));
            }
            crate::storage::reader::warn(msg);
        }
        // Merge: one owner per partition gives disjoint series; equal label sets
        // (should a partition be read twice) merge by timestamp.
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut merged: Vec<WireSeries> = Vec::with_capacity(out.len());
        for s in out {
            match merged.last_mut() {
                Some(last) if last.labels == s.labels => {
                    last.samples.extend(s.samples);
                    last.samples.sort_by_key(|x| x.0);
                    last.samples.dedup_by_key(|x| x.0);
                }
                _ => merged.push(s),
            }
        }
        Ok(merged)
    }

    fn labels_of(&self, selectors: &[Vec<Matcher>]) -> Vec<Box<[u8]>> {
        STRICT_FAILURE.with(|f| f.borrow_mut().take());
        let mut all: Vec<Box<[u8]>> = Vec::new();
        for set in selectors {
            let wire: Vec<WireMatcher> = set.iter().map(to_wire).collect();
            let make = |partitions| SelectRequest {
                partitions,
                matchers: wire.clone(),
                mint: i64::MIN,
                maxt: i64::MAX,
                labels_only: true,
                series: None,
            };
            match self.gather(&make, None) {
                Ok(v) => all.extend(v.iter().map(|s| encode(&s.labels))),
                // `select_labels` cannot fail: the next `read_samples` of this
                // thread's query does (strict reads), else the answer carries it.
                Err(e) => {
                    crate::storage::reader::warn(e.to_string());
                    STRICT_FAILURE.with(|f| *f.borrow_mut() = Some(e.to_string()));
                }
            }
        }
        all.sort_by(|a, b| crate::tsdb::labels::cmp(a, b));
        all.dedup();
        all
    }
}

impl SeriesReader for FanoutReader {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        let wire: Vec<WireMatcher> = matchers.iter().map(to_wire).collect();
        let make = |partitions| SelectRequest {
            partitions,
            matchers: wire.clone(),
            mint,
            maxt,
            labels_only: false,
            series: None,
        };
        let got = self.gather(&make, None)?;
        let total: usize = got.iter().map(|s| s.samples.len()).sum();
        if total > self.max_query_samples {
            return Err(StorageError::new(
                ErrorKind::Limit,
                format!(
                    "query processing would load too many samples into memory ({total} > max_query_samples {})",
                    self.max_query_samples
                ),
            ));
        }
        let mut out: Vec<SeriesData> = got
            .into_iter()
            .filter(|s| !s.samples.is_empty())
            .map(|s| SeriesData {
                labels: encode(&s.labels),
                samples: s
                    .samples
                    .iter()
                    .map(|(t, b)| (*t, f64::from_bits(*b)))
                    .collect(),
                histograms: Vec::new(),
            })
            .collect();
        out.sort_by(|a, b| crate::tsdb::labels::cmp(&a.labels, &b.labels));
        Ok(out)
    }

    fn select_labels(&self, matchers: &[Matcher]) -> Vec<(SeriesHandle, Box<[u8]>)> {
        let labels = self.labels_of(&[matchers.to_vec()]);
        let mut h = self.handles.lock();
        if h.map.len() + labels.len() > MAX_HANDLES {
            h.map.clear();
        }
        labels
            .into_iter()
            .map(|l| {
                h.next = h.next.wrapping_add(1);
                let id = h.next;
                h.map.insert(id, l.clone());
                (id, l)
            })
            .collect()
    }

    fn read_samples(
        &self,
        handles: &[SeriesHandle],
        mint: i64,
        maxt: i64,
        total: &mut usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        if let Some(e) = STRICT_FAILURE.with(|f| f.borrow_mut().take()) {
            return Err(StorageError::new(ErrorKind::Unavailable, e));
        }
        let labels: Vec<Box<[u8]>> = {
            let h = self.handles.lock();
            handles
                .iter()
                .map(|id| {
                    h.map.get(id).cloned().ok_or_else(|| {
                        StorageError::new(
                            ErrorKind::Unavailable,
                            "cluster: series handles expired during the query; retry it",
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let n = self.node.gen.partitions;
        let mut by_part: HashMap<u32, Vec<Vec<(String, String)>>> = HashMap::new();
        for l in &labels {
            by_part
                .entry(partition_of_encoded(l, n))
                .or_default()
                .push(pairs(l));
        }
        let only: BTreeSet<u32> = by_part.keys().copied().collect();
        let make = |partitions: Vec<u32>| SelectRequest {
            series: Some(
                partitions
                    .iter()
                    .flat_map(|p| by_part.get(p).cloned().unwrap_or_default())
                    .collect(),
            ),
            partitions,
            matchers: Vec::new(),
            mint,
            maxt,
            labels_only: false,
        };
        let got = self.gather(&make, Some(&only))?;
        let mut found: HashMap<Box<[u8]>, Vec<(i64, f64)>> = got
            .into_iter()
            .map(|s| {
                (
                    encode(&s.labels),
                    s.samples
                        .iter()
                        .map(|(t, b)| (*t, f64::from_bits(*b)))
                        .collect(),
                )
            })
            .collect();
        let out: Vec<SeriesSamples> = labels
            .iter()
            .map(|l| (found.remove(l).unwrap_or_default(), Vec::new()))
            .collect();
        *total += out.iter().map(|s| s.0.len()).sum::<usize>();
        if *total > self.max_query_samples {
            return Err(StorageError::new(
                ErrorKind::Limit,
                "query processing would load too many samples into memory",
            ));
        }
        Ok(out)
    }

    fn series_first(&self, selectors: &[Vec<Matcher>], k: usize) -> (Vec<Box<[u8]>>, bool) {
        let mut all = self.labels_of(selectors);
        let more = all.len() > k;
        all.truncate(k);
        (all, more)
    }

    fn for_each_series(&self, selectors: &[Vec<Matcher>], f: &mut dyn FnMut(&[u8])) {
        for l in self.labels_of(selectors) {
            f(&l);
        }
    }

    fn label_names(&self) -> Vec<String> {
        let all = self.labels_of(&[vec![Matcher::regex("__name__", ".+", false)
            .unwrap_or_else(|_| Matcher::equal("__name__", ""))]]);
        let mut names: BTreeSet<String> = BTreeSet::new();
        for l in &all {
            for (n, _) in crate::tsdb::labels::iter(l) {
                names.insert(n.to_string());
            }
        }
        names.into_iter().collect()
    }

    fn label_values(&self, name: &str) -> Vec<String> {
        let Ok(m) = Matcher::regex(name, ".+", false) else {
            return Vec::new();
        };
        let all = self.labels_of(&[vec![m]]);
        let mut vals: BTreeSet<String> = BTreeSet::new();
        for l in &all {
            if let Some(v) = crate::tsdb::labels::get(l, name) {
                vals.insert(v.to_string());
            }
        }
        vals.into_iter().collect()
    }

    fn max_query_samples(&self) -> usize {
        self.max_query_samples
    }

    fn max_series_per_query(&self) -> usize {
        self.max_series_per_query
    }
}
