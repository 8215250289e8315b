//! Offline measurement of page layouts on a real data dir (not run by default):
//! `CALM_STUDY_DIR=/copy/of/data CALM_STUDY_BUCKETS=12 cargo test -p calm-collector
//! --lib study -- --ignored --nocapture`. Reads the persisted pages with the store's
//! reader and prints what each candidate layout would cost after zstd
//! (`bench/RESULTS.md`, "Bytes at rest").

use super::chunkenc::{decimal, dvarint, Chunk};
use super::labels::put_uvarint;
use super::store::Store;
use super::ts_columns::{self, ColumnTable};
use super::SeriesRef;
use std::collections::HashMap;

struct Series {
    r: SeriesRef,
    ts: Vec<i64>,
    vals: Vec<f64>,
}

/// Value encodings compared.
#[derive(Clone, Copy, Debug)]
enum Enc {
    /// Today's: decimal values (bit buckets) or XOR.
    Bits,
    /// Decimal varints or packed (dvarint.rs, varint bytes weighed at this %) or XOR.
    Varint(usize),
    /// What page4 stores today (`page4::values_chunk`).
    Page4,
    /// Whichever of XOR and the decimal forms has the least entropy estimate plus
    /// `per_symbol` hundredths of a byte per distinct byte value (the coder's table);
    /// packed forms at `packed_pct` % of their length instead, when given.
    Entropy {
        per_symbol: usize,
        packed_pct: Option<usize>,
    },
    /// Whichever of XOR and the dvarint forms zstd at this level makes smallest alone.
    Zstd(i32),
}

fn values_bytes(s: &[f64], enc: Enc) -> (u8, Vec<u8>) {
    match enc {
        Enc::Bits => {
            if let Some(d) = decimal::encode_values(s) {
                return (4, d);
            }
        }
        Enc::Varint(pct) => {
            if let Some((ms, k)) = decimal::mantissas(s) {
                return (5, dvarint::encode_mantissas_as(&ms, k, pct));
            }
        }
        Enc::Page4 => {
            let samples: Vec<(i64, f64)> =
                s.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
            let c = super::store::page4::values_chunk(&samples);
            return (c.encoding, c.data.into_vec());
        }
        Enc::Entropy { .. } | Enc::Zstd(_) => {
            let mut z = match enc {
                Enc::Zstd(l) => Some(zstd::bulk::Compressor::new(l).unwrap()),
                _ => None,
            };
            let mut cost = |b: &[u8], packed: bool| match (&mut z, enc) {
                (Some(z), _) => z.compress(b).unwrap().len().min(b.len()) * 100,
                (
                    None,
                    Enc::Entropy {
                        packed_pct: Some(pct),
                        ..
                    },
                ) if packed => b.len() * pct,
                (None, Enc::Entropy { per_symbol, .. }) => {
                    let mut seen = [false; 256];
                    b.iter().for_each(|&x| seen[x as usize] = true);
                    dvarint::entropy_cost(b) + per_symbol * seen.iter().filter(|&&x| x).count()
                }
                _ => unreachable!(),
            };
            let samples: Vec<(i64, f64)> =
                s.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
            let c = ts_columns::values_only(&samples);
            let xc = cost(&c.data, false);
            if let Some((ms, k)) = decimal::mantissas(s) {
                let (dc, d) = dvarint::encode_mantissas_by(&ms, k, &mut cost);
                if dc < xc {
                    return (5, d);
                }
            }
            return (c.encoding, c.data.into_vec());
        }
    }
    let samples: Vec<(i64, f64)> = s.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
    let c = ts_columns::values_only(&samples);
    (c.encoding, c.data.into_vec())
}

#[derive(Clone, Copy, Debug)]
struct Layout {
    enc: Enc,
    /// Columns once per bucket (true) or per page.
    bucket_columns: bool,
    /// Series ordered by their timestamp column (host), not by ref.
    by_host: bool,
    frame: usize,
    level: i32,
    /// Packed payloads kept out of zstd (stored as they are).
    split: bool,
}

#[derive(Default, Debug, Clone, Copy)]
struct Cost {
    stored: u64,
    raw: u64,
    cols_stored: u64,
    cols_raw: u64,
}

/// What the series of one bucket (or day) cost stored in `l`.
fn cost(series: &[&Series], l: Layout) -> Cost {
    let mut z = zstd::bulk::Compressor::new(l.level).unwrap();
    let mut c = Cost::default();
    let mut order: Vec<&Series> = series.to_vec();
    let mut col_of: HashMap<Vec<i64>, usize> = HashMap::new();
    for s in series {
        let n = col_of.len();
        col_of.entry(s.ts.clone()).or_insert(n);
    }
    if l.by_host {
        order.sort_by_key(|s| (col_of[&s.ts], s.r));
    }
    let mut bucket_cols = ColumnTable::default();
    let mut cols = ColumnTable::default();
    let mut entries: Vec<u8> = Vec::new();
    let mut frames: Vec<usize> = Vec::new();
    let mut flush =
        |cols: &mut ColumnTable, entries: &mut Vec<u8>, frames: &mut Vec<usize>, c: &mut Cost| {
            if entries.is_empty() {
                return;
            }
            if !l.bucket_columns {
                let mut b = Vec::new();
                cols.write_and_clear(&mut b);
                c.cols_raw += b.len() as u64;
                let zb = z.compress(&b).unwrap().len() as u64;
                c.cols_stored += zb;
                c.stored += zb;
            }
            c.raw += entries.len() as u64;
            let mut framed = 0;
            for (i, &at) in frames.iter().enumerate() {
                let end = frames.get(i + 1).copied().unwrap_or(entries.len());
                framed += z.compress(&entries[at..end]).unwrap().len() + 6;
            }
            let whole = z.compress(entries).unwrap().len() + 6;
            c.stored += framed.min(whole * 103 / 100) as u64 + 4;
            entries.clear();
            frames.clear();
        };
    let mut prev = 0u32;
    for s in &order {
        if frames
            .last()
            .is_none_or(|&at| entries.len() - at >= l.frame)
        {
            frames.push(entries.len());
        }
        let col = if l.bucket_columns {
            bucket_cols.intern(&s.ts)
        } else {
            cols.intern(&s.ts)
        };
        put_uvarint(&mut entries, s.r.wrapping_sub(prev) as u64);
        prev = s.r;
        put_uvarint(&mut entries, 1);
        entries.push(1);
        put_uvarint(&mut entries, col as u64);
        let (e, mut data) = values_bytes(&s.vals, l.enc);
        if l.split && e == 5 {
            let at = dvarint::packed_at(&data, s.vals.len() as u16).unwrap();
            c.stored += (data.len() - at) as u64;
            c.raw += (data.len() - at) as u64;
            data.truncate(at);
        }
        Chunk {
            min_t: 0,
            max_t: s.vals.len() as i64 - 1,
            count: s.vals.len() as u16,
            encoding: e,
            data: data.into_boxed_slice(),
        }
        .encode(&mut entries);
        if entries.len() >= super::store::PAGE_BYTES {
            flush(&mut cols, &mut entries, &mut frames, &mut c);
        }
    }
    flush(&mut cols, &mut entries, &mut frames, &mut c);
    if l.bucket_columns {
        let mut b = Vec::new();
        bucket_cols.write_and_clear(&mut b);
        c.cols_raw += b.len() as u64;
        let zb = z.compress(&b).unwrap().len() as u64;
        c.cols_stored += zb;
        c.stored += zb;
    }
    c.raw += c.cols_raw;
    c
}

#[test]
#[ignore]
fn study_page_layouts() {
    let Ok(dir) = std::env::var("CALM_STUDY_DIR") else {
        eprintln!("CALM_STUDY_DIR not set");
        return;
    };
    let nb: usize = std::env::var("CALM_STUDY_BUCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let skip: usize = std::env::var("CALM_STUDY_SKIP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = std::path::Path::new(&dir);
    let store = Store::open(&dir.join("sled"), &dir.join("pages"), 64 << 20).unwrap();
    let cat = store.catalog().unwrap();
    let refs: Vec<SeriesRef> = (0..200_000).collect();
    let buckets: Vec<(i64, Vec<u32>)> = cat.into_iter().skip(skip).take(nb).collect();
    let mut per_bucket: Vec<Vec<Series>> = Vec::new();
    let mut actual = 0u64;
    for (b, gens) in &buckets {
        let mut out: Vec<Series> = Vec::new();
        for g in gens {
            let p = dir.join("pages").join(format!("{b}-{g}.pages"));
            actual += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            store
                .read_pages(*b, *g, &refs, |r, views| {
                    let mut s = Series {
                        r,
                        ts: vec![],
                        vals: vec![],
                    };
                    for v in views {
                        for (t, x) in v.iter() {
                            s.ts.push(t);
                            s.vals.push(x);
                        }
                    }
                    if !s.ts.is_empty() {
                        out.push(s);
                    }
                })
                .unwrap();
        }
        per_bucket.push(out);
    }
    let samples: u64 = per_bucket.iter().flatten().map(|s| s.ts.len() as u64).sum();
    eprintln!(
        "{} buckets, {} series in the first, {samples} samples, page files {actual} bytes = {:.3} B/sample",
        per_bucket.len(),
        per_bucket.first().map_or(0, |b| b.len()),
        actual as f64 / samples as f64
    );
    // Day series: a day's buckets joined per ref.
    let mut day: HashMap<SeriesRef, Series> = HashMap::new();
    for b in &per_bucket {
        for s in b {
            let e = day.entry(s.r).or_insert(Series {
                r: s.r,
                ts: vec![],
                vals: vec![],
            });
            e.ts.extend_from_slice(&s.ts);
            e.vals.extend_from_slice(&s.vals);
        }
    }
    let mut day: Vec<Series> = day.into_values().collect();
    day.sort_by_key(|s| s.r);
    let base = Layout {
        enc: Enc::Bits,
        bucket_columns: false,
        by_host: false,
        frame: 8192,
        level: 9,
        split: false,
    };
    let v = |pct| Layout {
        enc: Enc::Varint(pct),
        bucket_columns: true,
        ..base
    };
    let p4 = |enc| Layout {
        enc,
        level: 19,
        ..v(80)
    };
    let variants: Vec<(&str, Layout, bool)> = vec![
        (
            "page4 before (varint at 80 %, raw vs XOR)",
            p4(Enc::Varint(80)),
            false,
        ),
        (
            "page4 today: entropy estimate, float bits",
            p4(Enc::Page4),
            false,
        ),
        (
            "page4, entropy estimate, decimals only",
            p4(Enc::Entropy {
                per_symbol: 0,
                packed_pct: None,
            }),
            false,
        ),
        (
            "page4, entropy, packed at length",
            p4(Enc::Entropy {
                per_symbol: 0,
                packed_pct: Some(100),
            }),
            false,
        ),
        (
            "page4, entropy, packed at 90 %",
            p4(Enc::Entropy {
                per_symbol: 0,
                packed_pct: Some(90),
            }),
            false,
        ),
        (
            "page4, entropy + 0.09 B/symbol",
            p4(Enc::Entropy {
                per_symbol: 9,
                packed_pct: None,
            }),
            false,
        ),
        (
            "page4, entropy + 0.25 B/symbol",
            p4(Enc::Entropy {
                per_symbol: 25,
                packed_pct: None,
            }),
            false,
        ),
        (
            "page4, entropy, zstd 22",
            Layout {
                level: 22,
                ..p4(Enc::Page4)
            },
            false,
        ),
        (
            "page4, entropy, whole pages",
            Layout {
                frame: 1 << 20,
                ..p4(Enc::Page4)
            },
            false,
        ),
        (
            "page4, entropy estimate + 1 B/symbol",
            p4(Enc::Entropy {
                per_symbol: 100,
                packed_pct: None,
            }),
            false,
        ),
        (
            "page4, entropy estimate + 4 B/symbol",
            p4(Enc::Entropy {
                per_symbol: 400,
                packed_pct: None,
            }),
            false,
        ),
        ("page4, zstd 3 alone", p4(Enc::Zstd(3)), false),
        ("page4, zstd 19 alone", p4(Enc::Zstd(19)), false),
        ("(a)+(b) varint or packed, varint at 100%", v(100), false),
        (
            "(a)+(b) 100%, packed bits outside zstd",
            Layout {
                split: true,
                ..v(100)
            },
            false,
        ),
        (
            "(a)+(b) 70%, packed bits outside zstd",
            Layout {
                split: true,
                ..v(70)
            },
            false,
        ),
        (
            "(a)+(b) 100%, packed bits outside zstd, zstd 19",
            Layout {
                split: true,
                level: 19,
                ..v(100)
            },
            false,
        ),
    ];
    let only: usize = std::env::var("CALM_STUDY_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let from: usize = std::env::var("CALM_STUDY_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (name, l, is_day) in variants.into_iter().take(only).skip(from) {
        let t = std::time::Instant::now();
        let mut c = Cost::default();
        if is_day {
            let all: Vec<&Series> = day.iter().collect();
            // The 16-bit sample count: split at 4096 like merge_for_file would not; a
            // day at 15 s is 5760 samples, under u16::MAX.
            c = cost(&all, l);
        } else {
            for b in &per_bucket {
                let all: Vec<&Series> = b.iter().collect();
                let x = cost(&all, l);
                c.stored += x.stored;
                c.raw += x.raw;
                c.cols_raw += x.cols_raw;
                c.cols_stored += x.cols_stored;
            }
        }
        let f = |x: u64| x as f64 / samples as f64;
        eprintln!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}s |",
            f(c.stored),
            f(c.raw),
            f(c.cols_stored),
            f(c.cols_raw),
            t.elapsed().as_secs_f64()
        );
    }
}

/// Reads every series of one bucket's generations as samples.
fn read_bucket(store: &Store, b: i64, gens: &[u32]) -> Vec<Series> {
    let refs: Vec<SeriesRef> = (0..2_000_000).collect();
    let mut out: Vec<Series> = Vec::new();
    for g in gens {
        store
            .read_pages(b, *g, &refs, |r, views| {
                let mut s = Series {
                    r,
                    ts: vec![],
                    vals: vec![],
                };
                for v in views {
                    for (t, x) in v.iter() {
                        s.ts.push(t);
                        s.vals.push(x);
                    }
                }
                if !s.ts.is_empty() {
                    out.push(s);
                }
            })
            .unwrap();
    }
    out.sort_by_key(|s| s.r);
    out
}

/// Rewrites every bucket of `CALM_STUDY_DIR` (a copy) as page4 into
/// `CALM_STUDY_OUT` and prints the bytes of both (float series only).
#[test]
#[ignore]
fn study_rewrite_as_page4() {
    let (Ok(dir), Ok(out)) = (
        std::env::var("CALM_STUDY_DIR"),
        std::env::var("CALM_STUDY_OUT"),
    ) else {
        eprintln!("CALM_STUDY_DIR / CALM_STUDY_OUT not set");
        return;
    };
    let (dir, out) = (std::path::Path::new(&dir), std::path::Path::new(&out));
    let store = Store::open(&dir.join("sled"), &dir.join("pages"), 64 << 20).unwrap();
    let new = Store::open(&out.join("sled"), &out.join("pages"), 64 << 20).unwrap();
    let (mut old_bytes, mut new_bytes, mut samples) = (0u64, 0u64, 0u64);
    let t = std::time::Instant::now();
    for (b, gens) in store.catalog().unwrap() {
        for g in &gens {
            let p = dir.join("pages").join(format!("{b}-{g}.pages"));
            old_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        let series = read_bucket(&store, b, &gens);
        let chunks: Vec<(SeriesRef, Vec<Chunk>)> = series
            .iter()
            .map(|s| {
                let samples: Vec<(i64, f64)> =
                    s.ts.iter().copied().zip(s.vals.iter().copied()).collect();
                (s.r, samples.chunks(4096).map(Chunk::from_samples).collect())
            })
            .collect();
        samples += series.iter().map(|s| s.ts.len() as u64).sum::<u64>();
        let w = new.write_pages(b, gens[0], &chunks).unwrap();
        let refs: Vec<SeriesRef> = chunks.iter().map(|c| c.0).collect();
        new.mark_complete(b, gens[0], &refs).unwrap();
        new_bytes += w.bytes;
        // Every sample reads back bit for bit.
        let back = read_bucket(&new, b, &gens[..1]);
        assert_eq!(back.len(), series.len());
        for (x, y) in back.iter().zip(&series) {
            assert_eq!((x.r, &x.ts), (y.r, &y.ts));
            let xb: Vec<u64> = x.vals.iter().map(|v| v.to_bits()).collect();
            let yb: Vec<u64> = y.vals.iter().map(|v| v.to_bits()).collect();
            assert_eq!(xb, yb);
        }
        eprintln!(
            "bucket {b}: {} series, page4 {} bytes ({:.3} B/sample so far, page3 {:.3}), {:.0}s",
            series.len(),
            w.bytes,
            new_bytes as f64 / samples as f64,
            old_bytes as f64 / samples as f64,
            t.elapsed().as_secs_f64()
        );
    }
    new.db.flush().unwrap();
    eprintln!(
        "all: {samples} samples; page3 {old_bytes} bytes = {:.3} B/sample; page4 {new_bytes} bytes = {:.3} B/sample ({:.1} %)",
        old_bytes as f64 / samples as f64,
        new_bytes as f64 / samples as f64,
        100.0 * new_bytes as f64 / old_bytes as f64
    );
}

/// Decode speed of the same values as bit-packed decimal values chunks (today's) and
/// decimal varint chunks (page4), ns per sample, on one bucket of `CALM_STUDY_DIR`.
/// Run it optimised (`CARGO_PROFILE_DEV_OPT_LEVEL=3`).
#[test]
#[ignore]
fn study_decode_speed() {
    use super::chunkenc::{ChunkView, ENC_DECIMAL_VALUES, ENC_DECIMAL_VARINT};
    let Ok(dir) = std::env::var("CALM_STUDY_DIR") else {
        eprintln!("CALM_STUDY_DIR not set");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let store = Store::open(&dir.join("sled"), &dir.join("pages"), 64 << 20).unwrap();
    let cat = store.catalog().unwrap();
    let (b, gens) = cat.iter().nth(40).unwrap();
    let series = read_bucket(&store, *b, gens);
    let mut bits: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut var: Vec<(u16, Vec<u8>)> = Vec::new();
    for s in &series {
        if let (Some(x), Some(y)) = (decimal::encode_values(&s.vals), dvarint::encode(&s.vals)) {
            bits.push((s.vals.len() as u16, x));
            var.push((s.vals.len() as u16, y));
        }
    }
    let n: usize = bits.iter().map(|c| c.0 as usize).sum();
    let run = |chunks: &[(u16, Vec<u8>)], enc: u8, ts: &[i64]| {
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(8192);
        let mut sum = 0.0f64;
        let t = std::time::Instant::now();
        for _ in 0..5 {
            for (count, data) in chunks {
                let v = ChunkView {
                    min_t: ts[0],
                    max_t: ts[*count as usize - 1],
                    count: *count,
                    encoding: enc,
                    data,
                    ts: Some(&ts[..*count as usize]),
                };
                out.clear();
                v.decode_into(&mut out, i64::MIN, i64::MAX);
                sum += out.last().map_or(0.0, |s| s.1);
            }
        }
        (t.elapsed().as_nanos() as f64 / (5 * n) as f64, sum)
    };
    let ts: Vec<i64> = (0..65536).map(|i| i * 15_000).collect();
    for round in 0..3 {
        let (a, sa) = run(&bits, ENC_DECIMAL_VALUES, &ts);
        let (b, sb) = run(&var, ENC_DECIMAL_VARINT, &ts);
        assert_eq!(sa.to_bits(), sb.to_bits());
        eprintln!("round {round}: {n} samples; decimal values (bits) {a:.2} ns/sample, decimal varint {b:.2} ns/sample");
    }
}
