//! Whole-TSDB tests: write, read back, crash, restart, persist, expire.

use super::*;
use calm_wire::prompb::{Label, Sample, TimeSeries};

fn series(name: &str, inst: &str, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![Label::new("__name__", name), Label::new("instance", inst)],
        samples: samples
            .iter()
            .map(|&(t, v)| Sample {
                timestamp: t,
                value: v,
            })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn read_all(db: &Db, name: &str) -> Vec<(String, Vec<(i64, u64)>)> {
    db.select(
        &[Matcher::equal("__name__", name)],
        i64::MIN / 2,
        i64::MAX / 2,
    )
    .unwrap()
    .into_iter()
    .map(|s| {
        (
            labels::get(&s.labels, "instance").unwrap_or("").to_string(),
            s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
        )
    })
    .collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn opts(dir: &std::path::Path) -> Options {
    let mut o = Options::new(dir);
    o.ooo_window_ms = 60_000;
    o
}

#[test]
fn survives_crash_and_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    let want: Vec<(i64, f64)> = (0..500)
        .map(|i| (t0 + i * 15_000, i as f64 * 1.5))
        .collect();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for part in want.chunks(50) {
            block_on(db.write(&[series("m", "a", part), series("m", "b", &part[..1])])).unwrap();
        }
        // Dropped without close: a crash as far as the data dir can tell.
    }
    let expect_a: Vec<(i64, u64)> = want.iter().map(|(t, v)| (*t, v.to_bits())).collect();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        let got = read_all(&db, "m");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, expect_a);
        assert_eq!(got[1].1.len(), 10);
        // Retries of stored samples are no-ops; new samples go on.
        let s = block_on(db.write(&[series("m", "a", &want[..10])])).unwrap();
        assert_eq!(s.duplicates, 10);
        assert_eq!(s.rejected, 0);
        block_on(db.write(&[series("m", "a", &[(t0 + 500 * 15_000, 7.0)])])).unwrap();
        db.close().unwrap();
    }
    let db = Db::open(opts(dir.path())).unwrap();
    let got = read_all(&db, "m");
    assert_eq!(got[0].1.len(), 501);
    assert_eq!(got[0].1[..500], expect_a[..]);
    // WAL before the checkpoint is gone: only the fresh segment(s) remain.
    assert!(wal::segments(&dir.path().join("wal")).unwrap().len() <= 2);
}

#[test]
fn out_of_order_window_duplicates_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let t = 1_700_000_000_000i64;
    block_on(db.write(&[series("m", "a", &[(t, 1.0), (t + 120_000, 2.0)])])).unwrap();
    let s = block_on(db.write(&[series(
        "m",
        "a",
        &[
            (t + 90_000, 3.0),
            (t + 10, 4.0),
            (t, 9.0),
            (t + 120_000, 2.0),
        ],
    )]))
    .unwrap();
    assert_eq!(s.out_of_order, 1, "{s:?}");
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.rejected, 2);
    assert!(
        s.errors.iter().any(|e| e.contains("out of order")),
        "{:?}",
        s.errors
    );
    assert!(
        s.errors.iter().any(|e| e.contains("duplicate sample")),
        "{:?}",
        s.errors
    );
    let got = read_all(&db, "m");
    assert_eq!(got[0].1.len(), 3);
}

#[test]
fn buckets_persist_to_pages_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = bucket_of(1_700_000_000_000);
    let step = 60_000;
    let n = (4 * BUCKET_MS) / step;
    let samples: Vec<(i64, f64)> = (0..n).map(|i| (t0 + i * step, i as f64)).collect();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for part in samples.chunks(100) {
            block_on(db.write(&[series("m", "a", part)])).unwrap();
        }
        let persisted = compact::persist_due_buckets(&db).unwrap();
        assert!(persisted >= 2, "persisted {persisted}");
        assert!(!db.catalog.read().is_empty());
        let got = read_all(&db, "m");
        assert_eq!(got[0].1.len() as i64, n);
        // Samples for a persisted bucket are refused as out of bounds.
        let s = block_on(db.write(&[series("m", "a", &[(t0 + 1, 1.0)])])).unwrap();
        assert_eq!(s.rejected, 1);
    }
    // After a crash, pages plus WAL give every sample exactly once.
    let db = Db::open(opts(dir.path())).unwrap();
    let got = read_all(&db, "m");
    let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
    assert_eq!(got[0].1, want);
    // Retention: with "now" far ahead, old buckets go.
    let removed = compact::apply_retention(&db, t0 + 3 * BUCKET_MS + db.opts.retention_ms).unwrap();
    assert!(removed > 0);
    let got = read_all(&db, "m");
    assert!(got[0].1.first().unwrap().0 >= t0 + 2 * BUCKET_MS);
}

/// Series that stopped: once retention has deleted their pages, series GC removes
/// them from the index, the head and the raw-label keys, for good (a restart, WAL
/// replay included, does not bring them back); a series that comes back is new.
#[test]
fn series_with_no_data_left_are_removed_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = bucket_of(1_700_000_000_000);
    let step = 60_000;
    let early: Vec<(i64, f64)> = (0..BUCKET_MS / step)
        .map(|i| (t0 + i * step, 1.0))
        .collect();
    let late: Vec<(i64, f64)> = (0..3 * BUCKET_MS / step)
        .map(|i| (t0 + BUCKET_MS + i * step, 2.0))
        .collect();
    let retention_cut = t0 + BUCKET_MS + BUCKET_MS / 2 + Options::new(dir.path()).retention_ms;
    {
        let db = Db::open(opts(dir.path())).unwrap();
        // "gone" only has samples in the first bucket; "stays" goes on after it.
        for part in early.chunks(60) {
            block_on(db.write(&[series("gone", "a", part), series("stays", "a", part)])).unwrap();
        }
        // A view write, so "gone" is also known by its raw label bytes.
        let w = calm_wire::prompb::WriteRequest {
            timeseries: vec![series("gone", "b", &early[..1])],
            metadata: vec![],
        };
        let body = prost::Message::encode_to_vec(&w);
        let view = calm_wire::remote_write_view::WriteRequestView::parse(&body).unwrap();
        block_on(db.write_view(&view, &Default::default())).unwrap();
        for part in late.chunks(60) {
            block_on(db.write(&[series("stays", "a", part)])).unwrap();
        }
        assert!(compact::persist_due_buckets(&db).unwrap() >= 2);
        assert!(!db.raw_refs.is_empty());
        // Nothing expired yet: nothing to collect.
        assert_eq!(gc::collect_series(&db).unwrap(), 0);
        assert_eq!(db.series_count(), 3);
        // Retention deletes the first bucket: "gone" has no data left anywhere.
        db.maintain(retention_cut).unwrap();
        assert_eq!(db.stats.series_removed.load(Ordering::Relaxed), 2);
        assert_eq!(db.series_count(), 1);
        assert_eq!(db.label_values("__name__"), vec!["stays"]);
        assert_eq!(db.label_values("instance"), vec!["a"]);
        assert_eq!(db.raw_refs.len(), 0);
        assert!(read_all(&db, "gone").is_empty());
        assert_eq!(read_all(&db, "stays")[0].1.len(), late.len());
        // Crash: dropped without close, the WAL still holds "gone"'s definition.
    }
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(db.label_values("__name__"), vec!["stays"]);
    assert_eq!(db.series_count(), 1);
    // It comes back: a new series, with a ref never used before.
    let t = t0 + 4 * BUCKET_MS;
    block_on(db.write(&[series("gone", "a", &[(t, 5.0)])])).unwrap();
    assert_eq!(
        read_all(&db, "gone"),
        vec![("a".to_string(), vec![(t, 5f64.to_bits())])]
    );
    let refs = db
        .index
        .read()
        .select(&[Matcher::equal("__name__", "gone")]);
    let stays = db
        .index
        .read()
        .select(&[Matcher::equal("__name__", "stays")]);
    assert!(refs[0] > stays[0], "a new ref: {refs:?} vs {stays:?}");
    db.close().unwrap();
    drop(db);
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(db.label_values("__name__"), vec!["gone", "stays"]);
    assert_eq!(read_all(&db, "gone")[0].1, vec![(t, 5f64.to_bits())]);
}

#[test]
fn selection_by_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    block_on(db.write(&[
        series("up", "a", &[(1000, 1.0)]),
        series("up", "b", &[(1000, 0.0)]),
        series("down", "a", &[(1000, 1.0)]),
    ]))
    .unwrap();
    let re = Matcher::regex("instance", "b|c", false).unwrap();
    let got = db
        .select(&[Matcher::equal("__name__", "up"), re], 0, 2000)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(labels::get(&got[0].labels, "instance"), Some("b"));
    assert_eq!(db.label_values("__name__"), vec!["down", "up"]);
}

fn native(t: i64, i: u64) -> calm_wire::prompb::Histogram {
    use calm_wire::prompb::{BucketSpan, Histogram};
    Histogram {
        count_int: Some(3 * i + 1),
        sum: i as f64 * 2.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_int: Some(1),
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_deltas: vec![i as i64, i as i64],
        negative_spans: vec![BucketSpan {
            offset: 0,
            length: 1,
        }],
        negative_deltas: vec![i as i64],
        timestamp: t,
        ..Default::default()
    }
}

fn read_histograms(db: &Db, name: &str) -> Vec<(i64, histogram::FloatHistogram)> {
    let got = db
        .select(
            &[Matcher::equal("__name__", name)],
            i64::MIN / 2,
            i64::MAX / 2,
        )
        .unwrap();
    assert_eq!(got.len(), 1, "one series");
    got[0]
        .histograms
        .iter()
        .map(|(t, h)| (*t, (**h).clone()))
        .collect()
}

#[test]
fn native_histograms_survive_wal_checkpoint_pages_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = bucket_of(1_700_000_000_000);
    let step = 60_000;
    let n = (3 * BUCKET_MS) / step;
    let mut ts = series("h", "a", &[]);
    ts.histograms = (0..n as u64)
        .map(|i| native(t0 + i as i64 * step, i))
        .collect();
    // A float sample after the histograms: the series holds both kinds.
    let float_t = t0 + n * step;
    ts.samples.push(Sample {
        timestamp: float_t,
        value: 42.0,
    });
    let want: Vec<(i64, histogram::FloatHistogram)> = ts
        .histograms
        .iter()
        .map(|h| (h.timestamp, histogram::FloatHistogram::from_prompb(h)))
        .collect();
    assert_eq!(want[2].1.positive_buckets, vec![2.0, 4.0]);
    // Stored like Prometheus' chunks do: after the first, each histogram says whether
    // it follows a counter reset (these only grow).
    let mut want = want;
    for w in want.iter_mut().skip(1) {
        w.1.counter_reset_hint = histogram::ResetHint::NotReset;
    }
    assert_eq!(want[2].1.count, 7.0);
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for part in ts.histograms.chunks(50) {
            let mut w = series("h", "a", &[]);
            w.histograms = part.to_vec();
            let s = block_on(db.write(&[w])).unwrap();
            assert_eq!(s.rejected, 0, "{:?}", s.errors);
        }
        block_on(db.write(&[series("h", "a", &[(float_t, 42.0)])])).unwrap();
        assert_eq!(read_histograms(&db, "h"), want);
        // A histogram where a float is stored conflicts; a retry is a duplicate.
        let mut again = series("h", "a", &[]);
        again.histograms = vec![native(float_t, 1), native(t0, 0)];
        let s = block_on(db.write(&[again])).unwrap();
        assert_eq!((s.rejected, s.duplicates), (1, 1));
        // Crash (no close): the WAL alone brings them back.
    }
    {
        let db = Db::open(opts(dir.path())).unwrap();
        assert_eq!(read_histograms(&db, "h"), want);
        // Persist the first buckets into sled pages, then checkpoint the rest.
        let persisted = compact::persist_due_buckets(&db).unwrap();
        assert!(persisted >= 1, "persisted {persisted}");
        assert_eq!(read_histograms(&db, "h"), want);
        db.close().unwrap();
    }
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(read_histograms(&db, "h"), want);
    let got = read_all(&db, "h");
    assert_eq!(got[0].1, vec![(float_t, 42f64.to_bits())]);
    // A malformed histogram is refused with a reason.
    let mut bad = series("h", "a", &[]);
    let mut nh = native(float_t + step, 1);
    nh.positive_deltas.pop();
    bad.histograms = vec![nh];
    let s = block_on(db.write(&[bad])).unwrap();
    assert_eq!(s.rejected, 1);
    assert!(
        s.errors[0].contains("spans cover 2 buckets"),
        "{:?}",
        s.errors
    );
}

/// The checkpoint file of a data dir after a clean close.
fn checkpoint_file(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("checkpoint."))
        .expect("a checkpoint after a clean close")
        .path()
}

/// Series scraped together share their timestamps in the checkpoint (one column per
/// scrape sequence); what comes back after a clean restart is every sample, bit for
/// bit, whatever the values: short decimals, noisy floats, NaN (staleness), -0.0.
#[test]
fn checkpoint_with_shared_timestamp_columns_restores_every_bit() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    // Two "targets" with their own scrape jitter; 40 series each.
    let ts = |target: i64, i: i64| t0 + target * 3_001 + i * 15_000 + (i * 7 + target) % 5 - 2;
    let value = |s: i64, i: i64| match s % 4 {
        0 => 1000.0 + (i * s) as f64 * 0.25,
        1 => ((i + s) as f64).sin(),
        2 if i == 100 => crate::tsdb::stale_nan(),
        3 if i % 50 == 7 => -0.0,
        _ => (i / 3) as f64,
    };
    let mut want: Vec<(String, Vec<(i64, u64)>)> = Vec::new();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for round in 0..3 {
            let mut batch = Vec::new();
            for target in 0..2i64 {
                for s in 0..40i64 {
                    let samples: Vec<(i64, f64)> = (round * 100..(round + 1) * 100)
                        .map(|i| (ts(target, i), value(s, i)))
                        .collect();
                    batch.push(series("m", &format!("t{target}-s{s:02}"), &samples));
                }
            }
            block_on(db.write(&batch)).unwrap();
        }
        for target in 0..2i64 {
            for s in 0..40i64 {
                let samples = (0..300)
                    .map(|i| (ts(target, i), value(s, i).to_bits()))
                    .collect();
                want.push((format!("t{target}-s{s:02}"), samples));
            }
        }
        db.close().unwrap();
    }
    let file = checkpoint_file(dir.path());
    let size = std::fs::metadata(&file).unwrap().len();
    let db = Db::open(opts(dir.path())).unwrap();
    let got = read_all(&db, "m");
    assert_eq!(got.len(), want.len());
    for ((inst, samples), (want_inst, want_samples)) in got.iter().zip(&want) {
        assert_eq!(inst, want_inst);
        assert_eq!(samples, want_samples, "series {want_inst}");
    }
    // 24,000 samples: timestamps stored once per target keep the file small.
    assert!(size < 24_000 * 2, "checkpoint is {size} bytes");
    // The file joins a bucket's chunks; the head cuts them again as it cuts its own, so
    // a query over the last minutes does not decode a whole bucket.
    let mut chunks = 0;
    for sh in 0..super::head::SHARDS {
        for ms in db.head.shards[sh].lock().series.iter() {
            for c in &ms.closed {
                assert!(
                    c.count <= super::chunkenc::MAX_SAMPLES,
                    "{} samples",
                    c.count
                );
                chunks += 1;
            }
        }
    }
    assert!(
        chunks >= 80 * 3,
        "{chunks} closed chunks for 80 series of 300 samples"
    );
}

/// Rewrites a version 2 checkpoint in the version 1 layout: no header, no column
/// table, every chunk whole (what Calm wrote before timestamp columns).
fn checkpoint_to_v1(path: &std::path::Path) {
    use super::checkpoint::{FCHUNK_SPLIT, HEADER_V2};
    use super::chunkenc::{Chunk, XorAppender};
    use super::labels::{get_bytes, get_u64, get_uvarint, get_varint, put_uvarint};
    let data = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    let mut r = &data[..];
    let mut rec = Vec::new();
    let mut out = Vec::new();
    assert!(wal::read_record(&mut r, &mut rec).unwrap());
    assert_eq!(rec, HEADER_V2);
    while wal::read_record(&mut r, &mut rec).unwrap() {
        let mut buf = &rec[..];
        let cols = super::ts_columns::read_columns(&mut buf).unwrap();
        let mut entries = Vec::new();
        while !buf.is_empty() {
            put_uvarint(&mut entries, get_uvarint(&mut buf).unwrap());
            let k = get_uvarint(&mut buf).unwrap();
            put_uvarint(&mut entries, k);
            for _ in 0..k {
                let c = if get_bytes(&mut buf, 1).unwrap()[0] == FCHUNK_SPLIT {
                    let col = get_uvarint(&mut buf).unwrap() as usize;
                    let values = Chunk::decode(&mut buf).unwrap();
                    let samples = super::ts_columns::with_timestamps(&values, &cols[col]);
                    Chunk::from_samples(&samples.unwrap()).compact()
                } else {
                    Chunk::decode(&mut buf).unwrap()
                };
                c.encode(&mut entries);
            }
            // Appender state and out-of-order samples are the same in both versions.
            let rest = buf;
            XorAppender::decode_state(&mut buf).unwrap();
            for _ in 0..get_uvarint(&mut buf).unwrap() {
                get_varint(&mut buf).unwrap();
                get_u64(&mut buf).unwrap();
            }
            entries.extend_from_slice(&rest[..rest.len() - buf.len()]);
        }
        wal::frame(&entries, &mut out);
    }
    std::fs::write(path, zstd::encode_all(&out[..], 3).unwrap()).unwrap();
}

/// A data dir written before timestamp columns (version 1 checkpoint) still opens
/// with every sample.
#[test]
fn version_1_checkpoints_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    let want: Vec<(i64, f64)> = (0..300)
        .map(|i| (t0 + i * 15_000 + i % 3, i as f64 * 0.5))
        .collect();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        block_on(db.write(&[series("m", "a", &want), series("m", "b", &want[..7])])).unwrap();
        db.close().unwrap();
    }
    let file = checkpoint_file(dir.path());
    checkpoint_to_v1(&file);
    let db = Db::open(opts(dir.path())).unwrap();
    let got = read_all(&db, "m");
    let bits: Vec<(i64, u64)> = want.iter().map(|(t, v)| (*t, v.to_bits())).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, bits);
    assert_eq!(got[1].1, bits[..7]);
}

#[test]
fn series_limits_hold_exactly_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_series = 150;
    o.max_series_per_metric = 100;
    let db = Db::open(o).unwrap();
    let t = 1_700_000_000_000;
    let summaries: Vec<append::WriteSummary> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|w| {
                let db = &db;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for b in 0..5 {
                        let batch: Vec<TimeSeries> = (0..10)
                            .flat_map(|i| {
                                let inst = format!("w{w}-{b}-{i}");
                                [
                                    series("a", &inst, &[(t, 1.0)]),
                                    series("b", &inst, &[(t, 1.0)]),
                                ]
                            })
                            .collect();
                        out.push(block_on(db.write(&batch)).unwrap());
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let created: u64 = summaries.iter().map(|s| s.series_created).sum();
    let limited: u64 = summaries.iter().map(|s| s.limited).sum();
    assert_eq!(created, 150, "max_series holds exactly");
    assert_eq!(limited, 800 - 150);
    assert_eq!(db.series_count(), 150);
    let a = db
        .select_refs(&[index::Matcher::equal("__name__", "a")])
        .len();
    let b = db
        .select_refs(&[index::Matcher::equal("__name__", "b")])
        .len();
    assert!(
        a <= 100 && b <= 100,
        "max_series_per_metric holds: a {a}, b {b}"
    );
}

/// Samples outside `[now − retention, now + future_grace]` are refused one by one
/// (floats and native histograms), counted by reason, and move nothing: the good
/// samples beside them are stored and maintenance persists no bucket.
#[test]
fn samples_outside_the_clock_bounds_are_refused_and_move_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.future_grace_ms = Some(10 * 60_000);
    let db = Db::open(o).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let y2100 = 4_102_444_800_000i64;
    let mut bad = series(
        "clock",
        "a",
        &[
            (i64::MIN, 1.0),
            (-1, 1.0),
            (0, 1.0),
            (now - 1000, 7.0),
            (now + 11 * 60_000, 1.0),
            (y2100, 1.0),
            (i64::MAX, 1.0),
        ],
    );
    bad.histograms = vec![native(y2100, 1), native(0, 2)];
    let s = block_on(db.write(&[bad])).unwrap();
    assert_eq!(s.appended, 1);
    assert_eq!((s.too_far_in_future, s.older_than_retention), (4, 4));
    assert_eq!(s.rejected, 8);
    assert_eq!(db.stats.rejected_future.load(Ordering::Relaxed), 4);
    assert_eq!(db.stats.rejected_retention.load(Ordering::Relaxed), 4);
    assert_eq!(
        read_all(&db, "clock"),
        vec![("a".into(), vec![(now - 1000, 7f64.to_bits())])]
    );
    db.maintain(now).unwrap();
    assert_eq!(db.stats.buckets_persisted.load(Ordering::Relaxed), 0);
    // A normal write still goes through.
    let s = block_on(db.write(&[series("clock", "a", &[(now, 8.0)])])).unwrap();
    assert_eq!((s.appended, s.rejected), (1, 0));
}

/// A read running while a bucket moves from the head to pages sees every sample: the
/// catalog taken before the move and the head read after it would otherwise both miss
/// the bucket (what `persisted_reads` saw once in a few runs).
#[test]
fn reads_while_buckets_are_persisted_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let t0 = bucket_of(1_700_000_000_000);
    let per_series = 12 * 240;
    let samples: Vec<(i64, f64)> = (0..per_series as i64)
        .map(|i| (t0 + i * 15_000, i as f64))
        .collect();
    let all: Vec<TimeSeries> = (0..200)
        .map(|s| series("m", &format!("h{s}"), &samples))
        .collect();
    block_on(db.write(&all)).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while compact::persist_due_buckets(&db).unwrap() > 0 {}
            done.store(true, Ordering::SeqCst);
        });
        let mut reads = 0;
        while !done.load(Ordering::SeqCst) || reads < 3 {
            let got = db
                .select(
                    &[Matcher::equal("__name__", "m")],
                    i64::MIN / 2,
                    i64::MAX / 2,
                )
                .unwrap();
            assert_eq!(got.len(), 200);
            for s in &got {
                assert_eq!(s.samples.len(), per_series, "read {reads}");
            }
            let refs: Vec<SeriesRef> = db.select_refs(&[Matcher::equal("__name__", "m")]);
            let mut total = 0;
            let read = db
                .read_samples(
                    &refs,
                    i64::MIN / 2,
                    i64::MAX / 2,
                    &mut total,
                    querier::Decode::Values,
                )
                .unwrap();
            assert!(read.iter().all(|s| s.0.len() == per_series), "read {reads}");
            assert_eq!(total, 200 * per_series);
            reads += 1;
        }
    });
    assert_eq!(db.catalog.read().len(), 5, "buckets persisted");
}
