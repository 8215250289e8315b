//! XOR ("Gorilla") chunks: the form every float sample takes in the head.
//!
//! Written by hand: the format is ours (DESIGN.md), and it is where bytes per sample
//! are won. One chunk holds up to [`MAX_SAMPLES`] samples of one series in time order.
//!
//! ```text
//! sample 0      t: zigzag varint              v: 64 raw bits
//! sample 1      Δt: zigzag varint             v: XOR (below)
//! sample n ≥ 2  Δ²t (delta of delta):  '0'                         Δ² = 0
//!                                      '10'   + 5-bit two's compl.  -15..16 (scrape jitter)
//!                                      '110'  + 14 bits             -8191..8192
//!                                      '1110' + 20 bits             -524287..524288
//!                                      '1111' + 64 bits             anything else
//! value XOR with previous value:  '0'                                   same bits
//!                                 '10' + meaningful bits                fits the previous
//!                                                                        leading/trailing window
//!                                 '11' + 5 bits leading zeros + 6 bits length (0 = 64)
//!                                      + meaningful bits
//! ```
//! The bits of every value are kept exactly, so NaN payloads (the staleness marker)
//! survive a round trip. The sample count is kept outside the byte stream.

use super::bstream::{read_dod, write_dod, BitReader, BitWriter, TS_WIDTHS};
use super::{Chunk, ENC_XOR};

/// Samples per chunk before the head cuts a new one (Prometheus uses the same).
pub const MAX_SAMPLES: u16 = 120;

/// A chunk being appended to (the head's open chunk).
#[derive(Debug, Clone)]
pub struct XorAppender {
    bits: BitWriter,
    count: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    min_t: i64,
}

impl Default for XorAppender {
    fn default() -> Self {
        XorAppender::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> XorAppender {
        XorAppender {
            bits: BitWriter::default(),
            count: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
            min_t: 0,
        }
    }

    /// Number of samples appended.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn min_time(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn max_time(&self) -> i64 {
        self.t
    }

    /// Bits of the last value appended.
    pub fn last_value_bits(&self) -> u64 {
        self.v
    }

    /// The encoded bytes so far (a copy: the tail lives in the writer's word).
    pub fn bytes(&self) -> Vec<u8> {
        self.bits.to_bytes()
    }

    /// Length of the encoded bytes so far.
    pub fn byte_len(&self) -> usize {
        self.bits.byte_len()
    }

    /// Appends a sample. The caller guarantees `t` is greater than the last timestamp.
    pub fn append(&mut self, t: i64, v: f64) {
        let vb = v.to_bits();
        match self.count {
            0 => {
                self.bits.write_varint(t);
                self.bits.write_bits(vb, 64);
                self.min_t = t;
            }
            1 => {
                let d = t.wrapping_sub(self.t);
                self.bits.write_varint(d);
                self.write_value(vb);
                self.t_delta = d;
            }
            _ => {
                let d = t.wrapping_sub(self.t);
                write_dod(&mut self.bits, d.wrapping_sub(self.t_delta), TS_WIDTHS);
                self.write_value(vb);
                self.t_delta = d;
            }
        }
        self.t = t;
        self.v = vb;
        self.count += 1;
    }

    fn write_value(&mut self, vb: u64) {
        let x = vb ^ self.v;
        if x == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        let mut leading = x.leading_zeros() as u8;
        let trailing = x.trailing_zeros() as u8;
        // 5 bits hold the leading count.
        if leading >= 32 {
            leading = 31;
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.bits.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.bits.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.bits.write_bit(true);
            self.bits.write_bits(leading as u64, 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits are written as 0 in the 6-bit field.
            self.bits.write_bits((sig & 63) as u64, 6);
            self.bits.write_bits(x >> trailing, sig);
        }
    }

    /// Freezes the chunk into its stored form.
    pub fn finish(&self) -> Chunk {
        Chunk {
            min_t: self.min_t,
            max_t: self.t,
            count: self.count,
            encoding: ENC_XOR,
            data: self.bits.to_bytes().into_boxed_slice(),
        }
    }

    /// Serialises the whole appender state (for head checkpoints), so a restart can
    /// go on appending to the same chunk.
    ///
    /// ```text
    /// uvarint(count) [varint(min_t) varint(t) varint(t_delta) u64(v) u8(leading)
    ///                 u8(trailing) u8(free) uvarint(len) bytes]   (bracket only if count > 0)
    /// ```
    pub fn encode_state(&self, out: &mut Vec<u8>) {
        use crate::tsdb::labels::{put_uvarint, put_varint};
        put_uvarint(out, self.count as u64);
        if self.count == 0 {
            return;
        }
        put_varint(out, self.min_t);
        put_varint(out, self.t);
        put_varint(out, self.t_delta);
        out.extend_from_slice(&self.v.to_le_bytes());
        out.push(self.leading);
        out.push(self.trailing);
        out.push(self.bits.free_in_last_byte());
        let bytes = self.bits.to_bytes();
        put_uvarint(out, bytes.len() as u64);
        out.extend_from_slice(&bytes);
    }

    /// Reads what [`XorAppender::encode_state`] wrote.
    pub fn decode_state(buf: &mut &[u8]) -> Option<XorAppender> {
        use crate::tsdb::labels::{get_bytes, get_u64, get_uvarint, get_varint};
        let count = u16::try_from(get_uvarint(buf)?).ok()?;
        let mut a = XorAppender::new();
        if count == 0 {
            return Some(a);
        }
        a.count = count;
        a.min_t = get_varint(buf)?;
        a.t = get_varint(buf)?;
        a.t_delta = get_varint(buf)?;
        a.v = get_u64(buf)?;
        let b = get_bytes(buf, 3)?;
        a.leading = b[0];
        a.trailing = b[1];
        let free = b[2];
        let len = get_uvarint(buf)? as usize;
        a.bits = BitWriter::resume(get_bytes(buf, len)?, free)?;
        Some(a)
    }
}

pub struct XorIter<'a> {
    r: BitReader<'a>,
    left: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    pub(super) fn new(bytes: &'a [u8], count: u16) -> XorIter<'a> {
        XorIter {
            r: BitReader::new(bytes),
            left: count,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn next_inner(&mut self) -> Option<(i64, f64)> {
        match self.read {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.t_delta = self.r.read_varint()?;
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
            _ => {
                let dod = read_dod(&mut self.r, TS_WIDTHS)?;
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn read_value(&mut self) -> Option<()> {
        // '0', '10' or '11': the control bits in one read.
        let ctl = self.r.read_ones(2)?;
        if ctl == 0 {
            return Some(());
        }
        if ctl == 2 {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64u8.checked_sub(self.leading + sig)?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= if self.trailing >= 64 {
            0
        } else {
            bits << self.trailing
        };
        Some(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.next_inner() {
            Some(s) => Some(s),
            None => {
                self.left = 0;
                None
            }
        }
    }
}
