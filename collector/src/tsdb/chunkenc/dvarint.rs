//! Decimal varint values chunks: the values of a chunk whose values are short decimals,
//! without timestamps, as byte-aligned varints that the page's zstd can entropy-code.
//!
//! The decimal values chunk (`decimal.rs`, [`super::ENC_DECIMAL_VALUES`]) packs the
//! mantissa deltas in bit buckets of fixed widths: a counter growing by 10.00 ± 4.00 a
//! scrape spends '110' + 12 bits on a delta of ~9.6 bits of entropy, and zstd finds
//! nothing in a bit stream that is not byte-aligned (it gained 11 % on such pages).
//! VictoriaMetrics stores its deltas as byte-aligned varints and lets zstd's entropy
//! coder find their distribution; so does this encoding ([`super::ENC_DECIMAL_VARINT`]).
//! Measured on the 7-day bench's pages (`bench/RESULTS.md`, "Bytes at rest"): pages
//! after zstd shrink by about a fifth against the bit-packed chunks.
//!
//! ```text
//! u8     k | order << 5         k: decimals shared by the chunk (0..=22);
//!                               order 0: values, 1: Δ, 2: Δ² of the mantissas
//! varint m0                     zigzag LEB128, as everywhere in pages
//! order 0: varint m_i           for i ≥ 1
//! order 1: varint m_i − m_{i−1}
//! order 2: varint m1 − m0, then varint Δ_i − Δ_{i−1} for i ≥ 2
//! value = m / 10^k, correctly rounded (exact for |m| < 2^53, k ≤ 22)
//!         or, k = 31 (RAW_BITS): the float whose bits are m
//! ```
//! A chunk is only stored with decimals when every value decodes back to the very same
//! bits (`decimal::mantissas` checks it); its order is the one that takes the fewest
//! bytes after zstd ([`entropy_cost`]).
//!
//! Values that are not short decimals take the same orders over their bits
//! ([`RAW_BITS`]): the integers of a float's bits follow its value within a binade, so
//! a clock like `node_time_seconds` (ts/1000 plus noise) has Δ² of a few thousand where
//! its XOR keeps some 26 bits a sample. Any bits are kept (NaN, stale markers, −0.0).
//! Samples are at 0, 1, 2, … unless a timestamp column is given (as
//! [`super::ENC_DECIMAL_VALUES`]).

use super::bstream::{BitReader, BitWriter};
use crate::tsdb::labels::{put_uvarint, put_varint};

/// Flag of the header byte: the values after the lead are bit-packed.
const PACKED: u8 = 0x80;

/// The `k` of a chunk whose mantissas are the bits of its floats.
pub const RAW_BITS: u8 = 31;

/// True when the chunk `bytes` holds raw float bits ([`RAW_BITS`]): any value, stale
/// markers included (decimal chunks hold finite numbers only).
pub fn is_raw_bits(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|h| h & 0x1f == RAW_BITS)
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Encodes `values` as a decimal varint values chunk, or `None` when a value is not a
/// short decimal that decodes back to the same bits.
pub fn encode(values: &[f64]) -> Option<Vec<u8>> {
    let (ms, k) = super::decimal::mantissas(values)?;
    Some(encode_mantissas(&ms, k))
}

/// `values` as the chunk of least [`entropy_cost`] (what the page's zstd is expected to
/// make of it, to weigh it against the same series as an XOR chunk: `page4.rs`), of
/// their decimal mantissas if they are short decimals, else of their bits; with its
/// cost. (Trying the bits of short decimals too doubled the forms weighed for every
/// series and chose them nowhere on the study's eight buckets: 0.793 bytes a sample
/// either way.)
pub fn encode_scored(values: &[f64]) -> (usize, Vec<u8>) {
    match super::decimal::mantissas(values) {
        Some((ms, k)) => encode_mantissas_by(&ms, k, |b, _| entropy_cost(b)),
        None => {
            let bits: Vec<i64> = values.iter().map(|v| v.to_bits() as i64).collect();
            encode_mantissas_by(&bits, RAW_BITS, |b, _| entropy_cost(b))
        }
    }
}

/// Encodes mantissas `ms` at `k` decimals (k ≤ 22) in the order and form expected to
/// take the fewest bytes after the page's zstd ([`entropy_cost`]).
pub fn encode_mantissas(ms: &[i64], k: u8) -> Vec<u8> {
    encode_mantissas_by(ms, k, |b, _| entropy_cost(b)).1
}

/// [`encode_mantissas`] with varint bytes counted at `pct` % (for the study).
pub fn encode_mantissas_as(ms: &[i64], k: u8, pct: usize) -> Vec<u8> {
    encode_mantissas_by(
        ms,
        k,
        |b, packed| {
            if packed {
                b.len() * 100
            } else {
                b.len() * pct
            }
        },
    )
    .1
}

/// Encodes mantissas `ms` at `k` decimals in the order and form of least `cost`
/// (given the bytes and whether they are packed); returns that cost and the bytes.
pub fn encode_mantissas_by(
    ms: &[i64],
    k: u8,
    mut cost: impl FnMut(&[u8], bool) -> usize,
) -> (usize, Vec<u8>) {
    let mut best: Option<(usize, Vec<u8>)> = None;
    for order in 0..3u8 {
        for packed in [false, true] {
            let b = write(ms, k, order, packed);
            let c = cost(&b, packed);
            if best.as_ref().is_none_or(|x| c < x.0) {
                best = Some((c, b));
            }
        }
    }
    best.unwrap_or_default()
}

/// About the bytes an entropy coder fitted to `bytes` alone would write for them
/// (order-0 Shannon bound of their byte histogram), in hundredths of a byte.
///
/// How chunks are chosen for a page: its zstd codes each byte by how often it occurs,
/// so a form whose bytes are few and repeated (varints of a counter's small steps,
/// the zeros of a gauge that seldom moves) costs far less than its length, and packed
/// or XOR bits, whose bytes are all different, about their length. Chosen by raw
/// length (XOR against the decimal forms) and a fixed 80 % for varint bytes, the
/// pages of the 7-day bench took 0.831 bytes a sample; chosen by this, 0.806 (3.0 %
/// less; `study.rs`, eight buckets). A table's cost per distinct byte made it worse,
/// and zstd 3 or 19 run on each candidate alone chose no better (0.832, 0.836).
pub fn entropy_cost(bytes: &[u8]) -> usize {
    let mut hist = [0u32; 256];
    for &b in bytes {
        hist[b as usize] += 1;
    }
    // Σ c·log₂(n/c) = n·log₂n − Σ c·log₂c, the c·log₂c of small counts from a table: a
    // persist weighs a dozen forms of every series.
    let bits = c_log2_c(bytes.len() as u32)
        - hist
            .iter()
            .filter(|&&c| c > 1)
            .map(|&c| c_log2_c(c))
            .sum::<f64>();
    (bits.max(0.0) * 100.0 / 8.0) as usize
}

/// `c·log₂c`, from a table for the counts of a chunk's bytes (a chunk holds at most
/// 4,096 values of at most 10 bytes, mostly far fewer).
fn c_log2_c(c: u32) -> f64 {
    const TABLE_LEN: usize = 4096;
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..TABLE_LEN)
            .map(|c| {
                if c < 2 {
                    0.0
                } else {
                    c as f64 * (c as f64).log2()
                }
            })
            .collect()
    });
    match t.get(c as usize) {
        Some(&v) => v,
        None => c as f64 * (c as f64).log2(),
    }
}

/// The values `write` stores for `ms` in `order`: the mantissas, their Δ or their Δ²
/// (the first of which is Δ1).
fn series(ms: &[i64], order: u8) -> impl Iterator<Item = i64> + '_ {
    let (mut pm, mut pd) = (0i64, 0i64);
    ms.iter().enumerate().map(move |(i, &m)| {
        let d = m.wrapping_sub(pm);
        let x = match (i, order) {
            (0, _) | (_, 0) => m,
            (_, 1) | (1, _) => d,
            _ => d.wrapping_sub(pd),
        };
        if i > 0 {
            pd = d;
        }
        pm = m;
        x
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn write(ms: &[i64], k: u8, order: u8, packed: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ms.len() * 2 + 2);
    out.push(k | (order << 5) | if packed { PACKED } else { 0 });
    let lead = (order as usize).min(ms.len());
    let xs: Vec<i64> = series(ms, order).collect();
    for &x in &xs[..lead] {
        put_varint(&mut out, x);
    }
    let rest = &xs[lead..];
    // Memory and filesystem bytes move by whole pages: their deltas share a factor.
    let g = rest
        .iter()
        .fold(0u64, |g, &x| gcd(g, x.unsigned_abs()))
        .max(1);
    put_uvarint(&mut out, g);
    let g = g as i64;
    if !packed {
        for &x in rest {
            put_varint(&mut out, x / g);
        }
        return out;
    }
    let base = rest.iter().map(|&x| x / g).min().unwrap_or(0);
    let span = rest
        .iter()
        .map(|&x| (x / g).wrapping_sub(base) as u64)
        .max()
        .unwrap_or(0);
    let width = (64 - span.leading_zeros()) as u8;
    put_varint(&mut out, base);
    out.push(width);
    let mut w = BitWriter::default();
    for &x in rest {
        w.write_bits((x / g).wrapping_sub(base) as u64, width);
    }
    out.extend_from_slice(&w.into_bytes());
    out
}

/// Iterates a decimal varint values chunk as `(i, value)`; stops early on a corrupt
/// stream.
pub struct DvarintIter<'a> {
    /// The varints still to read (the whole stream unless packed).
    buf: &'a [u8],
    /// The packed values after the lead (packed chunks only).
    bits: BitReader<'a>,
    packed: bool,
    /// Packed chunks: the lead values (read by `new`), their number, base and width.
    pre: [i64; 2],
    lead: u16,
    /// The factor every value after the lead was divided by.
    g: i64,
    base: i64,
    width: u8,
    left: u16,
    i: u16,
    div: f64,
    /// The mantissas are float bits ([`RAW_BITS`]).
    raw: bool,
    order: u8,
    m: i64,
    d: i64,
}

impl<'a> DvarintIter<'a> {
    /// An iterator over the `count` values of `bytes`, at 0, 1, 2, …
    pub fn new(bytes: &'a [u8], count: u16) -> DvarintIter<'a> {
        let (head, buf) = bytes
            .split_first()
            .map_or((0xff, &[][..]), |(h, b)| (*h, b));
        let (k, order, packed) = (head & 0x1f, (head >> 5) & 3, head & PACKED != 0);
        let mut it = DvarintIter {
            buf,
            bits: BitReader::new(&[]),
            packed,
            pre: [0; 2],
            lead: 0,
            g: 1,
            base: 0,
            width: 0,
            left: count,
            i: 0,
            div: POW10[(k as usize).min(22)],
            raw: k == RAW_BITS,
            order,
            m: 0,
            d: 0,
        };
        if (k > 22 && k != RAW_BITS) || order > 2 || it.read_lead(count).is_none() {
            it.left = 0;
        }
        it
    }

    /// True when the values are the bits of the mantissas ([`RAW_BITS`]).
    #[inline]
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// `10^k`: a decimal chunk's value is its mantissa divided by this (as
    /// [`Self::value_of`] gives it when not [`Self::is_raw`]).
    #[inline]
    pub fn divisor(&self) -> f64 {
        self.div
    }

    /// Reads the lead values, the factor and (packed) the base and width.
    fn read_lead(&mut self, count: u16) -> Option<()> {
        self.lead = (self.order as u16).min(count);
        for i in 0..self.lead as usize {
            self.pre[i] = crate::tsdb::labels::get_varint(&mut self.buf)?;
        }
        self.g = i64::try_from(crate::tsdb::labels::get_uvarint(&mut self.buf)?).ok()?;
        if !self.packed {
            return Some(());
        }
        self.base = crate::tsdb::labels::get_varint(&mut self.buf)?;
        let (&width, rest) = self.buf.split_first()?;
        if width > 64 {
            return None;
        }
        self.width = width;
        self.bits = BitReader::new(rest);
        self.buf = &[];
        Some(())
    }

    #[inline]
    fn varint(&mut self) -> Option<i64> {
        // Fast path: one byte (most deltas of slow series, every unchanged value).
        let (&b, rest) = self.buf.split_first()?;
        if b < 0x80 {
            self.buf = rest;
            let u = b as u64;
            return Some(((u >> 1) as i64) ^ -((u & 1) as i64));
        }
        crate::tsdb::labels::get_varint(&mut self.buf)
    }

    #[inline]
    fn next_x(&mut self) -> Option<i64> {
        if self.i < self.lead {
            return Some(self.pre[self.i as usize]);
        }
        let x = if self.packed {
            (self.bits.read_bits(self.width)? as i64).wrapping_add(self.base)
        } else {
            self.varint()?
        };
        Some(x.wrapping_mul(self.g))
    }

    #[inline]
    fn next_inner(&mut self) -> Option<(i64, f64)> {
        let x = self.next_x()?;
        match (self.i, self.order) {
            (0, _) | (_, 0) => self.m = x,
            (_, 1) | (1, _) => {
                self.d = x;
                self.m = self.m.wrapping_add(x);
            }
            _ => {
                self.d = self.d.wrapping_add(x);
                self.m = self.m.wrapping_add(self.d);
            }
        }
        let i = self.i as i64;
        self.i += 1;
        Some((i, self.m_to_f64(self.m)))
    }
}

impl DvarintIter<'_> {
    /// The value of a mantissa: `m / 10^k`, as [`Iterator::next`] gives it.
    #[inline]
    pub fn value_of(&self, m: i64) -> f64 {
        self.m_to_f64(m)
    }

    #[inline]
    fn m_to_f64(&self, m: i64) -> f64 {
        if self.raw {
            return f64::from_bits(m as u64);
        }
        // As decimal.rs: an exact division for |m| < 2^53 (k = 0 divides by 1).
        m as f64 / self.div
    }

    /// The next mantissas, as many as fit in `out` (fewer at the end, or where the
    /// chunk is damaged: then none after), without their values: [`Self::value_of`]
    /// makes them the numbers [`Iterator::next`] gives, in the same order.
    ///
    /// Decoding a page is most of a long query; a loop per form (varint or packed,
    /// values, Δ or Δ²) here runs without the per-value dispatch of `next`.
    pub fn fill_mantissas(&mut self, out: &mut [i64]) -> usize {
        let want = out.len().min(self.left as usize);
        let mut j = 0;
        // The lead values and the first delta take the general path.
        while j < want && (self.i < 2 || self.i < self.lead) {
            if self.next_inner().is_none() {
                self.left = 0;
                return j;
            }
            self.left -= 1;
            out[j] = self.m;
            j += 1;
        }
        let rest = &mut out[j..want];
        let done = match (self.packed, self.order) {
            (true, 0) => self.fill_with::<0>(rest, |it| it.packed_x()),
            (true, 1) => self.fill_with::<1>(rest, |it| it.packed_x()),
            (true, _) => self.fill_with::<2>(rest, |it| it.packed_x()),
            (false, 0) => self.fill_with::<0>(rest, |it| it.varint_x()),
            (false, 1) => self.fill_with::<1>(rest, |it| it.varint_x()),
            (false, _) => self.fill_with::<2>(rest, |it| it.varint_x()),
        };
        self.i = self.i.wrapping_add(done as u16);
        if done < rest.len() {
            self.left = 0;
        } else {
            self.left -= done as u16;
        }
        j + done
    }

    #[inline(always)]
    fn packed_x(&mut self) -> Option<i64> {
        Some(
            (self.bits.read_bits(self.width)? as i64)
                .wrapping_add(self.base)
                .wrapping_mul(self.g),
        )
    }

    #[inline(always)]
    fn varint_x(&mut self) -> Option<i64> {
        Some(self.varint()?.wrapping_mul(self.g))
    }

    /// Fills `out` with the mantissas of values after the first two of order `ORDER`,
    /// each from `x` (the next stored number); returns how many (fewer when damaged).
    #[inline(always)]
    fn fill_with<const ORDER: u8>(
        &mut self,
        out: &mut [i64],
        mut x: impl FnMut(&mut Self) -> Option<i64>,
    ) -> usize {
        let (mut m, mut d) = (self.m, self.d);
        let mut n = 0;
        for slot in out.iter_mut() {
            let Some(v) = x(self) else {
                break;
            };
            match ORDER {
                0 => m = v,
                1 => m = m.wrapping_add(v),
                _ => {
                    d = d.wrapping_add(v);
                    m = m.wrapping_add(d);
                }
            }
            *slot = m;
            n += 1;
        }
        (self.m, self.d) = (m, d);
        n
    }
}

/// Where the bit-packed values of a packed chunk start in `bytes` (`bytes.len()` for
/// a varint chunk); `None` when damaged.
pub fn packed_at(bytes: &[u8], count: u16) -> Option<usize> {
    let it = DvarintIter::new(bytes, count);
    if it.left == 0 && count > 0 {
        return None;
    }
    if !it.packed {
        return Some(bytes.len());
    }
    Some(bytes.len() - it.bits.rest_len())
}

impl Iterator for DvarintIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.next_inner();
        if s.is_none() {
            self.left = 0;
        }
        s
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[f64]) -> Option<usize> {
        let bytes = encode(values)?;
        let got: Vec<(i64, u64)> = DvarintIter::new(&bytes, values.len() as u16)
            .map(|(i, v)| (i, v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.to_bits()))
            .collect();
        assert_eq!(got, want);
        Some(bytes.len())
    }

    #[test]
    fn each_order_round_trips_and_the_smallest_is_kept() {
        let steady: Vec<f64> = (0..480).map(|i| 5e6 + i as f64 * 4096.0).collect();
        let jumpy: Vec<f64> = (0..480).map(|i| ((i * 7919) % 13) as f64).collect();
        let mut v = 1000.0f64;
        let counter: Vec<f64> = (0..480)
            .map(|i| {
                v = ((v + 10.0 + ((i * 31) % 9) as f64 * 0.37) * 100.0).round() / 100.0;
                v
            })
            .collect();
        // Δ of a steady counter is constant: packed in no bits at all (header, m0,
        // factor 4096, base 1, width 0).
        assert_eq!(round_trip(&steady), Some(1 + 4 + 2 + 1 + 1));
        // Steps of whole pages are stored in pages.
        let pages: Vec<f64> = (0..480)
            .map(|i| 4096.0 * (1000 + (i * 7919) % 2000) as f64)
            .collect();
        let bytes = encode(&pages).unwrap();
        assert!(bytes.len() < 480 * 11 / 8 + 16, "{} bytes", bytes.len());
        round_trip(&pages).unwrap();
        round_trip(&jumpy).unwrap();
        round_trip(&counter).unwrap();
        for (order, packed) in (0..3).flat_map(|o| [(o, false), (o, true)]) {
            let (ms, k) = crate::tsdb::chunkenc::decimal::mantissas(&counter).unwrap();
            let b = write(&ms, k, order, packed);
            let got: Vec<u64> = DvarintIter::new(&b, ms.len() as u16)
                .map(|s| s.1.to_bits())
                .collect();
            let want: Vec<u64> = counter.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "order {order} packed {packed}");
        }
        assert_eq!(round_trip(&[]), Some(2));
        assert!(encode(&[f64::NAN]).is_none());
        assert!(encode(&[-0.0]).is_none());
    }

    /// The form chosen is the one zstd makes smallest, whatever the lengths before it
    /// (a gauge that seldom moves: a byte a value as varints, a fraction of one after).
    #[test]
    fn forms_are_weighed_by_what_zstd_makes_of_them() {
        let mut rng = crate::tsdb::chunkenc::TestRng(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| rng.below(n);
        let mut m = 520_229i64;
        let small_steps: Vec<f64> = (0..480)
            .map(|_| {
                m += 3 + next(10) as i64;
                m as f64 / 100.0
            })
            .collect();
        let mut g = 9_000_000i64;
        let seldom: Vec<f64> = (0..480)
            .map(|_| {
                if next(10) < 2 {
                    g += (next(9) as i64 - 4) * 4096;
                }
                g as f64
            })
            .collect();
        let mut c = 1_000_000_000i64;
        let wide: Vec<f64> = (0..480)
            .map(|_| {
                c += 500_000 + next(1_000_000) as i64;
                c as f64
            })
            .collect();
        let z = |b: &[u8]| zstd::bulk::compress(b, 19).unwrap().len();
        for (name, values) in [
            ("small steps", &small_steps),
            ("seldom", &seldom),
            ("wide", &wide),
        ] {
            let chosen = encode(values).unwrap();
            let (ms, k) = crate::tsdb::chunkenc::decimal::mantissas(values).unwrap();
            let sizes: Vec<usize> = (0..3)
                .flat_map(|o| [false, true].map(|p| z(&write(&ms, k, o, p))))
                .collect();
            let best = sizes.iter().min().copied().unwrap();
            assert!(
                z(&chosen) <= best * 21 / 20,
                "{name}: chose {} after zstd of {sizes:?}",
                z(&chosen)
            );
            round_trip(values).unwrap();
        }
    }

    #[test]
    fn entropy_cost_is_the_shannon_bound_of_the_bytes() {
        assert_eq!(entropy_cost(&[]), 0);
        assert_eq!(entropy_cost(&[7; 1000]), 0);
        // Two values half and half: a bit a byte, 1/8 of a byte each.
        assert_eq!(entropy_cost(&[1, 2].repeat(400)), 100 * 800 / 8);
        // 256 values once each: 8 bits a byte; past the table (5,000 bytes) as well.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(entropy_cost(&all), 100 * 256);
        let long: Vec<u8> = (0..5000u32).map(|i| (i % 2) as u8).collect();
        assert_eq!(entropy_cost(&long), 100 * 5000 / 8);
    }

    #[test]
    fn a_damaged_stream_ends_the_iteration() {
        let bytes = encode(&[1.5, 2.5, 3.75, 1e9, -7.0]).unwrap();
        for cut in 0..bytes.len() {
            assert!(DvarintIter::new(&bytes[..cut], 5).count() < 5);
        }
        // An unknown order or too many decimals: no samples.
        assert_eq!(DvarintIter::new(&[0x60, 2], 1).count(), 0);
        assert_eq!(DvarintIter::new(&[23, 2], 1).count(), 0);
        assert_eq!(DvarintIter::new(&[0xff; 12], 3).count(), 0);
    }

    /// Values of `shape` 0 (as drawn), 1 (their running sum: a counter) or 2 (the
    /// running sum of that: Δ² chunks), at `scale` decimals.
    fn shaped(ints: &[i64], shape: u8, scale: u32) -> Vec<f64> {
        let (mut d, mut m) = (0i64, 0i64);
        ints.iter()
            .map(|&x| {
                let v = match shape {
                    0 => x,
                    1 => {
                        m += x;
                        m
                    }
                    _ => {
                        d += x;
                        m += d;
                        m
                    }
                };
                v as f64 / 10f64.powi(scale as i32)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn blocks_of_mantissas_give_what_next_gives(
            ints in proptest::collection::vec(-(1i64 << 20)..(1i64 << 20), 1..700),
            shape in 0u8..3,
            scale in 0u32..4,
            block in 1usize..300,
            cut in 0usize..40,
        ) {
            let v = shaped(&ints, shape, scale);
            if let Some(mut bytes) = encode(&v) {
                // Some runs read a damaged (cut) chunk: both ways stop at the damage.
                if cut % 3 == 0 {
                    bytes.truncate(bytes.len().saturating_sub(cut));
                }
                let n = v.len() as u16;
                let want: Vec<u64> = DvarintIter::new(&bytes, n).map(|s| s.1.to_bits()).collect();
                let mut it = DvarintIter::new(&bytes, n);
                let mut buf = vec![0i64; block];
                let mut got = Vec::new();
                loop {
                    let k = it.fill_mantissas(&mut buf);
                    if k == 0 {
                        break;
                    }
                    got.extend(buf[..k].iter().map(|&m| it.value_of(m).to_bits()));
                }
                prop_assert_eq!(got, want);
            }
        }

        /// Any floats, stale markers and NaNs among them, come back bit for bit from
        /// the chunk `encode_scored` chooses, through the iterator, the block decoder
        /// at a column and the times-only decoder (which must not skip a marker).
        #[test]
        fn any_bits_round_trip(
            steps in proptest::collection::vec(0u64..(1 << 40), 1..600),
            specials in proptest::collection::vec((0usize..600, 0u8..5), 0..6),
            base in 1.0e3f64..2.0e9,
        ) {
            use crate::tsdb::chunkenc::{ChunkView, ENC_DECIMAL_VARINT};
            // A clock: base plus its steps in units of 2^-20, then a few odd values.
            let mut acc = 0u64;
            let mut v: Vec<f64> = steps.iter().map(|d| {
                acc = acc.wrapping_add(*d);
                base + acc as f64 / (1u64 << 20) as f64
            }).collect();
            for (at, kind) in specials {
                if let Some(x) = v.get_mut(at) {
                    *x = match kind {
                        0 => f64::from_bits(calm_wire::value::STALE_NAN_BITS),
                        1 => f64::NAN,
                        2 => -0.0,
                        3 => f64::NEG_INFINITY,
                        _ => f64::MIN_POSITIVE / 3.0,
                    };
                }
            }
            let (_, bytes) = encode_scored(&v);
            let want: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
            let n = v.len() as u16;
            let got: Vec<u64> = DvarintIter::new(&bytes, n).map(|s| s.1.to_bits()).collect();
            prop_assert_eq!(&got, &want);
            let ts: Vec<i64> = (0..v.len() as i64).map(|i| i * 15_000).collect();
            let view = ChunkView {
                min_t: 0,
                max_t: ts[ts.len() - 1],
                count: n,
                encoding: ENC_DECIMAL_VARINT,
                data: &bytes,
                ts: Some(&ts),
            };
            let mut out = Vec::new();
            view.decode_into(&mut out, i64::MIN, i64::MAX);
            let got: Vec<u64> = out.iter().map(|s| s.1.to_bits()).collect();
            prop_assert_eq!(&got, &want);
            out.clear();
            view.decode_times_into(&mut out, i64::MIN, i64::MAX);
            for (s, w) in out.iter().zip(&v) {
                if calm_wire::value::is_stale_nan(*w) {
                    prop_assert!(calm_wire::value::is_stale_nan(s.1));
                }
            }
        }

        #[test]
        fn any_decimals_round_trip(
            ints in proptest::collection::vec(-(1i64 << 52)..(1i64 << 52), 1..200),
            scale in 0u32..8,
        ) {
            let v: Vec<f64> = ints.iter().map(|m| *m as f64 / 10f64.powi(scale as i32)).collect();
            if let Some(bytes) = encode(&v) {
                let got: Vec<u64> = DvarintIter::new(&bytes, v.len() as u16).map(|s| s.1.to_bits()).collect();
                let want: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
