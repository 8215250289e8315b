//! Shared timestamp columns: how a checkpoint stores each distinct run of timestamps
//! once.
//!
//! Every series scraped from one target in one scrape gets the same timestamp, so the
//! 179 series of a node_exporter share one sequence of timestamps per bucket. Inside
//! a chunk those timestamps cost 1–7 bits per sample (a few ms of scrape jitter make
//! most delta-of-deltas non-zero), about half of a checkpoint. A checkpoint record
//! therefore lists each distinct sequence once, as a column, and stores a float
//! chunk as its column's number plus its values alone (see `checkpoint.rs`).
//!
//! Columns are numbered per record, so the table a writer keeps is bounded by one
//! record (≤ 1 MiB of entries) whatever the number of series.
//!
//! ```text
//! columns := uvarint(c) column*c
//! column  := uvarint(n) varint(t0) uvarint(t_i − t_{i−1})*(n−1)     (n ≥ 1, increasing)
//! ```

use super::chunkenc::Chunk;
#[cfg(test)]
use super::chunkenc::{ENC_DECIMAL, ENC_XOR, ENC_XOR_FINAL};
use super::labels::{get_uvarint, get_varint, put_uvarint, put_varint};
use std::collections::HashMap;

/// Most timestamps in one column (a chunk's sample count is a u16).
const MAX_LEN: u64 = u16::MAX as u64;

/// The columns of the record being written: each distinct sequence once.
#[derive(Debug, Default)]
pub struct ColumnTable {
    ids: HashMap<Vec<i64>, u32>,
    encoded: Vec<u8>,
}

impl ColumnTable {
    /// The number of the column holding `ts` (sorted, unique), added if new.
    pub fn intern(&mut self, ts: &[i64]) -> u32 {
        if let Some(id) = self.ids.get(ts) {
            return *id;
        }
        let id = self.ids.len() as u32;
        put_uvarint(&mut self.encoded, ts.len() as u64);
        if let Some(&t0) = ts.first() {
            put_varint(&mut self.encoded, t0);
        }
        for w in ts.windows(2) {
            put_uvarint(&mut self.encoded, w[1].wrapping_sub(w[0]) as u64);
        }
        self.ids.insert(ts.to_vec(), id);
        id
    }

    /// Whether no column was added since the last [`ColumnTable::write_and_clear`].
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends the table in its wire form to `out` and starts an empty one.
    pub fn write_and_clear(&mut self, out: &mut Vec<u8>) {
        put_uvarint(out, self.ids.len() as u64);
        out.extend_from_slice(&self.encoded);
        self.ids.clear();
        self.encoded.clear();
    }
}

/// Reads a table written by [`ColumnTable::write_and_clear`]; `None` if malformed.
pub fn read_columns(buf: &mut &[u8]) -> Option<Vec<Vec<i64>>> {
    let c = get_uvarint(buf)?;
    // Each column takes at least two bytes: a corrupt count cannot make us allocate.
    let mut cols = Vec::with_capacity((c as usize).min(buf.len() / 2));
    for _ in 0..c {
        let n = get_uvarint(buf)?;
        if n == 0 || n > MAX_LEN {
            return None;
        }
        cols.push(decode_column(buf, n)?);
    }
    Some(cols)
}

/// The columns of a record, each decoded the first time it is asked for: a reader of a
/// few series of a page needs one or two of its dozens of columns.
pub struct LazyColumns<'a> {
    /// Each column's count and encoded timestamps (from its `t0`).
    cols: Vec<(u64, &'a [u8])>,
    decoded: Vec<std::cell::OnceCell<Option<Vec<i64>>>>,
}

impl<'a> LazyColumns<'a> {
    /// Finds where each column of the table at the start of `buf` lies, without
    /// decoding them; `None` when cut short.
    pub fn parse(buf: &mut &'a [u8]) -> Option<LazyColumns<'a>> {
        let c = get_uvarint(buf)?;
        let mut cols = Vec::with_capacity((c as usize).min(buf.len() / 2));
        for _ in 0..c {
            let n = get_uvarint(buf)?;
            if n == 0 || n > MAX_LEN {
                return None;
            }
            let start = *buf;
            // t0 and n − 1 deltas: n varints, each ending at a byte below 0x80.
            let mut left = n;
            let mut used = 0;
            for &b in start.iter() {
                used += 1;
                if b < 0x80 {
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
            if left != 0 {
                return None;
            }
            cols.push((n, &start[..used]));
            *buf = &start[used..];
        }
        let decoded = (0..cols.len()).map(|_| Default::default()).collect();
        Some(LazyColumns { cols, decoded })
    }

    /// Where each column of the table at the start of `buf` lies in `buf`, as
    /// `(count, start, end)`: what [`LazyColumns::parse`] finds, kept by a cache so that
    /// the next reader of the same table need not scan it again (each column then
    /// decoded by [`decode_span`]); `None` when cut short.
    pub fn spans(buf: &[u8]) -> Option<Vec<(u64, u32, u32)>> {
        let mut b = buf;
        let lazy = LazyColumns::parse(&mut b)?;
        let base = buf.as_ptr() as usize;
        lazy.cols
            .iter()
            .map(|&(n, s)| {
                let start = u32::try_from(s.as_ptr() as usize - base).ok()?;
                Some((n, start, start.checked_add(u32::try_from(s.len()).ok()?)?))
            })
            .collect()
    }

    /// Column `i`, decoded; `None` when absent or damaged.
    pub fn get(&self, i: usize) -> Option<&[i64]> {
        let (n, mut bytes) = *self.cols.get(i)?;
        self.decoded[i]
            .get_or_init(|| decode_column(&mut bytes, n))
            .as_deref()
    }
}

/// One column's `n` timestamps from its bytes (`varint(t0) uvarint(delta)*(n−1)`,
/// as [`LazyColumns::spans`] delimits them); `None` when damaged.
pub fn decode_span(mut bytes: &[u8], n: u64) -> Option<Vec<i64>> {
    if n == 0 || n > MAX_LEN {
        return None;
    }
    decode_column(&mut bytes, n)
}

/// One column's `n` timestamps from `varint(t0) uvarint(delta)*(n−1)`.
fn decode_column(buf: &mut &[u8], n: u64) -> Option<Vec<i64>> {
    let mut ts = Vec::with_capacity(n as usize);
    let mut t = get_varint(buf)?;
    ts.push(t);
    for _ in 1..n {
        let d = get_uvarint(buf)? as i64;
        if d <= 0 {
            return None;
        }
        t = t.checked_add(d)?;
        ts.push(t);
    }
    Some(ts)
}

/// The values of `samples` as a chunk of their own: stored at timestamps 0, 1, 2, …,
/// which cost one bit a sample, in the smallest encoding ([`Chunk::compact`]).
pub fn values_only(samples: &[(i64, f64)]) -> Chunk {
    let at_index: Vec<(i64, f64)> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i64, s.1))
        .collect();
    Chunk::from_samples(&at_index).compact()
}

/// The samples of the chunk [`values_only`] was made from, given their timestamps
/// back; `None` if the two do not fit together. (A checkpoint's reader goes straight to
/// the head's chunks: `chunkenc::head_chunks`.)
#[cfg(test)]
pub fn with_timestamps(values: &Chunk, ts: &[i64]) -> Option<Vec<(i64, f64)>> {
    if values.count as usize != ts.len() || ts.is_empty() {
        return None;
    }
    if ![ENC_DECIMAL, ENC_XOR, ENC_XOR_FINAL].contains(&values.encoding) {
        return None;
    }
    let samples: Vec<(i64, f64)> = ts
        .iter()
        .zip(values.iter())
        .map(|(&t, s)| (t, s.1))
        .collect();
    (samples.len() == ts.len()).then_some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sequences_share_one_column_and_read_back() {
        let a = [1_000i64, 16_002, 31_000, 45_999];
        let b = [2_000i64, 17_000];
        let mut t = ColumnTable::default();
        assert_eq!(t.intern(&a), 0);
        assert_eq!(t.intern(&b), 1);
        assert_eq!(t.intern(&a), 0);
        let mut out = vec![];
        t.write_and_clear(&mut out);
        assert!(t.is_empty());
        let cols = read_columns(&mut &out[..]).unwrap();
        assert_eq!(cols, vec![a.to_vec(), b.to_vec()]);
    }

    #[test]
    fn chunks_split_into_column_and_values_come_back_bit_for_bit() {
        let ts: Vec<i64> = (0..480)
            .map(|i| 1_700_000_000_000 + i * 15_000 + (i * 7) % 5 - 2)
            .collect();
        let decimal: Vec<(i64, f64)> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, 1000.0 + i as f64 * 2.5))
            .collect();
        let noisy: Vec<(i64, f64)> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (i as f64).sin() * 1e-3))
            .collect();
        let special: Vec<(i64, f64)> = ts[..4]
            .iter()
            .zip([f64::NAN, -0.0, f64::INFINITY, 1.0])
            .map(|(&t, v)| (t, v))
            .collect();
        for samples in [decimal, noisy, special] {
            let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
            let v = values_only(&samples);
            let back = with_timestamps(&v, &ts).unwrap();
            let got: Vec<(i64, u64)> = back.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_column_of_the_wrong_length_is_refused() {
        let v = values_only(&[(5, 1.0), (6, 2.0)]);
        assert!(with_timestamps(&v, &[5]).is_none());
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert!(read_columns(&mut &[1u8, 0][..]).is_none()); // empty column
        assert!(read_columns(&mut &[1u8, 2, 2, 0][..]).is_none()); // zero delta
        assert!(read_columns(&mut &[200u8][..]).is_none()); // truncated
        assert!(LazyColumns::parse(&mut &[1u8, 0][..]).is_none());
        assert!(LazyColumns::parse(&mut &[1u8, 3, 2, 0x80][..]).is_none()); // cut short
        let lazy = LazyColumns::parse(&mut &[1u8, 2, 2, 0][..]).unwrap();
        assert!(lazy.get(0).is_none() && lazy.get(1).is_none()); // zero delta, absent
    }
}
