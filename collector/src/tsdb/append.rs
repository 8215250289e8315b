//! The write path: validated series in, head appends, one WAL record out, durable ack.
//!
//! A request's series are grouped by shard so each shard lock is taken once. Accepted
//! samples (and definitions of series created here) go into one WAL payload; the
//! caller is answered only after the WAL writer has synced it.
//!
//! Samples stamped outside `[now − retention, now + future_grace]` are refused one by
//! one, before they reach the head (so one far-future sample cannot move a series' or
//! the head's idea of "now"), and counted by reason. What makes the acknowledgement
//! true when a WAL write fails, or when a retry finds its samples already in the head,
//! is explained at the top of `wal.rs`.
//!
//! A series created by request A may be used by request B before A's record reaches
//! disk. B then repeats the definition in its own record, so a crash after B's sync but
//! before A's cannot leave samples pointing at an unknown series.

use super::head::HistSample;
use super::head::MemSeries;
use super::head::{make_ref, shard_of, split_ref, AppendOutcome, SHARDS};
use super::histogram::FloatHistogram;
use super::labels::{encode_into, put_uvarint, put_varint};
use super::shard_groups::ShardGroups;
use super::wal::{ENTRY_HISTOGRAMS, ENTRY_SAMPLES, ENTRY_SERIES};
use super::{Db, DbError, SeriesRef};
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::prompb::{Histogram, Sample, TimeSeries};
use calm_wire::remote_write_view::WriteRequestView;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// What happened to a write, sample by sample.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    pub appended: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub series_created: u64,
    /// Samples refused because their series would have passed a series limit.
    pub limited: u64,
    /// The limit that refused them (the per-sender rate if it was one of them, since
    /// the sender should retry that later).
    pub limit_hit: Option<SeriesLimit>,
    /// Of `rejected`: stamped after now + future grace.
    pub too_far_in_future: u64,
    /// Of `rejected`: stamped before now − retention.
    pub older_than_retention: u64,
    /// Of `rejected`: same timestamp, another value.
    pub conflicts: u64,
    /// Of `rejected`: behind the series' newest sample by more than the out-of-order
    /// window.
    pub outside_ooo_window: u64,
    /// Of `rejected`: invalid native histograms.
    pub invalid_histograms: u64,
    /// The first few refusals, described for the sender.
    pub errors: Vec<String>,
}

/// A ceiling on series creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesLimit {
    /// `limits.max_series`: series in the whole TSDB.
    Total = 0,
    /// `limits.max_series_per_metric`: series of one metric name.
    PerMetric = 1,
    /// `limits.max_new_series_per_sender_per_minute`.
    SenderRate = 2,
}

impl SeriesLimit {
    /// All of them, in counter order.
    pub const ALL: [SeriesLimit; 3] = [
        SeriesLimit::Total,
        SeriesLimit::PerMetric,
        SeriesLimit::SenderRate,
    ];

    /// The `limit` label of `calm_tsdb_series_limit_rejections_total`.
    pub fn label(self) -> &'static str {
        match self {
            SeriesLimit::Total => "max_series",
            SeriesLimit::PerMetric => "max_series_per_metric",
            SeriesLimit::SenderRate => "max_new_series_per_sender_per_minute",
        }
    }
}

/// Decides whether a request may create one more series (a per-sender budget; `true`
/// takes one from it).
pub type NewSeriesGate<'a> = &'a (dyn Fn() -> bool + Sync);

/// Series admitted by the limits whose index entries are not written yet, so that
/// concurrent requests count them: the limits hold exactly.
#[derive(Default)]
pub struct Admitted {
    total: usize,
    per_metric: std::collections::HashMap<Box<str>, usize>,
}

/// The series limits while one request is applied. Lock order: a head shard, then the
/// index (read), then `Db::admitted`; the index writer takes `Db::admitted` inside
/// the index's write lock, and nobody holds the index while waiting for a shard.
struct Caps<'a> {
    db: &'a Db,
    limited: bool,
    gate: Option<NewSeriesGate<'a>>,
    /// Metric names of the series admitted here (released once indexed).
    names: Vec<Box<str>>,
}

impl<'a> Caps<'a> {
    fn new(db: &'a Db, gate: Option<NewSeriesGate<'a>>) -> Caps<'a> {
        let o = &db.opts;
        Caps {
            db,
            limited: o.max_series != usize::MAX || o.max_series_per_metric != usize::MAX,
            gate,
            names: Vec::new(),
        }
    }

    /// May the series `labels` (canonical encoding) be created? Counts it if so.
    fn admit(&mut self, labels: &[u8]) -> Result<(), SeriesLimit> {
        if !self.limited {
            if let Some(g) = self.gate {
                if !g() {
                    return Err(SeriesLimit::SenderRate);
                }
            }
            return Ok(());
        }
        let o = &self.db.opts;
        let name = super::labels::get(labels, "__name__").unwrap_or("");
        let ix = self.db.index.read();
        let mut adm = self.db.admitted.lock();
        if ix.len() + adm.total >= o.max_series {
            return Err(SeriesLimit::Total);
        }
        let in_metric =
            ix.postings_len("__name__", name) + adm.per_metric.get(name).copied().unwrap_or(0);
        if in_metric >= o.max_series_per_metric {
            return Err(SeriesLimit::PerMetric);
        }
        if let Some(g) = self.gate {
            if !g() {
                return Err(SeriesLimit::SenderRate);
            }
        }
        adm.total += 1;
        *adm.per_metric.entry(name.into()).or_default() += 1;
        self.names.push(name.into());
        Ok(())
    }

    /// Forgets the admitted series once they are in the index (call with the index's
    /// write lock held, after adding them).
    fn release(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let mut adm = self.db.admitted.lock();
        adm.total -= self.names.len().min(adm.total);
        for n in self.names.drain(..) {
            if let Some(c) = adm.per_metric.get_mut(&n) {
                *c -= 1;
                if *c == 0 {
                    adm.per_metric.remove(&n);
                }
            }
        }
    }
}

impl WriteSummary {
    fn refuse_limit(&mut self, limit: SeriesLimit, labels: &[u8], n: u64, db: &Db) {
        self.rejected += n;
        self.limited += n;
        db.stats.series_limit_rejections[limit as usize].fetch_add(n, Ordering::Relaxed);
        if self.limit_hit != Some(SeriesLimit::SenderRate) {
            self.limit_hit = Some(limit);
        }
        if self.errors.len() < 5 {
            let o = &db.opts;
            let why = match limit {
                SeriesLimit::Total => format!(
                    "the collector already holds {} series (limits.max_series)",
                    o.max_series
                ),
                SeriesLimit::PerMetric => format!(
                    "metric {:?} already has {} series (limits.max_series_per_metric)",
                    super::labels::get(labels, "__name__").unwrap_or(""),
                    o.max_series_per_metric
                ),
                SeriesLimit::SenderRate => {
                    "this sender created too many new series this minute (limits.max_new_series_per_sender_per_minute); retry later".to_string()
                }
            };
            let series: Vec<String> = super::labels::iter(labels)
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect();
            self.errors.push(format!(
                "new series refused: {why} (series {{{}}}, {n} samples)",
                series.join(", ")
            ));
        }
    }
}

impl WriteSummary {
    fn refuse(&mut self, outcome: AppendOutcome, labels: &[u8], t: i64) {
        self.refuse_described(outcome, t, || {
            super::labels::iter(labels)
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
    }

    /// A sample refused by the clock rules before it reaches a TSDB (cluster ingest
    /// checks them before publishing): counted and described exactly as the TSDB does.
    /// `series` lists its labels (`a="b", c="d"`), built only when the error is kept.
    pub fn refuse_by_clock(
        &mut self,
        too_far_in_future: bool,
        t: i64,
        series: impl FnOnce() -> String,
    ) {
        let outcome = if too_far_in_future {
            AppendOutcome::TooFarInFuture
        } else {
            AppendOutcome::OlderThanRetention
        };
        self.refuse_described(outcome, t, series);
    }

    fn refuse_described(
        &mut self,
        outcome: AppendOutcome,
        t: i64,
        series: impl FnOnce() -> String,
    ) {
        self.rejected += 1;
        match outcome {
            AppendOutcome::TooFarInFuture => self.too_far_in_future += 1,
            AppendOutcome::OlderThanRetention => self.older_than_retention += 1,
            AppendOutcome::Conflict => self.conflicts += 1,
            AppendOutcome::TooOld => self.outside_ooo_window += 1,
            _ => {}
        }
        if self.errors.len() < 5 {
            let why = match outcome {
                AppendOutcome::Conflict => "duplicate sample for timestamp with a different value",
                AppendOutcome::TooOld => "out of order sample: older than the out-of-order window",
                AppendOutcome::TooFarInFuture => {
                    "too far in the future: stamped later than now + future_grace"
                }
                AppendOutcome::OlderThanRetention => "too old: stamped before now - retention",
                _ => "out of bounds: older than data already persisted",
            };
            self.errors
                .push(format!("{why} (series {{{}}}, timestamp {t})", series()));
        }
    }
}

/// What [`Db::write_view`] did: the write's summary and the series refused as invalid.
#[derive(Debug, Default, Clone)]
pub struct ViewOutcome {
    pub summary: WriteSummary,
    /// Series refused by label validation (their samples are not stored).
    pub invalid_series: usize,
    /// The first few validation errors, described for the sender.
    pub invalid: Vec<String>,
}

/// Where a series of a request goes: a ref found by its raw labels, or a canonical
/// label set (`enc[a..b]`, its hash) to look up or create in its shard.
#[derive(Clone, Copy)]
enum Target {
    Known(SeriesRef),
    New(usize, usize, u64),
}

impl WriteSummary {
    fn reject_histogram(&mut self, why: &str, labels: &[u8], t: i64) {
        self.rejected += 1;
        self.invalid_histograms += 1;
        if self.errors.len() < 5 {
            let series: Vec<String> = super::labels::iter(labels)
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect();
            self.errors.push(format!(
                "invalid native histogram: {why} (series {{{}}}, timestamp {t})",
                series.join(", ")
            ));
        }
    }
}

impl Db {
    /// Appends validated series (labels sorted, checked by `calm_wire::labels`) and
    /// returns once they are durable.
    pub async fn write(&self, series: &[TimeSeries]) -> Result<WriteSummary, DbError> {
        self.write_gated(series, None).await
    }

    /// [`Db::write`] with a per-sender budget of new series (`gate`).
    pub async fn write_gated(
        &self,
        series: &[TimeSeries],
        gate: Option<NewSeriesGate<'_>>,
    ) -> Result<WriteSummary, DbError> {
        self.wal.check_backlog().await?;
        let (queued, summary, created) = {
            // Held from the head append until the record is queued (see `commit`).
            let _gate = self.commit_gate.read();
            let (payload, summary, created) = self.append_to_head_gated(series, gate);
            (self.queue(payload), summary, created)
        };
        self.commit(queued, summary.duplicates > 0, &created)
            .await?;
        Ok(summary)
    }

    /// Queues a WAL payload (nothing for an empty one).
    fn queue(
        &self,
        payload: Vec<u8>,
    ) -> Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
        (!payload.is_empty()).then(|| self.wal.enqueue(payload))
    }

    /// Makes an append durable: its WAL record (if any) synced, then the series it
    /// created released from the pending set, whether or not the sync worked.
    ///
    /// `twins`: the head already held some of the write's samples (duplicates). Their
    /// originals' records may not be durable yet (still queued, or in the WAL's
    /// backlog after a failed write): wait for every writer between head and WAL to
    /// queue its record (taking `commit_gate` exclusively for an instant), then for a
    /// barrier behind them all. See `wal.rs`, rule 2.
    async fn commit(
        &self,
        queued: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
        twins: bool,
        created: &[SeriesRef],
    ) -> Result<(), DbError> {
        let stopped = || std::io::Error::other("the WAL writer has stopped");
        let mut res = match queued {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(stopped())),
            None => Ok(()),
        };
        if res.is_ok() && twins {
            drop(self.commit_gate.write());
            res = self.wal.barrier().await;
        }
        self.release_pending(created);
        Ok(res?)
    }

    /// The synchronous part of [`Db::write`]: appends to the head and builds the WAL
    /// payload. Returns the payload, the summary, and the refs created here.
    pub fn append_to_head(&self, series: &[TimeSeries]) -> (Vec<u8>, WriteSummary, Vec<SeriesRef>) {
        self.append_to_head_gated(series, None)
    }

    /// [`Db::append_to_head`] with the series limits and a per-sender gate.
    pub fn append_to_head_gated(
        &self,
        series: &[TimeSeries],
        gate: Option<NewSeriesGate<'_>>,
    ) -> (Vec<u8>, WriteSummary, Vec<SeriesRef>) {
        let mut caps = Caps::new(self, gate);
        // Series GC must not remove a series between our finding it and appending.
        let _gc = self.gc_guard.read();
        let mut summary = WriteSummary::default();
        // Encode every label set once; remember where each one lies.
        let mut enc: Vec<u8> = Vec::with_capacity(series.len() * 96);
        let mut spans: Vec<(usize, usize, u64)> = Vec::with_capacity(series.len());
        for ts in series {
            let start = enc.len();
            encode_into(&ts.labels, &mut enc);
            let hash = xxh3_64(&enc[start..]);
            spans.push((start, enc.len(), hash));
        }
        let groups = ShardGroups::<SHARDS>::new(&spans, |s| shard_of(s.2));

        let mut wal: Vec<u8> =
            Vec::with_capacity(series.iter().map(|s| s.samples.len() * 10 + 8).sum());
        let mut created: Vec<SeriesRef> = Vec::new();
        let mut new_for_index: Vec<(SeriesRef, usize)> = Vec::new();
        let mut ctx = AppendCtx::new(self);

        for (sh, members) in groups.iter() {
            let mut shard = self.head.shards[sh].lock();
            for &i in members {
                let (a, b, hash) = spans[i as usize];
                let labels = &enc[a..b];
                let ts = &series[i as usize];
                let (slot, is_new) = match shard.lookup(hash, labels) {
                    Some(slot) => (slot, false),
                    None => match caps.admit(labels) {
                        Ok(()) => (shard.create(hash, labels), true),
                        Err(limit) => {
                            let n = (ts.samples.len() + ts.histograms.len()) as u64;
                            summary.refuse_limit(limit, labels, n, self);
                            continue;
                        }
                    },
                };
                let r = make_ref(sh, slot);
                let needs_def = if is_new {
                    created.push(r);
                    new_for_index.push((r, i as usize));
                    self.pending_defs.lock().insert(r);
                    self.pending_count.fetch_add(1, Ordering::Relaxed);
                    summary.series_created += 1;
                    true
                } else {
                    self.pending_count.load(Ordering::Relaxed) > 0
                        && self.pending_defs.lock().contains(&r)
                };
                if needs_def {
                    wal.push(ENTRY_SERIES);
                    put_uvarint(&mut wal, r as u64);
                    put_uvarint(&mut wal, labels.len() as u64);
                    wal.extend_from_slice(labels);
                }
                let ms = &mut shard.series[slot as usize];
                append_samples(
                    ms,
                    r,
                    &ts.samples,
                    &ts.histograms,
                    &mut ctx,
                    &mut summary,
                    &mut wal,
                );
            }
        }
        let max_t = ctx.max_t;
        if max_t > i64::MIN {
            self.head.observe_time(max_t);
        }
        if !new_for_index.is_empty() {
            let mut ix = self.index.write();
            for (r, i) in &new_for_index {
                let (a, b, _) = spans[*i];
                ix.add(*r, super::labels::iter(&enc[a..b]));
            }
            caps.release();
        }
        self.count(&summary);
        (wal, summary, created)
    }

    /// Appends a remote-write request read in place ([`WriteRequestView`]) and returns
    /// once it is durable. Series are validated here (only those not seen before: see
    /// `raw_refs.rs`); invalid ones are skipped and described in the outcome.
    pub async fn write_view(
        &self,
        req: &WriteRequestView<'_>,
        limits: &LabelLimits,
    ) -> Result<ViewOutcome, DbError> {
        self.write_view_gated(req, limits, None).await
    }

    /// [`Db::write_view`] with a per-sender budget of new series (`gate`).
    pub async fn write_view_gated(
        &self,
        req: &WriteRequestView<'_>,
        limits: &LabelLimits,
        gate: Option<NewSeriesGate<'_>>,
    ) -> Result<ViewOutcome, DbError> {
        self.wal.check_backlog().await?;
        let (queued, outcome, created) = {
            let _gate = self.commit_gate.read();
            let (payload, outcome, created) = self.append_view_to_head_gated(req, limits, gate);
            (self.queue(payload), outcome, created)
        };
        self.commit(queued, outcome.summary.duplicates > 0, &created)
            .await?;
        Ok(outcome)
    }

    /// The synchronous part of [`Db::write_view`]: finds or creates each series,
    /// appends to the head and builds the WAL payload.
    pub fn append_view_to_head(
        &self,
        req: &WriteRequestView<'_>,
        limits: &LabelLimits,
    ) -> (Vec<u8>, ViewOutcome, Vec<SeriesRef>) {
        self.append_view_to_head_gated(req, limits, None)
    }

    /// [`Db::append_view_to_head`] with the series limits and a per-sender gate.
    pub fn append_view_to_head_gated(
        &self,
        req: &WriteRequestView<'_>,
        limits: &LabelLimits,
        gate: Option<NewSeriesGate<'_>>,
    ) -> (Vec<u8>, ViewOutcome, Vec<SeriesRef>) {
        let mut caps = Caps::new(self, gate);
        // Series GC must not remove a series between our finding it (by its raw label
        // bytes, step 1) and appending to it.
        let _gc = self.gc_guard.read();
        let series = req.series();
        let mut out = ViewOutcome::default();
        // 1. Known series by the label bytes as sent.
        let keys: Vec<Cow<'_, [u8]>> = series.iter().map(|s| req.raw_labels(s)).collect();
        let raw_hashes: Vec<u64> = keys.iter().map(|k| xxh3_64(k)).collect();
        let refs = self.raw_refs.lookup_many(&keys, &raw_hashes);
        // 2. The others: validate, then encode their canonical label sets.
        let mut enc: Vec<u8> = Vec::new();
        // (series index, known ref or canonical span and hash)
        let mut items: Vec<(u32, Target)> = Vec::with_capacity(series.len());
        for (i, s) in series.iter().enumerate() {
            if let Some(r) = refs[i] {
                items.push((i as u32, Target::Known(r)));
                continue;
            }
            let mut ts = req.to_timeseries(s);
            match validate_series(&mut ts, limits) {
                Ok(()) => {
                    let a = enc.len();
                    encode_into(&ts.labels, &mut enc);
                    let hash = xxh3_64(&enc[a..]);
                    items.push((i as u32, Target::New(a, enc.len(), hash)));
                }
                Err(e) => {
                    out.invalid_series += 1;
                    if out.invalid.len() < 5 {
                        out.invalid.push(e.to_string());
                    }
                }
            }
        }
        // 3. Group by head shard (counting sort keeps request order inside a shard).
        let shard_of_item = |t: &Target| match t {
            Target::Known(r) => split_ref(*r).0,
            Target::New(_, _, h) => shard_of(*h),
        };
        let groups = ShardGroups::<SHARDS>::new(&items, |(_, t)| shard_of_item(t));

        let summary = &mut out.summary;
        let n_samples: usize = series.iter().map(|s| req.samples(s).len()).sum();
        let mut wal: Vec<u8> = Vec::with_capacity(n_samples * 20 + 16);
        let mut created: Vec<SeriesRef> = Vec::new();
        let mut new_refs: Vec<(SeriesRef, u32)> = Vec::new();
        let mut index_adds: Vec<(SeriesRef, usize, usize)> = Vec::new();
        let mut ctx = AppendCtx::new(self);
        for (sh, members) in groups.iter() {
            let mut shard = self.head.shards[sh].lock();
            // Touch every known series' state first: these loads do not depend on each
            // other, so their cache misses overlap, and the appends below find the
            // series (a few hundred KB per request) in cache.
            let mut touched = 0u64;
            for &k in members {
                if let Target::Known(r) = items[k as usize].1 {
                    if let Some(ms) = shard.series.get(split_ref(r).1 as usize) {
                        touched = touched.wrapping_add(ms.open.max_time() as u64);
                    }
                }
            }
            std::hint::black_box(touched);
            for &k in members {
                let (i, target) = items[k as usize];
                let (slot, is_new) = match target {
                    Target::Known(r) => (split_ref(r).1, false),
                    Target::New(a, b, hash) => {
                        let labels = &enc[a..b];
                        let found = shard.lookup(hash, labels);
                        let slot = match found {
                            Some(slot) => slot,
                            None => match caps.admit(labels) {
                                Ok(()) => shard.create(hash, labels),
                                Err(limit) => {
                                    let s = &series[i as usize];
                                    let n = (req.samples(s).len() + req.histograms(s).len()) as u64;
                                    summary.refuse_limit(limit, labels, n, self);
                                    continue;
                                }
                            },
                        };
                        let r = make_ref(sh, slot);
                        new_refs.push((r, i));
                        if found.is_none() {
                            index_adds.push((r, a, b));
                        }
                        (slot, found.is_none())
                    }
                };
                let r = make_ref(sh, slot);
                let needs_def = if is_new {
                    created.push(r);
                    self.pending_defs.lock().insert(r);
                    self.pending_count.fetch_add(1, Ordering::Relaxed);
                    summary.series_created += 1;
                    true
                } else {
                    self.pending_count.load(Ordering::Relaxed) > 0
                        && self.pending_defs.lock().contains(&r)
                };
                let ms = &mut shard.series[slot as usize];
                if needs_def {
                    wal.push(ENTRY_SERIES);
                    put_uvarint(&mut wal, r as u64);
                    put_uvarint(&mut wal, ms.labels.len() as u64);
                    wal.extend_from_slice(&ms.labels);
                }
                let s = &series[i as usize];
                append_samples(
                    ms,
                    r,
                    req.samples(s),
                    req.histograms(s),
                    &mut ctx,
                    summary,
                    &mut wal,
                );
            }
        }
        if ctx.max_t > i64::MIN {
            self.head.observe_time(ctx.max_t);
        }
        if !index_adds.is_empty() {
            let mut ix = self.index.write();
            for (r, a, b) in &index_adds {
                ix.add(*r, super::labels::iter(&enc[*a..*b]));
            }
            caps.release();
        }
        // 4. Remember the raw label bytes of the series resolved the long way.
        if !new_refs.is_empty() {
            let cap = (self.head.series_count() * 2).max(1 << 16);
            for (r, i) in &new_refs {
                let i = *i as usize;
                self.raw_refs.insert(raw_hashes[i], &keys[i], *r, cap);
            }
        }
        self.count(summary);
        (wal, out, created)
    }

    fn count(&self, summary: &WriteSummary) {
        let st = &self.stats;
        st.samples_appended
            .fetch_add(summary.appended, Ordering::Relaxed);
        st.samples_out_of_order
            .fetch_add(summary.out_of_order, Ordering::Relaxed);
        st.samples_duplicate
            .fetch_add(summary.duplicates, Ordering::Relaxed);
        st.samples_rejected
            .fetch_add(summary.rejected, Ordering::Relaxed);
        st.series_created
            .fetch_add(summary.series_created, Ordering::Relaxed);
        for (c, n) in [
            (&st.rejected_future, summary.too_far_in_future),
            (&st.rejected_retention, summary.older_than_retention),
            (&st.rejected_conflict, summary.conflicts),
            (&st.rejected_ooo_window, summary.outside_ooo_window),
            (&st.rejected_invalid_histogram, summary.invalid_histograms),
        ] {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn release_pending(&self, created: &[SeriesRef]) {
        if created.is_empty() {
            return;
        }
        let mut p = self.pending_defs.lock();
        for r in created {
            if p.remove(r) {
                self.pending_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What appending one series' samples needs besides the series.
struct AppendCtx {
    min_valid: i64,
    window: Option<i64>,
    /// Samples must lie in `[oldest, newest]`: now − retention, now + future grace
    /// (see [`super::Options::future_grace_ms`]).
    oldest: i64,
    newest: i64,
    /// Newest accepted timestamp so far.
    max_t: i64,
    /// Scratch: the accepted samples of the series at hand.
    accepted: Vec<(i64, f64)>,
}

impl AppendCtx {
    /// The context of one write request to `db`: its current limits, nothing accepted.
    fn new(db: &Db) -> AppendCtx {
        let (oldest, newest) = match db.opts.future_grace_ms {
            Some(grace) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                (
                    now.saturating_sub(db.opts.retention_ms),
                    now.saturating_add(grace),
                )
            }
            None => (i64::MIN, i64::MAX),
        };
        AppendCtx {
            min_valid: db.head.min_valid.load(Ordering::Relaxed),
            window: Some(db.opts.ooo_window_ms),
            oldest,
            newest,
            max_t: i64::MIN,
            accepted: Vec::new(),
        }
    }
}

/// Appends one series' samples and histograms to its head series and their WAL entries
/// to `wal`; counts outcomes in `summary`. The caller holds the series' shard.
fn append_samples(
    ms: &mut MemSeries,
    r: SeriesRef,
    samples: &[Sample],
    histograms: &[Histogram],
    ctx: &mut AppendCtx,
    summary: &mut WriteSummary,
    wal: &mut Vec<u8>,
) {
    let (window, min_valid) = (ctx.window, ctx.min_valid);
    let (oldest, newest) = (ctx.oldest, ctx.newest);
    // The clock bounds come first: one far-future sample must not move the series'
    // (or the head's) idea of "now" (see `compact.rs`).
    // (A plain function, not a closure taking `&mut dyn FnMut`: the append is inlined
    // into the per-sample loop.)
    let outside = |t: i64| {
        if t > newest {
            Some(AppendOutcome::TooFarInFuture)
        } else if t < oldest {
            Some(AppendOutcome::OlderThanRetention)
        } else {
            None
        }
    };
    ctx.accepted.clear();
    for s in samples {
        let outcome = match outside(s.timestamp) {
            Some(o) => o,
            None => ms.append(s.timestamp, s.value, window, min_valid),
        };
        match outcome {
            AppendOutcome::Appended => {
                summary.appended += 1;
                ctx.accepted.push((s.timestamp, s.value));
            }
            AppendOutcome::OutOfOrder => {
                summary.out_of_order += 1;
                ctx.accepted.push((s.timestamp, s.value));
            }
            AppendOutcome::Duplicate => summary.duplicates += 1,
            other => summary.refuse(other, &ms.labels, s.timestamp),
        }
    }
    if let Some(&(t, _)) = ctx.accepted.iter().max_by_key(|s| s.0) {
        ctx.max_t = ctx.max_t.max(t);
    }
    write_samples(wal, r, &ctx.accepted);
    if !histograms.is_empty() {
        let mut hs: Vec<HistSample> = Vec::with_capacity(histograms.len());
        for ph in histograms {
            let h = FloatHistogram::from_prompb(ph);
            if let Err(why) = h.validate() {
                summary.reject_histogram(&why, &ms.labels, ph.timestamp);
                continue;
            }
            let h = Arc::new(h);
            let outcome = match outside(ph.timestamp) {
                Some(o) => o,
                None => ms.append_histogram(ph.timestamp, &h, window, min_valid),
            };
            match outcome {
                AppendOutcome::Appended => summary.appended += 1,
                AppendOutcome::OutOfOrder => summary.out_of_order += 1,
                AppendOutcome::Duplicate => {
                    summary.duplicates += 1;
                    continue;
                }
                other => {
                    summary.refuse(other, &ms.labels, ph.timestamp);
                    continue;
                }
            }
            ctx.max_t = ctx.max_t.max(ph.timestamp);
            hs.push((ph.timestamp, h));
        }
        write_histograms(wal, r, &hs);
    }
}

/// Appends a samples entry for one series (nothing when `samples` is empty).
pub fn write_samples(wal: &mut Vec<u8>, r: SeriesRef, samples: &[(i64, f64)]) {
    let Some(&(t0, v0)) = samples.first() else {
        return;
    };
    wal.push(ENTRY_SAMPLES);
    put_uvarint(wal, r as u64);
    put_uvarint(wal, samples.len() as u64);
    put_varint(wal, t0);
    wal.extend_from_slice(&v0.to_bits().to_le_bytes());
    let mut prev = t0;
    for &(t, v) in &samples[1..] {
        put_varint(wal, t.wrapping_sub(prev));
        wal.extend_from_slice(&v.to_bits().to_le_bytes());
        prev = t;
    }
}

/// Appends a histograms entry for one series (nothing when `samples` is empty).
pub fn write_histograms(wal: &mut Vec<u8>, r: SeriesRef, samples: &[HistSample]) {
    if samples.is_empty() {
        return;
    }
    wal.push(ENTRY_HISTOGRAMS);
    put_uvarint(wal, r as u64);
    put_uvarint(wal, samples.len() as u64);
    for (t, h) in samples {
        put_varint(wal, *t);
        h.encode(wal);
    }
}
