//! Decimal chunks: the stored form of chunks whose values are short decimals.
//!
//! Exporters mostly write values like `12345.67` or `1048576`. XOR of their float bits
//! leaves many significant bits (a ×1.01 step flips most of the mantissa), while the
//! decimal mantissas (`1234567` at 2 decimals) move by small integers. So when a chunk
//! is persisted it is re-encoded this way if that is smaller, exactly like
//! VictoriaMetrics' decimal conversion but lossless: a chunk is only stored as decimal
//! when every value decodes back to the very same bits (checked at encode time).
//!
//! ```text
//! u5 k                                  decimals shared by the chunk (0..=22)
//! u2 w                                  bucket widths of the mantissa code, one of
//!                                       [2,6,12] [4,8,16] [6,12,24] [8,16,32]
//! per sample:  timestamp as in XOR chunks (varint t0, varint Δ, then Δ² buckets)
//!              mantissa  i=0: zigzag varint m0   i=1: zigzag varint m1−m0
//!                        i≥2: Δ² of mantissas: '0'            0
//!                                              '10'   + w[0] bits
//!                                              '110'  + w[1] bits
//!                                              '1110' + w[2] bits
//!                                              '1111' + 64 bits
//! value = m / 10^k, correctly rounded (exact for |m| < 2^53, k ≤ 22)
//! ```

use super::bstream::{read_dod, write_dod, BitReader, BitWriter, TS_WIDTHS};
use super::{Chunk, ENC_DECIMAL};

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
const MAX_MANTISSA: i128 = 1 << 53;

/// The shortest decimal of `v` as (mantissa, decimals), e.g. 12.5 → (125, 1).
fn shortest_decimal(v: f64) -> Option<(i128, i32)> {
    if !v.is_finite() {
        return None;
    }
    // `{:e}` prints the shortest digits that round-trip, e.g. "1.2345e4", "-5e-1".
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut m: i128 = digits.parse().ok()?;
    let mut decimals = digits.len() as i32 - 1 - exp;
    while decimals < 0 {
        m = m.checked_mul(10)?;
        decimals += 1;
        if m >= MAX_MANTISSA {
            return None;
        }
    }
    Some((if neg { -m } else { m }, decimals))
}

fn decode_value(m: i64, k: u8) -> f64 {
    if k == 0 {
        m as f64
    } else {
        m as f64 / POW10[k as usize]
    }
}

fn write_ts(w: &mut BitWriter, i: usize, t: i64, prev: i64, prev_delta: i64) {
    match i {
        0 => w.write_varint(t),
        1 => w.write_varint(t.wrapping_sub(prev)),
        _ => write_dod(w, t.wrapping_sub(prev).wrapping_sub(prev_delta), TS_WIDTHS),
    }
}

/// Bucket widths the mantissa delta-of-delta code may use; each chunk is written with
/// the set that makes it smallest (counters with steady increments want small buckets,
/// counters with noisy increments wider ones), and names it in its header.
const MANTISSA_WIDTHS: [[u8; 3]; 4] = [[2, 6, 12], [4, 8, 16], [6, 12, 24], [8, 16, 32]];

/// Encodes samples (sorted, unique timestamps) as a decimal chunk, or `None` when a
/// value is not a short decimal that decodes back to the same bits.
pub fn encode(samples: &[(i64, f64)]) -> Option<Vec<u8>> {
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let (ms, k) = mantissas(&values)?;
    (0..MANTISSA_WIDTHS.len())
        .map(|wi| write_chunk(samples, &ms, k, wi))
        .min_by_key(|b| b.len())
}

/// The mantissas of `values` at the decimals they share, or `None` when a value is not
/// a short decimal that decodes back to the same bits.
pub(crate) fn mantissas(values: &[f64]) -> Option<(Vec<i64>, u8)> {
    let decs: Vec<(i128, i32)> = values
        .iter()
        .map(|v| shortest_decimal(*v))
        .collect::<Option<_>>()?;
    let k = decs.iter().map(|d| d.1).max().unwrap_or(0);
    if k > 22 {
        return None;
    }
    let mut ms = Vec::with_capacity(values.len());
    for ((m, d), v) in decs.iter().zip(values) {
        let scaled = m.checked_mul(10i128.checked_pow((k - d) as u32)?)?;
        if scaled.abs() >= MAX_MANTISSA {
            return None;
        }
        let m = scaled as i64;
        if decode_value(m, k as u8).to_bits() != v.to_bits() {
            return None; // e.g. -0.0: keep XOR, which keeps every bit
        }
        ms.push(m);
    }
    Some((ms, k as u8))
}

/// Encodes values alone, their timestamps kept elsewhere (a shared column, see
/// `ts_columns.rs`), as a decimal values chunk ([`super::ENC_DECIMAL_VALUES`]), or
/// `None` when a value is not a short decimal that decodes back to the same bits.
///
/// ```text
/// u5 k  u2 w  u1 order                  as above; order 1: Δ of mantissas, 0: Δ²
/// per sample:  mantissa  i=0: zigzag varint m0
///                        order 0: i=1 zigzag varint m1−m0, i≥2 Δ² in w's buckets
///                        order 1: i≥1 Δ in w's buckets
/// ```
/// No timestamp bits: a chunk of timestamps 0, 1, 2, … still paid one bit a sample.
/// Δ or Δ², whichever is smaller: a counter with noisy increments has Δ² twice as wide
/// as its Δ (a bit a sample more), one with steady increments the reverse.
pub fn encode_values(values: &[f64]) -> Option<Vec<u8>> {
    let (ms, k) = mantissas(values)?;
    (0..MANTISSA_WIDTHS.len())
        .flat_map(|wi| [false, true].map(|delta| write_values(&ms, k, wi, delta)))
        .min_by_key(|b| b.len())
}

fn write_values(ms: &[i64], k: u8, wi: usize, delta: bool) -> Vec<u8> {
    let widths = MANTISSA_WIDTHS[wi];
    let mut w = BitWriter::default();
    w.write_bits(k as u64, 5);
    w.write_bits(wi as u64, 2);
    w.write_bit(delta);
    let (mut pm, mut pmdelta) = (0i64, 0i64);
    for (i, &m) in ms.iter().enumerate() {
        let d = m.wrapping_sub(pm);
        match (i, delta) {
            (0, _) => w.write_varint(m),
            (_, true) => write_dod(&mut w, d, widths),
            (1, false) => w.write_varint(d),
            (_, false) => write_dod(&mut w, d.wrapping_sub(pmdelta), widths),
        }
        if i > 0 {
            pmdelta = d;
        }
        pm = m;
    }
    w.into_bytes()
}

/// Re-encodes the decimal chunk `bytes` (`count` samples, a checkpoint's values-only
/// chunk: see `ts_columns.rs`) at the timestamps `ts`, cut into chunks of at most `per`
/// samples as the head cuts them, each keeping the chunk's decimals, mantissas and
/// mantissa widths. Searching each piece's best encoding anew ([`encode`]) made a
/// restart six times as slow (10k series × 3 h: 1.1 s against 0.19 s). `None` if the
/// chunk is malformed.
pub fn retime_split(bytes: &[u8], count: u16, ts: &[i64], per: usize) -> Option<Vec<Chunk>> {
    if ts.len() != count as usize || ts.is_empty() || per == 0 {
        return None;
    }
    // The widths' index is the 2 bits after the 5 of k (the iterator keeps only widths).
    let wi = BitReader::new(bytes).read_bits(7)? as usize & 3;
    let mut it = DecimalIter::new(bytes, count);
    let mut samples = Vec::with_capacity(ts.len());
    let mut ms = Vec::with_capacity(ts.len());
    for &t in ts {
        let (_, v) = it.next()?;
        samples.push((t, v));
        // The mantissa the value was decoded from.
        ms.push(it.m);
    }
    Some(
        samples
            .chunks(per)
            .zip(ms.chunks(per))
            .map(|(s, m)| Chunk {
                min_t: s[0].0,
                max_t: s[s.len() - 1].0,
                count: s.len() as u16,
                encoding: ENC_DECIMAL,
                data: write_chunk(s, m, it.k, wi).into_boxed_slice(),
            })
            .collect(),
    )
}

fn write_chunk(samples: &[(i64, f64)], ms: &[i64], k: u8, wi: usize) -> Vec<u8> {
    let widths = MANTISSA_WIDTHS[wi];
    let mut w = BitWriter::default();
    w.write_bits(k as u64, 5);
    w.write_bits(wi as u64, 2);
    let (mut pt, mut pdelta, mut pm, mut pmdelta) = (0i64, 0i64, 0i64, 0i64);
    for (i, (&(t, _), &m)) in samples.iter().zip(ms).enumerate() {
        write_ts(&mut w, i, t, pt, pdelta);
        match i {
            0 => w.write_varint(m),
            1 => w.write_varint(m.wrapping_sub(pm)),
            _ => write_dod(&mut w, m.wrapping_sub(pm).wrapping_sub(pmdelta), widths),
        }
        if i > 0 {
            pdelta = t.wrapping_sub(pt);
            pmdelta = m.wrapping_sub(pm);
        }
        pt = t;
        pm = m;
    }
    w.into_bytes()
}

/// The 64 bits of `bytes` from bit `pos` on, most significant first; bits past the
/// end read as zero. At least the top 57 are the stream's (whole bytes are loaded).
#[inline(always)]
fn word_at(bytes: &[u8], pos: usize) -> u64 {
    let i = pos >> 3;
    let w = match bytes
        .get(i..i + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
    {
        Some(b) => u64::from_be_bytes(b),
        None => {
            let mut b = [0u8; 8];
            let tail = bytes.get(i..).unwrap_or(&[]);
            b[..tail.len()].copy_from_slice(tail);
            u64::from_be_bytes(b)
        }
    };
    w << (pos & 7)
}

/// A zigzag varint at bit `pos` (as [`BitReader::read_varint`]); `None` when longer
/// than 64 bits. Past the end it reads zeros: the caller checks `pos` against the
/// stream's length.
#[inline]
fn varint_at(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut u = 0u64;
    let mut shift = 0;
    loop {
        let b = (word_at(bytes, *pos) >> 56) as u8;
        *pos += 8;
        if shift >= 64 {
            return None;
        }
        u |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// A delta-of-delta at bit `pos` (as [`read_dod`] with `widths`), advancing `pos`.
/// Past the end it reads zeros: the caller checks `pos` against the stream's length.
#[inline(always)]
fn dod_at(bytes: &[u8], pos: &mut usize, widths: [u8; 3]) -> i64 {
    let w = word_at(bytes, *pos);
    let ones = (!w).leading_zeros().min(4);
    match ones {
        0 => {
            *pos += 1;
            0
        }
        1..=3 => {
            let width = widths[ones as usize - 1] as u32;
            let v = (w << (ones + 1)) >> (64 - width);
            *pos += (ones + 1 + width) as usize;
            // As `sign_extend`: above the positive range is negative.
            let v = v as i64;
            if v > (1i64 << (width - 1)) {
                v - (1i64 << width)
            } else {
                v
            }
        }
        _ => {
            let hi = word_at(bytes, *pos + 4) >> 32;
            let lo = word_at(bytes, *pos + 36) >> 32;
            *pos += 68;
            ((hi << 32) | lo) as i64
        }
    }
}

/// Appends to `out` the samples of the decimal chunk `bytes` (`count` samples, their
/// timestamps inside: the head's chunks, [`encode`]) that are in `[mint, maxt]`, or all
/// of them when `inside`. The same samples, bit for bit, as [`DecimalIter::new`]
/// filtered, and like it stops at a corrupt stream; one loop over 64-bit loads instead
/// of a bit reader per field: the iterator was a tenth of a query over the head's hours
/// (`bench/RESULTS.md`, query section).
pub fn decode_into(
    bytes: &[u8],
    count: u16,
    (inside, mint, maxt): (bool, i64, i64),
    out: &mut Vec<(i64, f64)>,
) {
    let Some(&head) = bytes.first() else {
        return;
    };
    // u5 k, u2 widths: the first 7 bits.
    let (k, wi) = (head >> 3, (head >> 1) & 3);
    if k > 22 || count == 0 {
        return;
    }
    let widths = MANTISSA_WIDTHS[wi as usize];
    let nbits = bytes.len() * 8;
    let mut pos = 7usize;
    let mut put = |t: i64, m: i64| {
        if inside || (t >= mint && t <= maxt) {
            out.push((t, decode_value(m, k)));
        }
    };
    let (Some(mut t), Some(mut m)) = (varint_at(bytes, &mut pos), varint_at(bytes, &mut pos))
    else {
        return;
    };
    if pos > nbits {
        return;
    }
    put(t, m);
    if count == 1 {
        return;
    }
    let (Some(mut td), Some(mut md)) = (varint_at(bytes, &mut pos), varint_at(bytes, &mut pos))
    else {
        return;
    };
    if pos > nbits {
        return;
    }
    t = t.wrapping_add(td);
    m = m.wrapping_add(md);
    put(t, m);
    for _ in 2..count {
        td = td.wrapping_add(dod_at(bytes, &mut pos, TS_WIDTHS));
        md = md.wrapping_add(dod_at(bytes, &mut pos, widths));
        if pos > nbits {
            return;
        }
        t = t.wrapping_add(td);
        m = m.wrapping_add(md);
        put(t, m);
    }
}

/// Appends to `out` the samples `lo..hi` of the values chunk `bytes`
/// ([`encode_values`]) whose sample `i` is at `ts[i]` (`ts` holds its `count`
/// timestamps). The same samples, bit for bit, as [`DecimalIter::new_values`] mapped
/// onto `ts`, and like it stops at a corrupt stream; but one loop over 64-bit loads
/// instead of an iterator and a bit buffer per sample: decoding these chunks was over
/// a third of a query aggregating the rate of every host (`bench/RESULTS.md`).
pub fn decode_values_at(bytes: &[u8], ts: &[i64], lo: usize, hi: usize, out: &mut Vec<(i64, f64)>) {
    let hi = hi.min(ts.len());
    if lo >= hi {
        return;
    }
    let Some(&head) = bytes.first() else {
        return;
    };
    let (k, wi, delta) = (head >> 3, (head >> 1) & 3, head & 1 == 1);
    if k > 22 {
        return;
    }
    let widths = MANTISSA_WIDTHS[wi as usize];
    let nbits = bytes.len() * 8;
    let mut pos = 8usize;
    out.reserve(hi - lo);
    let value = |m: i64| decode_value(m, k);
    // Sample 0, and sample 1 of a Δ²-coded chunk: varints.
    let Some(mut m) = varint_at(bytes, &mut pos) else {
        return;
    };
    if pos > nbits {
        return;
    }
    if lo == 0 {
        out.push((ts[0], value(m)));
    }
    let mut md = 0i64;
    let mut i = 1usize;
    if !delta && i < hi {
        let Some(d) = varint_at(bytes, &mut pos) else {
            return;
        };
        if pos > nbits {
            return;
        }
        md = d;
        m = m.wrapping_add(md);
        if lo <= 1 {
            out.push((ts[1], value(m)));
        }
        i = 2;
    }
    // Samples before `lo` are decoded (each depends on the one before) but not kept.
    let skip_to = lo.max(i);
    while i < skip_to {
        let d = dod_at(bytes, &mut pos, widths);
        if pos > nbits {
            return;
        }
        if delta {
            m = m.wrapping_add(d);
        } else {
            md = md.wrapping_add(d);
            m = m.wrapping_add(md);
        }
        i += 1;
    }
    for &t in &ts[i..hi] {
        let d = dod_at(bytes, &mut pos, widths);
        if pos > nbits {
            return;
        }
        if delta {
            m = m.wrapping_add(d);
        } else {
            md = md.wrapping_add(d);
            m = m.wrapping_add(md);
        }
        out.push((t, value(m)));
    }
}

/// Iterates a decimal chunk; stops early on a corrupt stream.
pub struct DecimalIter<'a> {
    r: BitReader<'a>,
    left: u16,
    i: u16,
    k: u8,
    widths: [u8; 3],
    t: i64,
    t_delta: i64,
    m: i64,
    m_delta: i64,
    /// A values chunk ([`encode_values`]): no timestamps (sample `i` is at `i`), and
    /// `delta` says its mantissas are Δ-coded rather than Δ²-coded.
    values: bool,
    delta: bool,
}

impl<'a> DecimalIter<'a> {
    /// An iterator over the `count` values of a values chunk ([`encode_values`]), at
    /// timestamps 0, 1, 2, …
    pub fn new_values(bytes: &'a [u8], count: u16) -> DecimalIter<'a> {
        let mut it = DecimalIter::new(bytes, count);
        match it.r.read_bits(1) {
            Some(d) => it.delta = d == 1,
            None => it.left = 0,
        }
        it.values = true;
        it
    }

    /// An iterator over `count` samples in `bytes`.
    pub fn new(bytes: &'a [u8], count: u16) -> DecimalIter<'a> {
        let mut r = BitReader::new(bytes);
        let k = r.read_bits(5).unwrap_or(u64::MAX);
        let wi = r.read_bits(2).unwrap_or(u64::MAX);
        let ok = k <= 22 && (wi as usize) < MANTISSA_WIDTHS.len();
        DecimalIter {
            r,
            left: if ok { count } else { 0 },
            i: 0,
            k: if ok { k as u8 } else { 0 },
            widths: MANTISSA_WIDTHS[if ok { wi as usize } else { 0 }],
            t: 0,
            t_delta: 0,
            m: 0,
            m_delta: 0,
            values: false,
            delta: false,
        }
    }

    fn next_value(&mut self) -> Option<(i64, f64)> {
        match (self.i, self.delta) {
            (0, _) => self.m = self.r.read_varint()?,
            (_, true) => self.m = self.m.wrapping_add(read_dod(&mut self.r, self.widths)?),
            (1, false) => {
                self.m_delta = self.r.read_varint()?;
                self.m = self.m.wrapping_add(self.m_delta);
            }
            (_, false) => {
                self.m_delta = self
                    .m_delta
                    .wrapping_add(read_dod(&mut self.r, self.widths)?);
                self.m = self.m.wrapping_add(self.m_delta);
            }
        }
        let i = self.i as i64;
        self.i += 1;
        Some((i, decode_value(self.m, self.k)))
    }

    fn next_inner(&mut self) -> Option<(i64, f64)> {
        if self.values {
            return self.next_value();
        }
        match self.i {
            0 => {
                self.t = self.r.read_varint()?;
                self.m = self.r.read_varint()?;
            }
            1 => {
                self.t_delta = self.r.read_varint()?;
                self.t = self.t.wrapping_add(self.t_delta);
                self.m_delta = self.r.read_varint()?;
                self.m = self.m.wrapping_add(self.m_delta);
            }
            _ => {
                let dod = read_dod(&mut self.r, TS_WIDTHS)?;
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta);
                let mdod = read_dod(&mut self.r, self.widths)?;
                self.m_delta = self.m_delta.wrapping_add(mdod);
                self.m = self.m.wrapping_add(self.m_delta);
            }
        }
        self.i += 1;
        Some((self.t, decode_value(self.m, self.k)))
    }
}

impl Iterator for DecimalIter<'_> {
    type Item = (i64, f64);

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::chunkenc::Chunk;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) -> Option<usize> {
        let enc = encode(samples)?;
        let got: Vec<(i64, u64)> = DecimalIter::new(&enc, samples.len() as u16)
            .map(|(t, v)| (t, v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
        Some(enc.len())
    }

    #[test]
    fn exporter_like_values_shrink_and_stay_exact() {
        let mut c = 1000.0f64;
        let s: Vec<(i64, f64)> = (0..120)
            .map(|i| {
                c = ((c + 13.37 + (i % 7) as f64 * 0.01) * 100.0).round() / 100.0;
                (1_700_000_000_000 + i * 15_000, c)
            })
            .collect();
        let dec = round_trip(&s).expect("decimal");
        let xor = Chunk::from_samples(&s).data.len();
        assert!(dec * 2 < xor, "decimal {dec} bytes vs xor {xor}");
        let compact = Chunk::from_samples(&s).compact();
        assert_eq!(compact.encoding, crate::tsdb::chunkenc::ENC_DECIMAL);
        assert_eq!(compact.iter().collect::<Vec<_>>(), s);
    }

    #[test]
    fn refuses_what_it_cannot_keep_exactly() {
        assert!(encode(&[(1, f64::NAN)]).is_none());
        assert!(encode(&[(1, -0.0)]).is_none());
        assert!(encode(&[(1, 1e300)]).is_none());
        // 0.30000000000000004 needs a 17-digit mantissa, past 2^53.
        assert!(encode(&[(1, 0.1 + 0.2)]).is_none());
        assert!(
            round_trip(&[(1, 0.3), (2, 1.0), (3, -2.5), (4, 1e9), (5, 123456789.123)]).is_some()
        );
    }

    proptest! {
        #[test]
        fn any_values_round_trip_or_are_refused(
            vals in proptest::collection::vec(any::<f64>(), 1..120),
            ints in proptest::collection::vec(-1_000_000_000i64..1_000_000_000, 1..120),
            scale in 0u32..6,
        ) {
            let s: Vec<(i64, f64)> = vals.iter().enumerate().map(|(i, v)| (i as i64 * 1000, *v)).collect();
            round_trip(&s);
            let d: Vec<(i64, f64)> = ints
                .iter()
                .enumerate()
                .map(|(i, m)| (i as i64 * 15_000, *m as f64 / 10f64.powi(scale as i32)))
                .collect();
            prop_assert!(round_trip(&d).is_some());
        }
    }

    proptest! {
        /// The head's chunks: the loop gives what the iterator gives, filtered, also
        /// from a chunk cut short or damaged.
        #[test]
        fn the_head_loop_decodes_as_the_iterator(
            steps in proptest::collection::vec(-100_000i64..100_000, 1..300),
            jitter in proptest::collection::vec(-3_000i64..3_000, 1..300),
            big in proptest::collection::vec(any::<i64>().prop_map(|m| m >> 11), 0..3),
            scale in 0u32..6,
            window in (0i64..5_000_000, 0i64..5_000_000),
            cut in 0usize..3000,
            flip in 0usize..3000,
        ) {
            let mut m = 0i64;
            let mut samples: Vec<(i64, f64)> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    m = m.wrapping_add(*s);
                    if i % 41 == 7 {
                        if let Some(b) = big.get(i % 3) { m = *b; }
                    }
                    let t = 1_700_000_000_000 + i as i64 * 15_000 + jitter[i % jitter.len()];
                    (t, (m % (1 << 52)) as f64 / 10f64.powi(scale as i32))
                })
                .collect();
            // Unique increasing timestamps, as the head keeps them.
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
            let Some(mut bytes) = encode(&samples) else { return Ok(()); };
            if cut % 3 == 1 {
                bytes.truncate(bytes.len().saturating_sub(cut / 3));
            }
            if flip % 4 == 2 && !bytes.is_empty() {
                let at = flip % bytes.len();
                bytes[at] ^= 1 << (flip % 8);
            }
            let n = samples.len() as u16;
            let mint = 1_700_000_000_000 + window.0;
            let maxt = mint + window.1;
            for inside in [true, false] {
                let want: Vec<(i64, u64)> = DecimalIter::new(&bytes, n)
                    .filter(|s| inside || (s.0 >= mint && s.0 <= maxt))
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect();
                let mut out = vec![(-1, 0.5)];
                decode_into(&bytes, n, (inside, mint, maxt), &mut out);
                let got: Vec<(i64, u64)> = out[1..].iter().map(|(t, v)| (*t, v.to_bits())).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    /// What `decode_values_at` must give: the iterator's samples mapped onto `ts`,
    /// those of `lo..hi`.
    fn by_iterator(bytes: &[u8], ts: &[i64], lo: usize, hi: usize) -> Vec<(i64, u64)> {
        DecimalIter::new_values(bytes, ts.len() as u16)
            .map_while(|(i, v)| Some((*ts.get(i as usize)?, v)))
            .enumerate()
            .filter(|(i, _)| *i >= lo && *i < hi)
            .map(|(_, (t, v))| (t, v.to_bits()))
            .collect()
    }

    fn by_loop(bytes: &[u8], ts: &[i64], lo: usize, hi: usize) -> Vec<(i64, u64)> {
        let mut out = vec![(-1, 0.5)];
        decode_values_at(bytes, ts, lo, hi, &mut out);
        out[1..].iter().map(|(t, v)| (*t, v.to_bits())).collect()
    }

    proptest! {
        #[test]
        fn the_values_loop_decodes_as_the_iterator(
            ints in proptest::collection::vec(-1_000_000_000_000i64..1_000_000_000_000, 1..300),
            big in proptest::collection::vec(any::<i64>().prop_map(|m| m >> 11), 0..4),
            steps in proptest::collection::vec(0i64..40, 1..300),
            scale in 0u32..9,
            lo in 0usize..320,
            len in 0usize..320,
            cut in 0usize..4000,
        ) {
            // Mantissas with steady, noisy and huge steps (every width and the 64-bit
            // escape), at several scales.
            let mut m = ints[0];
            let mut values: Vec<f64> = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                m = m.wrapping_add(*s * ints[i % ints.len()] % 100_000);
                if i % 37 == 5 {
                    if let Some(b) = big.get(i % 4) { m = *b; }
                }
                values.push((m % (1 << 52)) as f64 / 10f64.powi(scale as i32));
            }
            let Some(bytes) = encode_values(&values) else { return Ok(()); };
            let ts: Vec<i64> = (0..values.len() as i64).map(|i| 1_000 + i * 15_000).collect();
            let hi = lo + len;
            prop_assert_eq!(by_loop(&bytes, &ts, lo, hi), by_iterator(&bytes, &ts, lo, hi));
            let all = by_loop(&bytes, &ts, 0, usize::MAX);
            let want: Vec<(i64, u64)> = ts.iter().zip(&values).map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(all, want);
            // A damaged or cut stream: the same prefix as the iterator, never a panic.
            let cut = cut.min(bytes.len());
            prop_assert_eq!(by_loop(&bytes[..cut], &ts, lo, hi), by_iterator(&bytes[..cut], &ts, lo, hi));
            let mut flipped = bytes.clone();
            if let Some(b) = flipped.get_mut(cut.min(bytes.len().saturating_sub(1))) { *b ^= 0xa5; }
            prop_assert_eq!(by_loop(&flipped, &ts, lo, hi), by_iterator(&flipped, &ts, lo, hi));
        }
    }

    #[test]
    fn the_values_loop_handles_every_width_and_garbage() {
        // Δ-coded and Δ²-coded chunks of every width set, through the iterator's eyes.
        let shapes: Vec<Vec<f64>> = vec![
            (0..480).map(|i| 5e6 + i as f64 * 4096.0).collect(),
            (0..480)
                .map(|i| ((i * i * 7919) % 1_000_003) as f64 / 100.0)
                .collect(),
            (0..480)
                .map(|i| if i % 2 == 0 { 0.0 } else { 4.5e15 })
                .collect(),
            vec![1.0, 0.5, 1e-9, 12345.0, 0.0, 7.25],
            vec![3.0],
        ];
        for values in shapes {
            let ms = mantissas(&values).unwrap();
            for wi in 0..MANTISSA_WIDTHS.len() {
                for delta in [false, true] {
                    let bytes = write_values(&ms.0, ms.1, wi, delta);
                    let ts: Vec<i64> = (0..values.len() as i64).collect();
                    for (lo, hi) in [(0, usize::MAX), (1, 3), (2, 2), (5, 400), (0, 1)] {
                        assert_eq!(
                            by_loop(&bytes, &ts, lo, hi),
                            by_iterator(&bytes, &ts, lo, hi)
                        );
                    }
                }
            }
        }
        // Arbitrary bytes: the same (possibly empty) prefix as the iterator.
        let mut x = 99u64;
        for n in 0..200usize {
            let bytes: Vec<u8> = (0..n % 40)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            let ts: Vec<i64> = (0..(n % 50) as i64).collect();
            assert_eq!(
                by_loop(&bytes, &ts, 0, usize::MAX),
                by_iterator(&bytes, &ts, 0, usize::MAX)
            );
        }
    }

    #[test]
    fn values_chunks_round_trip_and_beat_indexed_chunks() {
        let mut x = 12_345u64;
        let mut rnd = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut v = 1000.0f64;
        let noisy: Vec<f64> = (0..480)
            .map(|_| {
                v = ((v + 1.5 * (0.6 + 0.8 * rnd())) * 100.0).round() / 100.0;
                v
            })
            .collect();
        let steady: Vec<f64> = (0..480).map(|i| 5e6 + i as f64 * 4096.0).collect();
        let mixed: Vec<f64> = vec![1.0, 0.5, 1e-9, 12345.0, 0.0, 7.25];
        for values in [noisy, steady, mixed, vec![3.0], vec![]] {
            let bytes = encode_values(&values).unwrap();
            let got: Vec<(i64, u64)> = DecimalIter::new_values(&bytes, values.len() as u16)
                .map(|(i, v)| (i, v.to_bits()))
                .collect();
            let want: Vec<(i64, u64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64, v.to_bits()))
                .collect();
            assert_eq!(got, want);
            // Smaller than the decimal chunk at timestamps 0, 1, 2, … it replaces.
            if values.len() > 8 {
                let indexed: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as i64, *v))
                    .collect();
                let old = encode(&indexed).unwrap();
                assert!(bytes.len() < old.len(), "{} vs {}", bytes.len(), old.len());
            }
        }
        assert!(encode_values(&[f64::NAN]).is_none());
        assert!(encode_values(&[-0.0]).is_none());
        // A damaged stream ends the iteration, never panics.
        let bytes = encode_values(&[1.5, 2.5, 3.75]).unwrap();
        for cut in 0..bytes.len() {
            let _ = DecimalIter::new_values(&bytes[..cut], 3).count();
        }
    }
}
