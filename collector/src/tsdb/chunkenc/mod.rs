//! Chunk encodings: the compressed forms samples are kept in, one concept a file, as in
//! Prometheus' `tsdb/chunkenc/`.
//!
//! - `bstream`: the bit stream and the delta-of-delta code the encodings share;
//! - [`xor`]: XOR ("Gorilla") chunks, the head's open form of float samples;
//! - [`decimal`]: decimal chunks, the stored form when every value is a short decimal;
//! - this file: [`Chunk`], a closed chunk of any encoding, with its on-disk form and its
//!   iterators. Native-histogram chunks are encoded in `tsdb/histogram.rs`.
//!
//! Written by hand: the format is ours (DESIGN.md), and it is where bytes per sample
//! are won. The sample count is kept outside the byte stream.

pub(crate) mod bstream;
pub mod decimal;
pub mod dvarint;
pub mod xor;

pub use xor::{XorAppender, XorIter, MAX_SAMPLES};

/// A closed, immutable chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    /// How `data` is encoded: [`ENC_XOR`], [`ENC_XOR_FINAL`], [`ENC_DECIMAL`] or
    /// [`ENC_HISTOGRAM`].
    pub encoding: u8,
    pub data: Box<[u8]>,
}

/// Chunk encoding: XOR of float bits (what the head appends).
pub const ENC_XOR: u8 = 0;
/// Chunk encoding: decimal mantissas with delta-of-delta (see `decimal.rs`).
pub const ENC_DECIMAL: u8 = 1;
/// Chunk encoding: XOR, and [`Chunk::compact`] found nothing smaller (not tried again).
pub const ENC_XOR_FINAL: u8 = 2;
/// Chunk encoding: native histograms (see `histogram::encode_chunk`). Float reads
/// ([`Chunk::iter`]) see no samples in it; `histogram::decode_chunk` reads it.
pub const ENC_HISTOGRAM: u8 = 3;
/// Chunk encoding: decimal values without timestamps (`decimal::encode_values`); its
/// samples are at 0, 1, 2, … unless a timestamp column is given ([`ChunkView::ts`]).
/// Only in pages, as the values of a chunk split from its timestamps.
pub const ENC_DECIMAL_VALUES: u8 = 4;
/// Chunk encoding: decimal values as byte-aligned varints or bit-packed deltas, without
/// timestamps (`dvarint.rs`); like [`ENC_DECIMAL_VALUES`] at 0, 1, 2, … unless a
/// timestamp column is given. Only in pages (`page4`).
pub const ENC_DECIMAL_VARINT: u8 = 5;

impl Chunk {
    /// Iterates the chunk's samples.
    pub fn iter(&self) -> ChunkIter<'_> {
        self.as_view().iter()
    }

    /// The chunk read in place, as a page's chunks are.
    pub fn as_view(&self) -> ChunkView<'_> {
        ChunkView {
            min_t: self.min_t,
            max_t: self.max_t,
            count: self.count,
            encoding: self.encoding,
            data: &self.data,
            ts: None,
        }
    }

    /// The smallest stored form of this chunk: the decimal encoding when every value
    /// is a short decimal (counters and gauges of real exporters mostly are) and it
    /// comes out smaller, else the chunk as it is. Lossless either way.
    pub fn compact(&self) -> Chunk {
        if self.encoding != ENC_XOR {
            return self.clone();
        }
        let samples: Vec<(i64, f64)> = self.iter().collect();
        match decimal::encode(&samples) {
            Some(data) if data.len() < self.data.len() => Chunk {
                encoding: ENC_DECIMAL,
                data: data.into_boxed_slice(),
                ..self.clone()
            },
            _ => Chunk {
                encoding: ENC_XOR_FINAL,
                ..self.clone()
            },
        }
    }

    /// The chunks the head keeps for this one, read back from a checkpoint: cut again at
    /// [`MAX_SAMPLES`] like the chunks the head cuts itself, in this chunk's encoding.
    /// A checkpoint joins a bucket's chunks into one (`merge_for_file`, ~5% smaller
    /// files); kept joined, a restarted head decoded a whole bucket (480 samples at 15 s)
    /// to answer for its last minutes, and queries over the head's hours took up to
    /// 1.4× as long as before the restart (bench/RESULTS.md, query section, session 12).
    /// A histogram chunk, a chunk no longer than that and a malformed chunk (reads stop
    /// where it breaks) are kept as they are.
    pub fn for_head(self) -> Vec<Chunk> {
        if self.encoding == ENC_HISTOGRAM || self.count <= MAX_SAMPLES {
            return vec![self];
        }
        let ts: Vec<i64> = self.iter().map(|s| s.0).collect();
        head_chunks(&self, &ts).unwrap_or_else(|| vec![self])
    }

    /// Serialises the chunk.
    ///
    /// ```text
    /// u8(encoding) varint(min_t) uvarint(max_t − min_t) uvarint(count) uvarint(len) bytes
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        use crate::tsdb::labels::{put_uvarint, put_varint};
        out.push(self.encoding);
        put_varint(out, self.min_t);
        put_uvarint(out, self.max_t.wrapping_sub(self.min_t) as u64);
        put_uvarint(out, self.count as u64);
        put_uvarint(out, self.data.len() as u64);
        out.extend_from_slice(&self.data);
    }

    /// Reads what [`Chunk::encode`] wrote.
    pub fn decode(buf: &mut &[u8]) -> Option<Chunk> {
        let v = Chunk::view(buf)?;
        Some(Chunk {
            min_t: v.min_t,
            max_t: v.max_t,
            count: v.count,
            encoding: v.encoding,
            data: v.data.into(),
        })
    }

    /// Reads what [`Chunk::encode`] wrote, in place: the view borrows its bytes from
    /// `buf` (a query reads chunks straight from a page, without copying them).
    pub fn view<'a>(buf: &mut &'a [u8]) -> Option<ChunkView<'a>> {
        use crate::tsdb::labels::{get_bytes, get_uvarint, get_varint};
        let encoding = *get_bytes(buf, 1)?.first()?;
        if encoding > ENC_DECIMAL_VARINT {
            return None;
        }
        let min_t = get_varint(buf)?;
        let max_t = min_t.wrapping_add(get_uvarint(buf)? as i64);
        let count = u16::try_from(get_uvarint(buf)?).ok()?;
        let len = get_uvarint(buf)? as usize;
        let data = get_bytes(buf, len)?;
        Some(ChunkView {
            min_t,
            max_t,
            count,
            encoding,
            data,
            ts: None,
        })
    }

    /// Builds a chunk from samples sorted by time with unique timestamps.
    pub fn from_samples(samples: &[(i64, f64)]) -> Chunk {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        app.finish()
    }
}

/// The samples of `chunk` at the timestamps `ts` (its own, or a checkpoint's column for
/// a values-only chunk) as the head's chunks of at most [`MAX_SAMPLES`] each, in the
/// chunk's encoding (decimal stays decimal with its widths, `decimal::retime_split`);
/// `None` if the two do not fit together.
pub fn head_chunks(chunk: &Chunk, ts: &[i64]) -> Option<Vec<Chunk>> {
    if chunk.count as usize != ts.len() || ts.is_empty() {
        return None;
    }
    match chunk.encoding {
        ENC_DECIMAL => decimal::retime_split(&chunk.data, chunk.count, ts, MAX_SAMPLES as usize),
        ENC_XOR | ENC_XOR_FINAL => {
            let samples: Vec<(i64, f64)> = ts
                .iter()
                .zip(chunk.iter())
                .map(|(&t, s)| (t, s.1))
                .collect();
            if samples.len() != ts.len() {
                return None;
            }
            Some(
                samples
                    .chunks(MAX_SAMPLES as usize)
                    .map(|part| Chunk {
                        // XOR_FINAL: decimal did not pay when it was saved; not tried again.
                        encoding: chunk.encoding,
                        ..Chunk::from_samples(part)
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// A chunk as it lies in a page: the fields of [`Chunk`], its bytes borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkView<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    pub encoding: u8,
    pub data: &'a [u8],
    /// The chunk's timestamps, when they are kept apart as a column shared with other
    /// series (pages and checkpoints, see `ts_columns.rs`): `data` then holds the values
    /// at timestamps 0, 1, 2, …, and sample `i` is at `ts[i]`. `count == ts.len()`.
    pub ts: Option<&'a [i64]>,
}

impl<'a> ChunkView<'a> {
    /// The float samples (none for a histogram chunk).
    pub fn iter(&self) -> ChunkIter<'a> {
        match (self.encoding, self.ts) {
            (ENC_HISTOGRAM, _) => ChunkIter::Empty,
            (ENC_DECIMAL_VALUES, None) => {
                ChunkIter::Decimal(decimal::DecimalIter::new_values(self.data, self.count))
            }
            (ENC_DECIMAL_VARINT, None) => {
                ChunkIter::Dvarint(dvarint::DvarintIter::new(self.data, self.count))
            }
            (ENC_DECIMAL_VARINT, Some(ts)) => {
                ChunkIter::DvarintAt(dvarint::DvarintIter::new(self.data, self.count), ts)
            }
            (ENC_DECIMAL_VALUES, Some(ts)) => {
                ChunkIter::DecimalAt(decimal::DecimalIter::new_values(self.data, self.count), ts)
            }
            (ENC_DECIMAL, None) => {
                ChunkIter::Decimal(decimal::DecimalIter::new(self.data, self.count))
            }
            (_, None) => ChunkIter::Xor(XorIter::new(self.data, self.count)),
            (ENC_DECIMAL, Some(ts)) => {
                ChunkIter::DecimalAt(decimal::DecimalIter::new(self.data, self.count), ts)
            }
            (_, Some(ts)) => ChunkIter::XorAt(XorIter::new(self.data, self.count), ts),
        }
    }
}

/// The sample of a values-only chunk at index `i`, given its timestamp column; a
/// corrupt index (never written) ends the iteration there.
#[inline]
/// The samples of a decimal varint chunk (`data`, `count` values) at the timestamps
/// `ts`, those in `[mint, maxt]` unless `inside`, appended to `out`: what
/// `DvarintIter` with [`at_column`] gives, mantissas decoded a block at a time.
fn decode_dvarint_at(
    data: &[u8],
    count: u16,
    ts: &[i64],
    (inside, mint, maxt): (bool, i64, i64),
    out: &mut Vec<(i64, f64)>,
) {
    let it = dvarint::DvarintIter::new(data, count);
    // One loop for each way a mantissa becomes a value, no choice per value.
    if it.is_raw() {
        decode_dvarint_block(it, ts, (inside, mint, maxt), out, |m| {
            f64::from_bits(m as u64)
        })
    } else {
        let div = it.divisor();
        decode_dvarint_block(it, ts, (inside, mint, maxt), out, |m| m as f64 / div)
    }
}

#[inline(always)]
fn decode_dvarint_block(
    mut it: dvarint::DvarintIter<'_>,
    ts: &[i64],
    (inside, mint, maxt): (bool, i64, i64),
    out: &mut Vec<(i64, f64)>,
    value_of: impl Fn(i64) -> f64,
) {
    let mut block = [0i64; 256];
    let mut at = 0usize;
    loop {
        let n = it.fill_mantissas(&mut block);
        // Values past the end of the column have no time (a damaged page): none after.
        let have = n.min(ts.len().saturating_sub(at));
        if have == 0 {
            return;
        }
        let times = &ts[at..at + have];
        let pairs = times.iter().zip(&block[..have]);
        if inside {
            out.extend(pairs.map(|(&t, &m)| (t, value_of(m))));
        } else {
            out.extend(
                pairs
                    .filter(|(&t, _)| t >= mint && t <= maxt)
                    .map(|(&t, &m)| (t, value_of(m))),
            );
        }
        if have < block.len() {
            return;
        }
        at += have;
    }
}

fn at_column(ts: &[i64], (i, v): (i64, f64)) -> Option<(i64, f64)> {
    Some((*ts.get(usize::try_from(i).ok()?)?, v))
}

impl ChunkView<'_> {
    /// Appends the float samples in `[mint, maxt]` to `out` (none for a histogram
    /// chunk). One loop per encoding, and no time check for a chunk wholly inside the
    /// range: [`ChunkView::iter`] pays an encoding dispatch and a filter per sample.
    pub fn decode_into(&self, out: &mut Vec<(i64, f64)>, mint: i64, maxt: i64) {
        fn push(
            out: &mut Vec<(i64, f64)>,
            it: impl Iterator<Item = (i64, f64)>,
            inside: bool,
            mint: i64,
            maxt: i64,
        ) {
            if inside {
                out.extend(it);
            } else {
                out.extend(it.filter(|s| s.0 >= mint && s.0 <= maxt));
            }
        }
        if self.max_t < mint || self.min_t > maxt {
            return;
        }
        let inside = self.min_t >= mint && self.max_t <= maxt;
        out.reserve(self.count as usize);
        if let Some(ts) = self.ts {
            match self.encoding {
                ENC_DECIMAL_VARINT => {
                    decode_dvarint_at(self.data, self.count, ts, (inside, mint, maxt), out)
                }
                ENC_DECIMAL_VALUES => {
                    // Timestamps come from the column (increasing): the samples in
                    // range are one run of indices.
                    let ts = &ts[..ts.len().min(self.count as usize)];
                    let (lo, hi) = if inside {
                        (0, ts.len())
                    } else {
                        (
                            ts.partition_point(|&t| t < mint),
                            ts.partition_point(|&t| t <= maxt),
                        )
                    };
                    decimal::decode_values_at(self.data, ts, lo, hi, out);
                }
                ENC_DECIMAL => push(
                    out,
                    decimal::DecimalIter::new(self.data, self.count)
                        .map_while(|s| at_column(ts, s)),
                    inside,
                    mint,
                    maxt,
                ),
                ENC_HISTOGRAM => {}
                _ => push(
                    out,
                    XorIter::new(self.data, self.count).map_while(|s| at_column(ts, s)),
                    inside,
                    mint,
                    maxt,
                ),
            }
            return;
        }
        match self.encoding {
            ENC_DECIMAL => decimal::decode_into(self.data, self.count, (inside, mint, maxt), out),
            ENC_HISTOGRAM => {}
            ENC_DECIMAL_VARINT => push(
                out,
                dvarint::DvarintIter::new(self.data, self.count),
                inside,
                mint,
                maxt,
            ),
            ENC_DECIMAL_VALUES => push(
                out,
                decimal::DecimalIter::new_values(self.data, self.count),
                inside,
                mint,
                maxt,
            ),
            _ => push(out, XorIter::new(self.data, self.count), inside, mint, maxt),
        }
    }
}

impl ChunkView<'_> {
    /// True when the chunk is a decimal one ([`ENC_DECIMAL`], [`ENC_DECIMAL_VALUES`], and
    /// [`ENC_DECIMAL_VARINT`] unless it holds float bits, `dvarint::RAW_BITS`, which keep
    /// any value): its values are numbers, never a stale marker (see
    /// [`ChunkView::decode_times_into`]).
    pub fn holds_numbers_only(&self) -> bool {
        match self.encoding {
            ENC_DECIMAL | ENC_DECIMAL_VALUES => true,
            ENC_DECIMAL_VARINT => !dvarint::is_raw_bits(self.data),
            _ => false,
        }
    }

    /// [`ChunkView::decode_into`] for a reader that needs when the samples are, not
    /// their values (`count`, `group`): the samples in `[mint, maxt]`, each value
    /// [`NO_VALUE`] where it is certainly not a stale marker, else the stored value.
    ///
    /// A decimal chunk ([`ChunkView::holds_numbers_only`]) holds no stale marker: its
    /// encoders take only finite values
    /// (`decimal::mantissas` refuses any other, the marker being a NaN), and its decoders
    /// give `m / 10^k`, finite for every mantissa they can read. So when its timestamps
    /// are a column apart (pages), its values are not decoded at all. Every other chunk
    /// (XOR, which keeps any bits, and chunks with timestamps inside) is decoded whole.
    /// A damaged decimal chunk whose values end early still gives all its timestamps.
    pub fn decode_times_into(&self, out: &mut Vec<(i64, f64)>, mint: i64, maxt: i64) {
        let Some(ts) = self.ts else {
            return self.decode_into(out, mint, maxt);
        };
        if !self.holds_numbers_only() {
            return self.decode_into(out, mint, maxt);
        }
        if self.max_t < mint || self.min_t > maxt {
            return;
        }
        // As `decode_into` reads them: sample `i` at `ts[i]` for `i < count`.
        let ts = &ts[..ts.len().min(self.count as usize)];
        let lo = ts.partition_point(|&t| t < mint);
        let hi = ts.partition_point(|&t| t <= maxt);
        out.extend(ts[lo..hi.max(lo)].iter().map(|&t| (t, NO_VALUE)));
    }
}

/// The value [`ChunkView::decode_times_into`] gives a sample whose value it did not
/// decode: a number, never a stale marker.
pub const NO_VALUE: f64 = 0.0;

/// Iterator over a chunk of either encoding.
pub enum ChunkIter<'a> {
    Xor(XorIter<'a>),
    Decimal(decimal::DecimalIter<'a>),
    /// A values-only XOR chunk and its timestamp column.
    XorAt(XorIter<'a>, &'a [i64]),
    /// A values-only decimal chunk and its timestamp column.
    DecimalAt(decimal::DecimalIter<'a>, &'a [i64]),
    /// A decimal varint values chunk (`dvarint.rs`) at 0, 1, 2, …
    Dvarint(dvarint::DvarintIter<'a>),
    /// A decimal varint values chunk and its timestamp column.
    DvarintAt(dvarint::DvarintIter<'a>, &'a [i64]),
    /// A histogram chunk holds no float samples.
    Empty,
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        match self {
            ChunkIter::Xor(x) => x.next(),
            ChunkIter::Decimal(d) => d.next(),
            ChunkIter::XorAt(x, ts) => at_column(ts, x.next()?),
            ChunkIter::DecimalAt(d, ts) => at_column(ts, d.next()?),
            ChunkIter::Dvarint(d) => d.next(),
            ChunkIter::DvarintAt(d, ts) => at_column(ts, d.next()?),
            ChunkIter::Empty => None,
        }
    }
}

/// A xorshift64 generator for tests: the same numbers on every run, no dependency.
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
impl TestRng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n
    }
}

#[cfg(test)]
mod tests {
    use super::bstream::BitWriter;
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) {
        let c = Chunk::from_samples(samples);
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
    }

    proptest! {
        /// Page chunks (decimal varint values at a timestamp column) decode into the
        /// samples their iterator gives, those of a range alone when asked.
        #[test]
        fn varint_chunks_at_a_column_decode_as_they_iterate(
            steps in proptest::collection::vec(0i64..5000, 1..700),
            cut in 0usize..3,
            lo in 0usize..800,
            len in 0usize..800,
        ) {
            let mut m = 0i64;
            let values: Vec<f64> = steps.iter().map(|d| { m += d; m as f64 / 100.0 }).collect();
            let data = dvarint::encode(&values).expect("short decimals");
            let ts: Vec<i64> = (0..values.len() as i64).map(|i| 1_000 + i * 15_000).collect();
            // A column shorter than the values: a damaged page, read up to its end.
            let ts = &ts[..ts.len() - cut.min(ts.len() - 1)];
            let view = ChunkView {
                min_t: ts[0],
                max_t: ts[ts.len() - 1],
                count: values.len() as u16,
                encoding: ENC_DECIMAL_VARINT,
                data: &data,
                ts: Some(ts),
            };
            let (mint, maxt) = (1_000 + lo as i64 * 15_000, 1_000 + (lo + len) as i64 * 15_000);
            for (mint, maxt) in [(i64::MIN, i64::MAX), (mint, maxt)] {
                let want: Vec<(i64, u64)> = view
                    .iter()
                    .filter(|s| s.0 >= mint && s.0 <= maxt)
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect();
                let mut out = Vec::new();
                view.decode_into(&mut out, mint, maxt);
                let got: Vec<(i64, u64)> = out.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn regular_counter() {
        let s: Vec<_> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, i as f64 * 3.5))
            .collect();
        round_trip(&s);
        // Regular timestamps and a steady counter compress well below 16 bytes/sample.
        let c = Chunk::from_samples(&s);
        assert!(c.data.len() < 120 * 4, "{} bytes", c.data.len());
    }

    #[test]
    fn special_values_keep_their_bits() {
        round_trip(&[
            (1, f64::NAN),
            (2, crate::tsdb::stale_nan()),
            (3, f64::INFINITY),
            (4, f64::NEG_INFINITY),
            (5, -0.0),
            (6, f64::MIN_POSITIVE),
            (7, f64::MAX),
        ]);
    }

    #[test]
    fn irregular_timestamps() {
        round_trip(&[
            (i64::MIN / 4, 1.0),
            (-5, 2.0),
            (0, 3.0),
            (10_000_000_000, 4.0),
            (10_000_000_001, 5.0),
            (10_000_524_289, 5.0),
        ]);
    }

    #[test]
    fn appender_state_round_trips_and_keeps_appending() {
        let mut a = XorAppender::new();
        for i in 0..50 {
            a.append(i * 1000, (i * i) as f64);
        }
        let mut buf = vec![];
        a.encode_state(&mut buf);
        let mut b = XorAppender::decode_state(&mut &buf[..]).unwrap();
        a.append(50_000, 1.25);
        b.append(50_000, 1.25);
        assert_eq!(a.bytes(), b.bytes());
        let c = b.finish();
        let mut enc = vec![];
        c.encode(&mut enc);
        assert_eq!(Chunk::decode(&mut &enc[..]).unwrap(), c);
    }

    proptest! {
        /// The word-buffered writer lays out bits exactly as a bit-by-bit reference
        /// does, and a writer resumed from its bytes goes on identically.
        #[test]
        fn bit_writer_matches_a_bit_by_bit_reference(
            writes in proptest::collection::vec((any::<u64>(), 0u8..=64), 0..200),
            cut in 0usize..200,
        ) {
            let mut w = BitWriter::default();
            let mut reference: Vec<bool> = Vec::new();
            let mut resumed: Option<BitWriter> = None;
            for (i, &(v, n)) in writes.iter().enumerate() {
                if i == cut {
                    let free = (8 - reference.len() % 8) % 8;
                    resumed = Some(BitWriter::resume(&w.to_bytes(), free as u8).unwrap());
                }
                w.write_bits(v, n);
                if let Some(r) = resumed.as_mut() {
                    r.write_bits(v, n);
                }
                for k in (0..n).rev() {
                    reference.push((v >> k) & 1 == 1);
                }
            }
            let mut want = vec![0u8; reference.len().div_ceil(8)];
            for (i, b) in reference.iter().enumerate() {
                if *b {
                    want[i / 8] |= 0x80 >> (i % 8);
                }
            }
            prop_assert_eq!(w.byte_len(), want.len());
            prop_assert_eq!(&w.to_bytes(), &want);
            if let Some(r) = resumed {
                prop_assert_eq!(&r.into_bytes(), &want);
            }
        }
    }

    proptest! {
        #[test]
        fn any_increasing_series_round_trips(
            start in -1_000_000_000_000i64..1_000_000_000_000,
            deltas in proptest::collection::vec(1i64..10_000_000_000, 0..119),
            values in proptest::collection::vec(any::<u64>(), 120),
        ) {
            let mut t = start;
            let mut s = vec![(t, f64::from_bits(values[0]))];
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                s.push((t, f64::from_bits(values[i + 1])));
            }
            round_trip(&s);
        }
    }
}
