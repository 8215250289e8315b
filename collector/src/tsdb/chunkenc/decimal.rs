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

/// Re-encodes the decimal chunk `bytes` (`count` samples) at the timestamps `ts`,
/// keeping its decimals, mantissas and mantissa widths: how a checkpoint's values-only
/// chunk (see `ts_columns.rs`) becomes a head chunk again without searching for the
/// best encoding anew. `None` if the chunk is malformed.
pub fn retime(bytes: &[u8], count: u16, ts: &[i64]) -> Option<Vec<u8>> {
    if ts.len() != count as usize {
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
    Some(write_chunk(&samples, &ms, it.k, wi))
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
