//! XOR ("Gorilla") chunks: the compressed form every sample is stored in.
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

/// Samples per chunk before the head cuts a new one (Prometheus uses the same).
pub const MAX_SAMPLES: u16 = 120;

/// Append-only bit stream, most significant bit first.
///
/// The last, unfinished 64 bits stay in `acc` inside the writer instead of in the byte
/// vector. The head keeps one writer per series and touches ~10k of them per request:
/// or-ing bits into the vector's last byte was a cache miss per sample (13% of ingest
/// CPU in a profile); now the vector is written once per 8 bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    /// Whole 64-bit words written so far (big-endian, so bytes are in stream order).
    bytes: Vec<u8>,
    /// Pending bits, left-aligned: the top `pending` bits are the stream's tail.
    acc: u64,
    /// Number of valid bits in `acc` (0..=63).
    pending: u8,
}

impl BitWriter {
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    pub(crate) fn write_bits(&mut self, v: u64, n: u8) {
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let space = 64 - self.pending;
        if n < space {
            self.acc |= v << (space - n);
            self.pending += n;
        } else {
            // Fill the word, flush it, keep the rest.
            let rest = n - space;
            self.acc |= v >> rest;
            self.bytes.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if rest == 0 { 0 } else { v << (64 - rest) };
            self.pending = rest;
        }
    }

    pub(crate) fn write_varint(&mut self, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                self.write_bits(byte as u64, 8);
                break;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }

    /// Length of the stream in bytes (the last one possibly partial).
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len() + (self.pending as usize).div_ceil(8)
    }

    /// Bits still free in the last byte (0 when it is full or there is none).
    fn free_in_last_byte(&self) -> u8 {
        (8 - self.pending % 8) % 8
    }

    /// The stream as bytes, the last one padded with zero bits.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&self.bytes);
        self.push_pending(&mut out);
        out
    }

    /// Like [`BitWriter::to_bytes`], consuming the writer.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        self.push_pending(&mut out);
        out
    }

    fn push_pending(&self, out: &mut Vec<u8>) {
        let n = (self.pending as usize).div_ceil(8);
        out.extend_from_slice(&self.acc.to_be_bytes()[..n]);
    }

    /// A writer that goes on after `bytes`, whose last byte has `free` unused low bits.
    fn resume(bytes: &[u8], free: u8) -> Option<BitWriter> {
        if free >= 8 || (free > 0 && bytes.is_empty()) {
            return None;
        }
        let mut w = BitWriter {
            bytes: Vec::with_capacity(bytes.len() + 8),
            acc: 0,
            pending: 0,
        };
        let whole = if free == 0 {
            bytes.len()
        } else {
            bytes.len() - 1
        };
        for &b in &bytes[..whole] {
            w.write_bits(b as u64, 8);
        }
        if free > 0 {
            let used = 8 - free;
            w.write_bits((bytes[whole] >> free) as u64, used);
        }
        Some(w)
    }
}

/// Reads a bit stream written by [`BitWriter`].
///
/// Buffered: up to 64 bits of the stream wait in `buf` (most significant first), and
/// it is refilled eight bytes at a time. Reading samples bit by bit, with a bounds
/// check per bit, was a quarter of a query over a day of samples.
///
/// Invariant: the top `valid` bits of `buf` are the stream bits from bit
/// `next * 8 − valid` on; the bits below them are either zero or the stream bits that
/// follow (so OR-ing the next eight bytes in at `valid` never changes them).
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next byte of `bytes` not yet in `buf`.
    next: usize,
    buf: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            next: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Loads whole bytes into `buf` until it holds more than 56 bits or the stream ends.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.bytes.get(self.next..self.next + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let w = u64::from_be_bytes(w);
            if self.valid < 64 {
                self.buf |= w >> self.valid;
            }
            let add = (64 - self.valid) / 8;
            self.next += add as usize;
            self.valid += add * 8;
        } else {
            while self.valid <= 56 {
                let Some(&b) = self.bytes.get(self.next) else {
                    break;
                };
                self.buf |= (b as u64) << (56 - self.valid);
                self.next += 1;
                self.valid += 8;
            }
        }
    }

    /// The buffer, holding at least the next `n` bits (n ≤ 56) left-aligned unless
    /// the stream ends first; bits past its end read as zero. Nothing is consumed:
    /// [`BitReader::consume`] checks that the bits used were really there.
    #[inline]
    fn peek(&mut self, n: u32) -> u64 {
        if self.valid < n {
            self.refill();
        }
        self.buf
    }

    /// Drops `n` bits (n < 64) that [`BitReader::peek`] showed; `None` past the end.
    #[inline]
    fn consume(&mut self, n: u32) -> Option<()> {
        if n > self.valid {
            return None;
        }
        self.buf <<= n;
        self.valid -= n;
        Some(())
    }

    #[inline]
    pub(crate) fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = n as u32;
        match n {
            0 => Some(0),
            1..=56 => {
                let v = self.peek(n) >> (64 - n);
                self.consume(n)?;
                Some(v)
            }
            _ => {
                let hi = self.read_bits(32)?;
                let lo = self.read_bits((n - 32).min(32) as u8)?;
                Some((hi << (n - 32).min(32)) | lo)
            }
        }
    }

    #[inline]
    pub(crate) fn read_varint(&mut self) -> Option<i64> {
        let mut u = 0u64;
        let mut shift = 0;
        loop {
            let b = self.read_bits(8)? as u8;
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

    /// The number of one bits (at most `max` ≤ 8) before the first zero, consumed with
    /// the zero (the zero is not there when `max` ones were read).
    #[inline]
    fn read_ones(&mut self, max: u32) -> Option<u32> {
        let ones = (!self.peek(max)).leading_zeros().min(max);
        self.consume(if ones < max { ones + 1 } else { ones })?;
        Some(ones)
    }
}

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
        use super::labels::{put_uvarint, put_varint};
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
        use super::labels::{get_bytes, get_u64, get_uvarint, get_varint};
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

/// Bit widths of the three middle buckets of a delta-of-delta code for timestamps.
/// The first is small because real scrapes land a few ms off their interval: ±2 ms of
/// jitter costs 2 + 5 bits instead of Gorilla's 2 + 14.
pub(crate) const TS_WIDTHS: [u8; 3] = [5, 14, 20];

/// Writes a delta-of-delta: `'0'` for zero, `'10'`, `'110'`, `'1110'` followed by
/// `widths[0..3]` bits, else `'1111'` and 64 bits. Shared by timestamps (XOR and decimal
/// chunks) and decimal mantissas, with their own widths.
pub(crate) fn write_dod(w: &mut BitWriter, dod: i64, widths: [u8; 3]) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &bits) in widths.iter().enumerate() {
        if fits(dod, bits) {
            // i + 1 one-bits then a zero: 0b10, 0b110, 0b1110.
            let prefix = ((1u64 << (i + 2)) - 1) ^ 1;
            w.write_bits(prefix, i as u8 + 2);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

/// Reads what [`write_dod`] wrote with the same widths.
#[inline]
pub(crate) fn read_dod(r: &mut BitReader, widths: [u8; 3]) -> Option<i64> {
    let ones = r.read_ones(4)? as usize;
    Some(match ones {
        0 => 0,
        1..=3 => sign_extend(r.read_bits(widths[ones - 1])?, widths[ones - 1]),
        _ => r.read_bits(64)? as i64,
    })
}

pub(crate) fn fits(v: i64, bits: u8) -> bool {
    let lo = -(1i64 << (bits - 1)) + 1;
    let hi = 1i64 << (bits - 1);
    v >= lo && v <= hi
}

pub(crate) fn sign_extend(v: u64, bits: u8) -> i64 {
    let v = v as i64;
    if bits == 64 {
        return v;
    }
    // Values above the positive range are negative two's-complement numbers.
    if v > (1i64 << (bits - 1)) {
        v - (1i64 << bits)
    } else {
        v
    }
}

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

impl Chunk {
    /// Iterates the chunk's samples.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkView {
            min_t: self.min_t,
            max_t: self.max_t,
            count: self.count,
            encoding: self.encoding,
            data: &self.data,
        }
        .iter()
    }

    /// The smallest stored form of this chunk: the decimal encoding when every value
    /// is a short decimal (counters and gauges of real exporters mostly are) and it
    /// comes out smaller, else the chunk as it is. Lossless either way.
    pub fn compact(&self) -> Chunk {
        if self.encoding != ENC_XOR {
            return self.clone();
        }
        let samples: Vec<(i64, f64)> = self.iter().collect();
        match super::decimal::encode(&samples) {
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

    /// Serialises the chunk.
    ///
    /// ```text
    /// u8(encoding) varint(min_t) uvarint(max_t − min_t) uvarint(count) uvarint(len) bytes
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        use super::labels::{put_uvarint, put_varint};
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
        use super::labels::{get_bytes, get_uvarint, get_varint};
        let encoding = *get_bytes(buf, 1)?.first()?;
        if encoding > ENC_HISTOGRAM {
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

/// A chunk as it lies in a page: the fields of [`Chunk`], its bytes borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkView<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    pub encoding: u8,
    pub data: &'a [u8],
}

impl<'a> ChunkView<'a> {
    /// The float samples (none for a histogram chunk).
    pub fn iter(&self) -> ChunkIter<'a> {
        match self.encoding {
            ENC_DECIMAL => {
                ChunkIter::Decimal(super::decimal::DecimalIter::new(self.data, self.count))
            }
            ENC_HISTOGRAM => ChunkIter::Empty,
            _ => ChunkIter::Xor(XorIter::new(self.data, self.count)),
        }
    }
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
        match self.encoding {
            ENC_DECIMAL => push(
                out,
                super::decimal::DecimalIter::new(self.data, self.count),
                inside,
                mint,
                maxt,
            ),
            ENC_HISTOGRAM => {}
            _ => push(out, XorIter::new(self.data, self.count), inside, mint, maxt),
        }
    }
}

/// Iterator over a chunk of either encoding.
pub enum ChunkIter<'a> {
    Xor(XorIter<'a>),
    Decimal(super::decimal::DecimalIter<'a>),
    /// A histogram chunk holds no float samples.
    Empty,
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        match self {
            ChunkIter::Xor(x) => x.next(),
            ChunkIter::Decimal(d) => d.next(),
            ChunkIter::Empty => None,
        }
    }
}

/// Iterator over `(timestamp ms, value)`; stops early on a corrupt stream.
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
    fn new(bytes: &'a [u8], count: u16) -> XorIter<'a> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) {
        let c = Chunk::from_samples(samples);
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
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
